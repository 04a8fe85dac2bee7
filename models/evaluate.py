"""Evaluate every served model, the assessment, the gate and ``conclusive``; write metrics.json, MODEL_CARD.md
(rendered from ``card_template.md``) and training.png.

    python -m models.evaluate

The models run exactly as the service runs them (``models/scores.py``: the serving crop, colour constancy, ONNX
Runtime), then the manifest's temperatures and the assessment (``shared.analysis``). Figures are measured on sets
nothing was trained, calibrated or tuned on: the ``report`` half of the HAM10000 validation lesions, Derm7pt (another
clinic) and the PAD-UFES-20 test patients (phone photos); the gate also on the ``report`` half of not-a-lesion.
"""

from __future__ import annotations

import json

import numpy as np

from models import card
from models.curves import load_histories, plot_training
from models.metrics import auc, balanced_accuracy, ece, macro_auc, sensitivity_specificity
from models.scores import MODELS_DIR, served_scores
from shared.analysis.assessment import (
    GROUP_INDEX,
    Combination,
    combine,
    conclusive,
    group_answer,
    malignant_probability,
)
from shared.analysis.calibration import calibrate

REPORT_SETS = ("ham_val_report", "derm7pt", "pad_test")
GATE_SETS = ("ham_val_fit", "ham_val_report", "derm7pt", "pad_val", "pad_test", "not_a_lesion_test")
ROLES = ("binary", "diagnosis", "check", "reference")


def calibrated(manifest: dict, scores: dict) -> dict[str, np.ndarray]:
    out = {}
    for role in ROLES:
        entry = manifest["models"][role]
        bias = [entry["logit_bias"].get(label, 0.0) for label in entry["labels"]]
        out[role] = calibrate(scores[role], entry["temperature"], bias)
    return out


def model_row(role: str, probs: np.ndarray, y: np.ndarray) -> dict:
    """The table's figures for one model on one set; the binary model is read on benign/malignant."""
    malignant = GROUP_INDEX[y].astype(bool)
    if role == "binary":
        truth, score = malignant.astype(int), probs[:, 1]
        macro = auc(malignant, score)
    else:
        truth, score = y, malignant_probability(probs)
        macro = macro_auc(y, probs)
    sensitivity, specificity = sensitivity_specificity(malignant, group_answer(role, probs).astype(bool))
    return {
        "n": int(len(y)),
        "balanced_accuracy": balanced_accuracy(truth, probs.argmax(1)),
        "macro_auc": macro,
        "malignant_auc": auc(malignant, score),
        "sensitivity": sensitivity,
        "specificity": specificity,
        "ece": ece(truth, probs),
    }


def conclusive_row(assessment: np.ndarray, held: np.ndarray, y: np.ndarray) -> dict:
    malignant = GROUP_INDEX[y].astype(bool)
    said_malignant = GROUP_INDEX[assessment.argmax(1)].astype(bool)
    both = held & malignant
    return {
        "share": float(held.mean()),
        "n": int(held.sum()),
        "accuracy": float(np.mean(assessment[held].argmax(1) == y[held])) if held.any() else float("nan"),
        "malignant_sensitivity": float(np.mean(said_malignant[both])) if both.any() else float("nan"),
    }


def set_report(manifest: dict, scores: dict) -> dict:
    probs = calibrated(manifest, scores)
    combination = Combination.from_manifest(manifest["assessment"])
    assessment = combine(probs, combination)
    held = conclusive(assessment, probs, combination, manifest["assessment"]["conf_threshold"])
    y = scores["y"]
    return {
        **{role: model_row(role, probs[role], y) for role in ROLES},
        "assessment": model_row("assessment", assessment, y),
        "conclusive": conclusive_row(assessment, held, y),
    }


def gate_report(scores: dict, threshold: float) -> dict:
    """Share kept (lesion sets) or rejected (not-a-lesion) at the served threshold."""
    logit = np.log(threshold / (1 - threshold))
    out = {}
    for name in GATE_SETS:
        kept = float(np.mean(scores[name]["gate"] >= logit))
        out[name] = {
            "n": int(len(scores[name]["gate"])),
            **({"rejected": 1 - kept} if name.startswith("not_a_lesion") else {"kept": kept}),
        }
    return out


def main() -> None:
    manifest = json.loads((MODELS_DIR / "manifest.json").read_text())
    scores = served_scores(MODELS_DIR, tuple(dict.fromkeys(REPORT_SETS + GATE_SETS)))
    metrics = {
        "sets": {name: set_report(manifest, scores[name]) for name in REPORT_SETS},
        "gate": gate_report(scores, manifest["gate"]["threshold"]),
    }
    (MODELS_DIR / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    histories, experiments = load_histories(MODELS_DIR / "weights"), load_histories(MODELS_DIR / "experiments")
    plot_training(histories, experiments, MODELS_DIR / "training.png")
    (MODELS_DIR / "MODEL_CARD.md").write_text(card.render(metrics, manifest, histories, experiments))
    print(card.evaluation_table(metrics))


if __name__ == "__main__":
    main()
