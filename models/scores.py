"""The served models' answers on every named set, computed once with the serving code and cached.

Each image goes through exactly what infer runs (``shared.analysis``: the decoding, JPEGs at the reduced DCT scale
that still covers the largest model input, the crop, colour constancy where the manifest says so, ONNX Runtime). The
cache holds one file per model file and decoding, ``build/eval/<role>-<sha256[:12]>-decoded<side>.npz``, with the
log-scores (before calibration) per set and, for the reference, the gate logit; a model run on test-time views
(``input.views`` other than the identity alone) adds them to the name. Refitting a temperature or re-exporting one
model recomputes nothing else.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models import checkpoints
from models.data import Sample, named_sets
from shared.analysis.classifiers import ROLES, decode_side, load_classifiers, load_manifest
from shared.analysis.imaging import decode
from shared.analysis.preprocess import model_input
from shared.analysis.threads import usable_cpus
from shared.labels import DIAGNOSIS_LABELS

MODELS_DIR = Path(__file__).resolve().parent
CACHE_DIR = MODELS_DIR.parent / "build" / "eval"


def model_inputs(entry, samples: list[Sample], side: int) -> np.ndarray:
    """The crops the model reads (N x S x S x 3 uint8), decoded for ``side`` and prepared as serving prepares them."""
    pixels = np.empty((len(samples), entry.size, entry.size, 3), np.uint8)
    for index, sample in enumerate(samples):
        photo = decode(sample.path.read_bytes(), reduce_to=side)
        pixels[index] = model_input(photo.image, entry.size, entry.colour_constancy)
    return pixels


def run_batches(classifier, pixels: np.ndarray, batch: int = 64) -> dict[str, np.ndarray]:
    """The classifier's log-scores (and gate logits, if it has them) on ``pixels``, ``batch`` crops a run."""
    logits, gates = [], []
    for start in range(0, len(pixels), batch):
        scores, gate = classifier.run(pixels[start : start + batch])
        logits.append(scores)
        if gate is not None:
            gates.append(gate)
    return {"logits": np.concatenate(logits), **({"gate": np.concatenate(gates)} if gates else {})}


def role_scores(classifier, samples: list[Sample], side: int) -> dict[str, np.ndarray]:
    return run_batches(classifier, model_inputs(classifier.entry, samples, side))


def served_scores(models_dir: Path = MODELS_DIR, names: tuple[str, ...] | None = None) -> dict[str, dict]:
    """``{set: {role: log-scores, "gate": logits, "y": labels, "lesion": lesion ids}}`` for the models in
    ``models_dir``."""
    entries = load_manifest(Path(models_dir))
    sets = named_sets()
    names = names or tuple(name for name in sets if name != "ham_train")
    index = {label: i for i, label in enumerate(DIAGNOSIS_LABELS)}
    result: dict[str, dict] = {
        name: {
            "y": np.array([index.get(s.dx, -1) for s in sets[name]]),
            "lesion": np.array([s.lesion_id for s in sets[name]]),
        }
        for name in names
    }
    classifiers = None
    side = decode_side(entries.values())
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    for role in ROLES:
        views = entries[role].views
        suffix = "" if views == ("identity",) else "-" + "+".join(views)
        cache = CACHE_DIR / f"{role}-{entries[role].sha256[:12]}{suffix}-decoded{side}.npz"
        stored = dict(np.load(cache)) if cache.exists() else {}
        for name in names:
            if f"{name}/logits" not in stored:
                classifiers = classifiers or load_classifiers(Path(models_dir), "onnx", usable_cpus())
                stored |= {f"{name}/{k}": v for k, v in role_scores(classifiers[role], sets[name], side).items()}
                checkpoints.atomic_savez(cache, **stored)
            result[name][role] = stored[f"{name}/logits"]
            if f"{name}/gate" in stored:
                result[name]["gate"] = stored[f"{name}/gate"]
    return result
