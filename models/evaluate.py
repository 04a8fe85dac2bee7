"""Evaluate every served model, the assessment, the gate and ``conclusive``; write metrics.json,
training.png, MODEL_CARD.md and EXPERIMENTS.md (rendered from ``card_template.md`` and ``experiments_template.md``).

    python -m models.evaluate [--records-only]

The models run exactly as the service runs them (``models/scores.py``: the serving crop, colour constancy, ONNX
Runtime), then the manifest's temperatures and the assessment (``shared.analysis``). Figures are measured on sets
nothing was trained, calibrated or tuned on: the ``report`` half of the HAM10000 validation lesions, Derm7pt (another
clinic) and the PAD-UFES-20 test patients (phone photos); the gate also on the ``report`` half of not-a-lesion.
``--records-only`` scores nothing: it renders the card, EXPERIMENTS.md and the curves again from the committed
metrics.json and training records (after an experiment that changed no served model).
"""

from __future__ import annotations

import argparse
import json
from functools import partial

import numpy as np

from models import card
from models.curves import load_histories, plot_training
from models.metrics import auc, balanced_accuracy, bootstrap_interval, ece, macro_auc, sensitivity_specificity
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


FIGURES = ("balanced_accuracy", "macro_auc", "malignant_auc", "sensitivity", "specificity", "ece")


def figure(role: str, name: str, probs: np.ndarray, y: np.ndarray) -> float:
    """One figure of the table for one model on one set; the binary model is read on benign/malignant."""
    malignant = GROUP_INDEX[y].astype(bool)
    truth = malignant.astype(int) if role == "binary" else y
    if name == "balanced_accuracy":
        return balanced_accuracy(truth, probs.argmax(1))
    if name == "macro_auc" and role != "binary":
        return macro_auc(y, probs)
    if name in ("macro_auc", "malignant_auc"):
        return auc(malignant, probs[:, 1] if role == "binary" else malignant_probability(probs))
    if name in ("sensitivity", "specificity"):
        pair = sensitivity_specificity(malignant, group_answer(role, probs).astype(bool))
        return pair[name == "specificity"]
    return ece(truth, probs)


def figure_on(indices: np.ndarray, role: str, name: str, probs: np.ndarray, y: np.ndarray) -> float:
    """``figure`` on the images at ``indices`` (a bootstrap resample)."""
    return figure(role, name, probs[indices], y[indices])


def model_row(role: str, probs: np.ndarray, y: np.ndarray) -> dict:
    return {"n": int(len(y)), **{name: figure(role, name, probs, y) for name in FIGURES}}


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


def set_probabilities(manifest: dict, scores: dict) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every model's calibrated probabilities and the assessment's, and where ``conclusive`` holds."""
    probs = calibrated(manifest, scores)
    combination = Combination.from_manifest(manifest["assessment"])
    assessment = combine(probs, combination)
    held = conclusive(assessment, probs, combination, manifest["assessment"]["conf_threshold"])
    return {**probs, "assessment": assessment}, held


def set_report(probabilities: tuple[dict[str, np.ndarray], np.ndarray], y: np.ndarray) -> dict:
    """The table's rows for one set, from its ``set_probabilities``."""
    probs, held = probabilities
    return {
        **{role: model_row(role, probs[role], y) for role in (*ROLES, "assessment")},
        "conclusive": conclusive_row(probs["assessment"], held, y),
    }


def target_intervals(scores: dict, probabilities: dict[str, tuple]) -> dict[str, list[float]]:
    """95 % bootstrap intervals of the card's target figures, resampling lesions (HAM10000), patients
    (PAD-UFES-20) or images (Derm7pt: one per lesion): ``{"set/model/figure": [low, high]}``. Not for ECE, which
    a resample biases upwards (its percentile interval sits above the figure), so none is given."""
    out = {}
    for name, role, metric, _, _ in (target for target in card.TARGETS if target[2] != "ece"):
        on = partial(figure_on, role=role, name=metric, probs=probabilities[name][0][role], y=scores[name]["y"])
        low, high = bootstrap_interval(on, scores[name]["lesion"])
        out[f"{name}/{role}/{metric}"] = [round(low, 4), round(high, 4)]
    return out


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


def measure(manifest: dict) -> dict:
    """Every report figure, through the serving code."""
    scores = served_scores(MODELS_DIR, tuple(dict.fromkeys(REPORT_SETS + GATE_SETS)))
    probabilities = {name: set_probabilities(manifest, scores[name]) for name in REPORT_SETS}
    return {
        "sets": {name: set_report(probabilities[name], scores[name]["y"]) for name in REPORT_SETS},
        "gate": gate_report(scores, manifest["gate"]["threshold"]),
        "intervals": target_intervals(scores, probabilities),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--records-only", action="store_true", help="render the card, EXPERIMENTS.md and the curves from metrics.json"
    )
    args = parser.parse_args(argv)
    manifest = json.loads((MODELS_DIR / "manifest.json").read_text())
    if args.records_only:
        metrics = json.loads((MODELS_DIR / "metrics.json").read_text())
    else:
        metrics = measure(manifest)
        (MODELS_DIR / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    histories, experiments = load_histories(MODELS_DIR / "weights"), load_histories(MODELS_DIR / "experiments")
    plot_training(histories, experiments, MODELS_DIR / "training.png")
    (MODELS_DIR / "MODEL_CARD.md").write_text(card.render(metrics, manifest, histories, experiments))
    (MODELS_DIR / "EXPERIMENTS.md").write_text(card.render_experiments(histories, experiments))
    print(card.evaluation_table(metrics))


if __name__ == "__main__":
    main()
