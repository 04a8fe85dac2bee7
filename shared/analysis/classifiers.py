"""The four classifiers, loaded once per process from ``models/manifest.json``.

Two runtimes give the same scores: ONNX Runtime (default, no torch needed) and torch, which rebuilds the card
models from their ONNX files' weights, or loads an ultralytics YOLO ``.pt`` or a torchvision ResNet50 state dict
named by a manifest entry's ``torch_file``, so users can drop in their own weights. The reference
model (EfficientNet-Lite0, whose second output is the not-a-lesion gate's logit) ships as ONNX only and runs on
ONNX Runtime under either setting.

Every classifier answers log-scores (``logits``): a model whose graph ends in softmax answers ``log(p)``. The
manifest's temperature and bias turn them into probabilities with :func:`shared.analysis.calibration.calibrate`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.analysis.calibration import log_probs
from shared.analysis.preprocess import VIEWS, mean_over_views, to_tensor, with_views

ROLES = ("binary", "diagnosis", "check", "reference")
TORCH_ROLES = ("binary", "diagnosis", "check")  # the reference ships as ONNX only


class ModelError(RuntimeError):
    """The models cannot serve: a missing file, a wrong checksum, or a model of the wrong kind."""


@dataclass(frozen=True)
class ModelEntry:
    role: str
    name: str
    version: str
    architecture: str
    file: Path
    sha256: str
    torch_file: Path | None
    torch_sha256: str | None
    labels: tuple[str, ...]
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    temperature: float
    logit_bias: tuple[float, ...]  # per label, added after temperature scaling (decision prior, see the model card)
    outputs_logits: bool = False  # the graph ends in logits (else in softmax probabilities)
    colour_constancy: bool = False  # shades-of-grey colour constancy on the crop before the model
    views: tuple[str, ...] = ("identity",)  # test-time views whose log-scores are averaged (preprocess.VIEWS)


def decode_side(entries: Iterable[ModelEntry]) -> int:
    """The side photos are decoded for (JPEGs at the smallest DCT scale that covers it): the largest model input."""
    return max(entry.size for entry in entries)


def load_manifest(models_dir: Path) -> dict[str, ModelEntry]:
    path = Path(models_dir) / "manifest.json"
    try:
        models = json.loads(path.read_text())["models"]
    except (OSError, KeyError, ValueError) as exc:
        raise ModelError(f"{path}: cannot read the model manifest ({exc}); run `make export`.") from exc
    entries = {}
    for role in ROLES:
        if role not in models:
            raise ModelError(f"{path}: no '{role}' model; the manifest needs {', '.join(ROLES)}.")
        spec = models[role]
        views = tuple(spec["input"].get("views", ["identity"]))
        if views[:1] != ("identity",) or not set(views) <= set(VIEWS):
            raise ModelError(f"{path}: {role} views {list(views)}: the identity first, then any of {list(VIEWS)}.")
        entries[role] = ModelEntry(
            role=role,
            name=spec["name"],
            version=spec["version"],
            architecture=spec["architecture"],
            file=Path(models_dir) / spec["file"],
            sha256=spec["sha256"],
            torch_file=Path(models_dir) / spec["torch_file"] if spec.get("torch_file") else None,
            torch_sha256=spec.get("torch_sha256"),
            labels=tuple(spec["labels"]),
            size=int(spec["input"]["size"]),
            mean=tuple(spec["input"]["mean"]),
            std=tuple(spec["input"]["std"]),
            temperature=float(spec.get("temperature", 1.0)),
            logit_bias=tuple(float(spec.get("logit_bias", {}).get(label, 0.0)) for label in spec["labels"]),
            outputs_logits=spec.get("output") == "logits",
            colour_constancy=spec["input"].get("colour_constancy") == "shades_of_grey",
            views=views,
        )
    return entries


def load_manifest_section(models_dir: Path, section: str) -> dict:
    """A top-level section of the manifest (``gate``, ``assessment``)."""
    path = Path(models_dir) / "manifest.json"
    try:
        return json.loads(path.read_text())[section]
    except (OSError, KeyError, ValueError) as exc:
        raise ModelError(f"{path}: no '{section}' section ({exc}); run `make export`.") from exc


def read_verified(path: Path, expected_sha256: str | None) -> tuple[bytes, str]:
    """The file's bytes and sha256; a checksum other than the manifest's is refused."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"model file {path} is missing ({exc}); run `make export` or fix MODELS_DIR.") from exc
    digest = hashlib.sha256(data).hexdigest()
    if expected_sha256 and digest != expected_sha256:
        raise ModelError(
            f"{path.name}: sha256 {digest[:12]}… does not match the manifest "
            f"({expected_sha256[:12]}…); run `make export` after changing weights."
        )
    return data, digest


_pool_threads: int | None = None  # threads of the process's shared ONNX Runtime pool, once it exists


def session_options(threads: int):
    """ONNX Runtime session options on the process's one shared thread pool, and that pool's thread count.

    The three sessions run one after another. With a pool each, the idle pools' threads wake and compete for the
    same cores; one shared pool is measured faster (README, Performance). The first call creates the pool with
    ``threads``; ONNX Runtime then requires every session of the process to use it, so later calls get that
    pool whatever they ask for.
    """
    import onnxruntime as ort

    global _pool_threads
    if _pool_threads is None:
        ort.set_global_thread_pool_sizes(threads, 1)
        _pool_threads = threads
    options = ort.SessionOptions()
    options.use_per_session_threads = False
    return options, _pool_threads


class OnnxClassifier:
    def __init__(self, entry: ModelEntry, threads: int):
        import onnxruntime as ort

        data, self.sha256 = read_verified(entry.file, entry.sha256)
        options, self.threads = session_options(threads)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        self.entry = entry
        self.input_name = self.session.get_inputs()[0].name
        if entry.role == "reference" and [o.name for o in self.session.get_outputs()] != ["logits", "gate"]:
            raise ModelError(
                f"{entry.file.name} must output the reference logits and the gate's logit; run `make export`."
            )
        output_shape = self.session.get_outputs()[0].shape
        if len(output_shape) != 2 or output_shape[1] != len(entry.labels):
            raise ModelError(
                f"{entry.file.name} outputs {output_shape}, not one probability per label "
                f"{list(entry.labels)}: only classification models are supported (a detection "
                "model must be retrained or exported as a classifier)."
            )

    def run(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Log-scores (N x labels, the mean over the entry's views) for uint8 N x S x S x 3 RGB pixels, and the
        gate's lesion logit (N, on the identity view, as it was fitted) if the graph has a second output."""
        views = self.entry.views
        batch = to_tensor(with_views(pixels, views), self.entry.mean, self.entry.std)
        outputs = self.session.run(None, {self.input_name: batch})
        scores = outputs[0] if self.entry.outputs_logits else log_probs(outputs[0])
        gate = outputs[1].reshape(-1)[: len(pixels)] if len(outputs) > 1 else None
        return mean_over_views(scores, len(views)), gate


class TorchClassifier:
    def __init__(self, entry: ModelEntry, threads: int):
        import torch

        self.torch = torch
        self.entry = entry
        if entry.architecture == "resnet50":
            self.model = self._resnet(entry)
        else:
            self.model = self._yolo(entry)
        self.model.float().eval()
        self.threads = threads
        torch.set_num_threads(threads)  # set again: loading ultralytics may change it

    def _yolo(self, entry: ModelEntry):
        if entry.torch_file is None:  # the committed YOLO models ship once, inside their ONNX files
            return self._yolo_from_onnx(entry)
        from ultralytics.nn.tasks import load_checkpoint

        _, self.sha256 = read_verified(entry.torch_file, entry.torch_sha256)
        model, _ = load_checkpoint(entry.torch_file, device="cpu")
        if getattr(model, "task", None) != "classify":
            raise ModelError(
                f"{entry.torch_file.name} is a YOLO '{getattr(model, 'task', '?')}' model; "
                "this service needs YOLO classification models (yolo11*-cls)."
            )
        names = [model.names[i] for i in sorted(model.names)]
        if names != list(entry.labels):
            raise ModelError(f"{entry.torch_file.name} predicts {names}, the manifest says {list(entry.labels)}.")
        return model

    def _yolo_from_onnx(self, entry: ModelEntry):
        from ultralytics.nn.tasks import ClassificationModel

        from shared.analysis.onnx_state_dict import state_dict_from_onnx

        _, self.sha256 = read_verified(entry.file, entry.sha256)
        model = ClassificationModel(cfg=f"{entry.architecture}.yaml", nc=len(entry.labels), verbose=False)
        model.load_state_dict(state_dict_from_onnx(entry.file))
        model.names = dict(enumerate(entry.labels))
        return model

    def _resnet(self, entry: ModelEntry):
        import torchvision

        model = torchvision.models.resnet50(weights=None, num_classes=len(entry.labels))
        if entry.torch_file is not None:
            _, self.sha256 = read_verified(entry.torch_file, entry.torch_sha256)
            state = self.torch.load(entry.torch_file, map_location="cpu", weights_only=True)
        else:  # the committed ResNet50 ships once, inside its ONNX file
            from shared.analysis.onnx_state_dict import state_dict_from_onnx

            _, self.sha256 = read_verified(entry.file, entry.sha256)
            state = state_dict_from_onnx(entry.file)
        model.load_state_dict(state)
        return model

    def run(self, pixels: np.ndarray) -> tuple[np.ndarray, None]:
        views = self.entry.views
        with self.torch.inference_mode():
            batch = to_tensor(with_views(pixels, views), self.entry.mean, self.entry.std)
            out = self.model(self.torch.from_numpy(batch))
            logits = out[1] if isinstance(out, (tuple, list)) else out
            return mean_over_views(self.torch.log_softmax(logits.float(), dim=1).numpy(), len(views)), None


def load_classifiers(models_dir: Path, runtime: str, threads: int) -> dict[str, OnnxClassifier | TorchClassifier]:
    kinds: dict[str, type[OnnxClassifier] | type[TorchClassifier]] = {"onnx": OnnxClassifier, "torch": TorchClassifier}
    if runtime not in kinds:
        raise ModelError(f"MODEL_RUNTIME={runtime!r}: use 'onnx' or 'torch'.")
    entries = load_manifest(models_dir)
    return {
        role: (kinds[runtime] if role in TORCH_ROLES else OnnxClassifier)(entry, threads)
        for role, entry in entries.items()
    }
