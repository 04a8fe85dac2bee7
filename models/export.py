"""Export the trained students (binary, diagnosis, check) to ONNX and write their manifest entries.

The reference model and gate are exported by ``models.export_reference``; ``models.fit`` then refits every
temperature and the assessment on the fit set.

    python -m models.export [--data ../shared/data/ham10000] [--binary PT] [--diagnosis PT] [--check PTH]

For each model: ``models/weights/<role>-<arch>.onnx`` (input ``images`` N x 3 x S x S float RGB, output ``probs``),
conv and linear weights stored as float16 (computed in float32), initializers named as in the torch state dict;
a temperature fitted by NLL on the fit half of the validation lesions (``models.fit`` then chooses the 7-class models' decision
prior and refits it on the fit set); and ``models/manifest.json``, which the service reads. The float16 storage is checked
against float32 and int8 (dynamic, static) on the fit half of the validation lesions; the figures go to the manifest
(``precision_study``) and the model card.

The units, in order: the exporter (``load_student``, ``export_student``, ``check_parity``), the precision study
(``int8_variants``, ``precision_study``), the calibration (``calibration``, with ``models.fit.fit_temperature``) and
the manifest (``manifest_entry``); ``export_role`` runs them for one student.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from models.data import Sample, half, label_indices, load_model_pixels, load_samples, read_split
from models.fit import fit_temperature
from models.metrics import auc, balanced_accuracy, macro_auc
from models.nets import MODELS_DIR, build_model, logits_of, weights_path
from models.specs import STUDENTS
from shared.analysis.calibration import log_probs
from shared.analysis.onnx_state_dict import state_dict_from_onnx
from shared.analysis.preprocess import to_tensor
from shared.analysis.threads import usable_cpus

VERSION = "1.0.0"
RESIZE = "shorter side to size (bilinear, PIL), then centre crop size x size"


class Probabilities(torch.nn.Module):
    """Wraps a classifier so the exported graph ends in softmax probabilities (ultralytics' head or a ResNet)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images):
        return torch.softmax(logits_of(self.model, images), dim=1)


def load_trained(role: str, path: Path) -> tuple[torch.nn.Module, dict]:
    """The trained model in float32 (a YOLO checkpoint holds float16 weights) and its training arguments."""
    spec = STUDENTS[role]
    if spec["arch"] == "resnet50":
        model = build_model("resnet50", spec["labels"])
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        args = json.loads(path.with_suffix(".history.json").read_text())["train_args"]
    else:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        model, args = checkpoint["model"].float(), checkpoint["train_args"]
    return model.eval(), args


def torch_runtime_model(model: torch.nn.Module, arch: str, onnx_path: Path, labels: tuple[str, ...]):
    """What ``MODEL_RUNTIME=torch`` runs: the YOLO checkpoint as is, the ResNet50 rebuilt from the ONNX file
    (a strict load, so it also checks that the initializers carry the state-dict names)."""
    if arch == "resnet50":
        model = build_model("resnet50", labels)
        model.load_state_dict(state_dict_from_onnx(onnx_path))
    return Probabilities(model).eval()


def to_half_weights(source: Path, out: Path) -> None:
    """Store initializers of rank ≥ 2 (conv/linear weights) as float16, cast back to float32 in the graph."""
    model = onnx.load(str(source))
    graph = model.graph
    casts = []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or len(init.dims) < 2:
            continue
        array = numpy_helper.to_array(init).astype(np.float16)
        init.CopyFrom(numpy_helper.from_array(array, init.name))
        casts.append(helper.make_node("Cast", [init.name], [init.name + "__fp32"], to=TensorProto.FLOAT))
        for node in graph.node:
            for index, name in enumerate(node.input):
                if name == init.name:
                    node.input[index] = init.name + "__fp32"
    nodes = casts + list(graph.node)  # casts first keeps the graph topologically sorted
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(out))


def export_onnx(model: torch.nn.Module, size: int, out: Path) -> None:
    """Float32 graph, every initializer under its state-dict name (no constant folding, so no Conv+BN fusion)."""
    dummy = torch.zeros(1, 3, size, size)
    torch.onnx.export(
        Probabilities(model).eval(),
        dummy,
        str(out),
        input_names=["images"],
        output_names=["probs"],
        dynamic_axes={"images": {0: "batch"}, "probs": {0: "batch"}},
        opset_version=17,
        do_constant_folding=False,
        dynamo=False,
        training=torch.onnx.TrainingMode.EVAL,
    )


def session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_probs(runner, pixels: np.ndarray, mean, std, batch: int = 128) -> np.ndarray:
    return np.concatenate(
        [
            runner.run(None, {"images": to_tensor(pixels[i : i + batch], mean, std)})[0]
            for i in range(0, len(pixels), batch)
        ]
    )


def int8_variants(fp32: Path, workdir: Path, calibration: np.ndarray, mean, std) -> dict[str, Path]:
    """The int8 alternatives to float16 storage: dynamic, and static (QDQ, per channel, percentile-calibrated)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_dynamic,
        quantize_static,
    )

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(to_tensor(calibration[i : i + 32], mean, std) for i in range(0, len(calibration), 32))

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {"images": batch}

    prepared, dynamic, static = (workdir / f"{name}.onnx" for name in ("prepared", "int8-dynamic", "int8-static"))
    quant_pre_process(str(fp32), str(prepared))
    quantize_dynamic(str(prepared), str(dynamic), weight_type=QuantType.QInt8)
    softmax = [node.name for node in onnx.load(str(prepared)).graph.node if node.op_type == "Softmax"]
    quantize_static(
        str(prepared),
        str(static),
        Batches(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.Percentile,
        nodes_to_exclude=softmax,
    )
    return {"int8-dynamic": dynamic, "int8-static": static}


# The exporter: the trained student to ONNX, checked against the PyTorch model it came from.


@dataclass(frozen=True)
class Student:
    """A trained student to export, with what its training recorded."""

    role: str
    source: Path
    model: torch.nn.Module
    train_args: dict
    arch: str

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.train_args["labels"])

    @property
    def size(self) -> int:
        return int(self.train_args["imgsz"])

    @property
    def mean(self) -> list[float]:
        return list(self.train_args["mean"])

    @property
    def std(self) -> list[float]:
        return list(self.train_args["std"])

    @property
    def colour_constancy(self) -> bool:
        """Trained (distilled) on shades-of-grey inputs, so served that way too."""
        return trained_on_shades_of_grey(self.train_args)

    def pixels(self, samples: list[Sample]) -> np.ndarray:
        """``samples`` prepared as the service prepares this student's input."""
        return load_model_pixels(samples, self.size, self.colour_constancy)


def trained_on_shades_of_grey(train_args: dict) -> bool:
    """Whether a student's recorded training arguments say it read shades-of-grey inputs."""
    return train_args.get("colour_constancy") == "shades_of_grey"


def load_student(role: str, source: Path) -> Student:
    model, train_args = load_trained(role, source)
    arch = "resnet50" if STUDENTS[role]["arch"] == "resnet50" else Path(train_args["model"]).stem
    return Student(role, source, model, train_args, arch)


def export_student(student: Student, onnx_path: Path, workdir: Path) -> Path:
    """Write the served graph (float16 weights) to ``onnx_path``; return the float32 graph's path in ``workdir``."""
    fp32 = workdir / "float32.onnx"
    export_onnx(student.model, student.size, fp32)
    to_half_weights(fp32, onnx_path)
    return fp32


def check_parity(student: Student, onnx_path: Path, pixels: np.ndarray, probs: np.ndarray) -> float:
    """The largest probability difference between the ONNX answers ``probs`` and the torch runtime's on the first
    32 images; an error above 1e-3."""
    runtime = torch_runtime_model(student.model, student.arch, onnx_path, student.labels)
    with torch.no_grad():
        reference = runtime(torch.from_numpy(to_tensor(pixels[:32], student.mean, student.std))).numpy()
    parity = float(np.abs(probs[:32] - reference).max())
    if parity > 1e-3:
        raise AssertionError(f"{student.role}: ONNX and torch differ by {parity}")
    return parity


# The precision study: float32 and int8 against the served float16 weights.


def latency_ms(runner, image: np.ndarray, runs: int = 20) -> float:
    """Median single-image latency after one warm-up run."""
    runner.run(None, {"images": image})
    latencies = []
    for _ in range(runs):
        tic = time.perf_counter()
        runner.run(None, {"images": image})
        latencies.append(time.perf_counter() - tic)
    return 1000 * float(np.median(latencies))


def precision_study(
    variants: dict[str, Path], pixels: np.ndarray, y: np.ndarray, mean, std, threads: int
) -> tuple[dict, dict[str, np.ndarray]]:
    """Per precision: file size, validation balanced accuracy and AUC (raw argmax, before calibration), median
    single-image latency, and the largest probability change against float32; plus each one's probabilities."""
    study: dict = {"threads": threads}
    outputs: dict[str, np.ndarray] = {}
    for name, path in variants.items():
        runner = session(path, threads)
        probs = onnx_probs(runner, pixels, mean, std)
        ms = latency_ms(runner, to_tensor(pixels[:1], mean, std))
        outputs[name] = probs
        study[name] = {
            "mib": round(path.stat().st_size / 2**20, 2),
            "balanced_accuracy": round(balanced_accuracy(y, probs.argmax(1)), 4),
            "auc": round(auc(y == 1, probs[:, 1]) if probs.shape[1] == 2 else macro_auc(y, probs), 4),
            "ms_per_image": round(ms, 2),
            "max_abs_diff_vs_float32": float(f"{np.abs(probs - outputs['float32']).max():.2e}"),
        }
    return study, outputs


# Calibration: a temperature, no decision prior yet (models.fit chooses the prior and refits both on the fit set).


def calibration(labels: tuple[str, ...], probs: np.ndarray, y: np.ndarray) -> dict:
    """The manifest's temperature (fitted on the fit half of the validation lesions), zero logit bias and prior
    power."""
    bias = np.zeros(len(labels))
    return {
        "temperature": fit_temperature(log_probs(probs), y, bias, points=400),
        "logit_bias": {label: 0.0 for label in labels},
        "decision_prior_power": 0.0,
    }


# The manifest: what the service reads.


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def copy_torch_file(student: Student, out: Path) -> Path | None:
    """The YOLO checkpoint beside its ONNX file (what ``MODEL_RUNTIME=torch`` loads); None for the ResNet50."""
    if student.arch == "resnet50":
        return None
    torch_file = out / "weights" / f"{student.role}-{student.arch}.pt"
    if student.source.resolve() != torch_file.resolve():
        torch_file.write_bytes(student.source.read_bytes())
    return torch_file


def training_data(train_args: dict) -> dict:
    """The manifest's record of what a student learnt from: data with licences, split files, its teacher."""
    with_pad = "PAD-UFES-20" in train_args.get("data", "")
    entry = {
        "data": "HAM10000 train (CC BY-NC-SA 4.0) + PAD-UFES-20 train (CC BY 4.0)"
        if with_pad
        else "HAM10000 (CC BY-NC-SA 4.0)",
        "split": "models/split.csv, models/pad_split.csv" if with_pad else "models/split.csv",
    }
    if "distilled_from" in train_args:
        entry["distilled_from"] = train_args["distilled_from"]
    return entry


def manifest_entry(
    student: Student, onnx_path: Path, out: Path, study: dict, calibrated: dict, torch_files: bool = True
) -> dict:
    torch_file = copy_torch_file(student, out) if torch_files else None
    return {
        "name": f"skin-{student.role}-{student.arch}",
        "version": VERSION,
        "architecture": student.arch,
        "task": "classify",
        "file": str(onnx_path.relative_to(out)),
        "sha256": sha256(onnx_path),
        "torch_file": str(torch_file.relative_to(out)) if torch_file else None,
        "torch_sha256": sha256(torch_file) if torch_file else None,
        "runtime": "onnxruntime",
        "precision": "float16 weights (conv/linear), float32 compute",
        "precision_study": study,
        "labels": list(student.labels),
        "input": {
            "name": "images",
            "size": student.size,
            "layout": "NCHW",
            "color": "RGB",
            "resize": RESIZE,
            **({"colour_constancy": "shades_of_grey"} if student.colour_constancy else {}),
            "scale": "1/255",
            "mean": student.mean,
            "std": student.std,
        },
        "output": "probs (softmax over labels)",
        **calibrated,
        "trained": {
            "epochs": student.train_args["epochs"],
            "imgsz": student.size,
            **training_data(student.train_args),
            "seed": student.train_args.get("seed"),
            "date": dt.date.today().isoformat(),
        },
    }


# One role end to end, and the command line.


@dataclass(frozen=True)
class ExportSets:
    """The recorded split's training lesions, the fit half of its validation lesions (the report half stays unseen
    until ``make evaluate``) and 256 training images to calibrate int8 with."""

    train: list[Sample]
    val: list[Sample]
    calibration: list[Sample]


def export_sets(data: Path, split_file: Path) -> ExportSets:
    samples = load_samples(data)
    split = read_split(split_file)
    val = [s for s in samples if split.get(s.image_id, s.split) == "val" and half(s.lesion_id) == "fit"]
    train = [s for s in samples if split.get(s.image_id, s.split) == "train"]
    chosen = np.random.default_rng(0).choice(len(train), min(256, len(train)), replace=False)
    return ExportSets(train, val, [train[i] for i in chosen])


def export_role(role: str, source: Path, sets: ExportSets, out: Path, threads: int, torch_files: bool = True) -> dict:
    """Export, study, check and calibrate one student; its manifest entry."""
    student = load_student(role, source)
    onnx_path = out / "weights" / f"{role}-{student.arch}.onnx"
    y = label_indices(sets.val, student.labels)
    pixels = student.pixels(sets.val)
    with tempfile.TemporaryDirectory() as workdir:
        fp32 = export_student(student, onnx_path, Path(workdir))
        calibration_pixels = student.pixels(sets.calibration)
        variants = {
            "float32": fp32,
            "float16-weights": onnx_path,
            **int8_variants(fp32, Path(workdir), calibration_pixels, student.mean, student.std),
        }
        study, outputs = precision_study(variants, pixels, y, student.mean, student.std, threads)
    probs = outputs["float16-weights"]
    parity = check_parity(student, onnx_path, pixels, probs)
    calibrated = calibration(student.labels, probs, y)
    print(
        f"[{role}] {onnx_path.name} {onnx_path.stat().st_size / 2**20:.1f} MiB, parity {parity:.2e}, "
        f"T={calibrated['temperature']}, prior power {calibrated['decision_prior_power']}",
        flush=True,
    )
    return manifest_entry(student, onnx_path, out, study, calibrated, torch_files)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=MODELS_DIR.parent.parent / "shared/data/ham10000")
    parser.add_argument("--split-file", type=Path, default=MODELS_DIR / "split.csv")
    for role in STUDENTS:
        parser.add_argument(f"--{role}", type=Path, help=f"trained {role} weights (default: models/weights/)")
    parser.add_argument("--out", type=Path, default=MODELS_DIR, help="folder for weights/ and manifest.json")
    parser.add_argument(
        "--roles",
        nargs="+",
        choices=list(STUDENTS),
        default=list(STUDENTS),
        help="export only these (the manifest keeps its other entries)",
    )
    parser.add_argument(
        "--onnx-only",
        action="store_true",
        help="no YOLO checkpoint beside the ONNX file (the committed models ship once; the torch runtime rebuilds "
        "them from the ONNX file)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    sets = export_sets(args.data, args.split_file)
    threads = usable_cpus()
    manifest_path = args.out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"schema": 1, "models": {}}
    (args.out / "weights").mkdir(parents=True, exist_ok=True)
    for role in args.roles:
        source = getattr(args, role) or weights_path(role, STUDENTS[role]["arch"])
        manifest["models"][role] = export_role(role, source, sets, args.out, threads, not args.onnx_only)
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {manifest_path}")


if __name__ == "__main__":
    main()
