"""Export the reference model and the not-a-lesion gate as ONE ONNX graph with two outputs.

    python -m models.export_reference

Input ``images`` (N x 3 x S x S, RGB after shades-of-grey colour constancy, ImageNet-normalised); outputs
``logits`` (N x 7, the reference diagnosis, uncalibrated) and ``gate`` (N x 1, the lesion logit; >= 0 keeps the
photo). The gate is a linear layer on the pooled features that the diagnosis head reads too, so it costs nothing.
Conv and linear weights are stored as float16 and computed in float32.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from models.export import RESIZE, VERSION, sha256, to_half_weights
from models.gate import GATE_PATH, load_reference
from models.nets import MODELS_DIR
from models.pretrained import pretrained_source
from models.reference import HISTORY
from models.specs import REFERENCE, REFERENCE_NAME
from shared.analysis.preprocess import to_tensor

ONNX_PATH = MODELS_DIR / "weights" / f"{REFERENCE_NAME}.onnx"


class ReferenceWithGate(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, weights: np.ndarray, bias: float):
        super().__init__()
        self.model = model
        self.gate = torch.nn.Linear(len(weights), 1)
        with torch.no_grad():
            self.gate.weight.copy_(torch.as_tensor(weights, dtype=torch.float32)[None])
            self.gate.bias.fill_(bias)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.model.forward_head(self.model.forward_features(images), pre_logits=True)
        return self.model.classifier(pooled), self.gate(pooled)


def export(out: Path = ONNX_PATH) -> Path:
    gate = json.loads(GATE_PATH.read_text())
    wrapped = ReferenceWithGate(load_reference(), np.asarray(gate["weights"]), gate["bias"]).eval()
    size = REFERENCE["imgsz"]
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        torch.onnx.export(
            wrapped,
            torch.zeros(1, 3, size, size),
            str(fp32),
            input_names=["images"],
            output_names=["logits", "gate"],
            opset_version=17,
            dynamo=False,
            dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}, "gate": {0: "batch"}},
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        to_half_weights(fp32, out)
    check(wrapped, out)
    return out


def check(wrapped: torch.nn.Module, path: Path) -> None:
    """The stored graph answers as the torch model does (float16 storage costs < 0.05 in logits)."""
    import onnxruntime as ort

    pixels = np.random.default_rng(0).integers(0, 256, (4, REFERENCE["imgsz"], REFERENCE["imgsz"], 3), np.uint8)
    x = to_tensor(pixels, REFERENCE["mean"], REFERENCE["std"])
    logits, gate = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": x})
    with torch.no_grad():
        expected = [t.numpy() for t in wrapped(torch.from_numpy(x))]
    difference = max(np.abs(logits - expected[0]).max(), np.abs(gate - expected[1]).max())
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB), max |onnx - torch| = {difference:.4f}")
    assert difference < 0.05, difference


def manifest_entry(path: Path) -> dict:
    history = json.loads(HISTORY.read_text())
    spec = REFERENCE
    return {
        "name": f"skin-{REFERENCE_NAME}",
        "version": VERSION,
        "architecture": spec["arch"],
        "task": "classify",
        "file": str(path.relative_to(MODELS_DIR)),
        "sha256": sha256(path),
        "torch_file": None,
        "torch_sha256": None,
        "runtime": "onnxruntime",
        "precision": "float16 weights (conv/linear), float32 compute",
        "labels": list(spec["labels"]),
        "input": {
            "name": "images",
            "size": spec["imgsz"],
            "layout": "NCHW",
            "color": "RGB",
            "resize": RESIZE,
            "colour_constancy": "shades_of_grey",
            "scale": "1/255",
            "mean": list(spec["mean"]),
            "std": list(spec["std"]),
        },
        "output": "logits",
        "outputs": {"logits": "diagnosis logits", "gate": "lesion logit (>= 0 keeps)"},
        "temperature": 1.0,
        "logit_bias": {label: 0.0 for label in spec["labels"]},
        "pretrained": pretrained_source(spec["arch"], history["train_args"]["pretrained"]),
        "trained": {
            "epochs": len(history["history"]),
            "imgsz": spec["imgsz"],
            "stages": [stage["name"] for stage in spec["stages"]],
            "data": "HAM10000 train (CC BY-NC-SA 4.0) + PAD-UFES-20 train (CC BY 4.0)",
            "split": "models/split.csv, models/pad_split.csv",
            "date": dt.date.today().isoformat(),
        },
    }


def main() -> None:
    torch.set_num_threads(2)
    path = export()
    manifest_path = MODELS_DIR / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["models"]["reference"] = manifest_entry(path)
    gate = json.loads(GATE_PATH.read_text())
    manifest["gate"] = {
        "threshold": 0.5,
        "output": "gate",
        "method": "logistic regression on the reference "
        "model's pooled features; lesions (every third HAM10000 train image + PAD-UFES-20 train) against the fit half of "
        "not-a-lesion; threshold: the lower of keeping " + f"{gate['keep_target']:.1%} of the fit lesions and "
        f"rejecting {gate['reject_target']:.0%} of the fit negatives (out of fold)",
        "kept_share_fit": {k: round(v, 4) for k, v in gate["kept_share"].items()},
    }
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()
