"""Fit what serving applies after the models, on the ``fit`` half of the validation lesions, and write it to the
manifest: each 7-class model's decision prior, each model's temperature (on the test-time views ``models.views``
wrote), the assessment's class-balance power, weights and biases, and the conclusive threshold.

    python -m models.fit

The fit set is the ``fit`` half of the HAM10000 validation lesions (split by lesion) plus PAD-UFES-20 val (split by
patient); every figure in the model card is measured on the other half, on Derm7pt and on PAD-UFES-20 test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from models.data import named_sets
from models.metrics import balanced_accuracy, class_balanced_weights, nll
from models.scores import MODELS_DIR, served_scores
from shared.analysis.assessment import GROUP_INDEX, Combination, combine, conclusive, malignant_probability
from shared.analysis.calibration import calibrate, log_probs
from shared.labels import DIAGNOSIS_LABELS

FIT_SETS = ("ham_val_fit", "pad_val")
# The assessment's objective is NLL with sample weights (class-balanced weight) ** power: 0 fits the data's class
# mix, 1 treats every class alike. The power is chosen by out-of-fold balanced accuracy on the fit sets. The NLL of
# the malignant question (``malignant``, an answer apps show too) joins the diagnosis's with this weight:
MALIGNANT_WEIGHT = 1.0
BALANCE_POWERS = (0.0, 0.25, 0.5, 0.75, 1.0)
BALANCE_FOLDS, BALANCE_REPEATS = 5, 3
CONCLUSIVE_ACCURACY = 0.92  # the threshold is the lowest confidence whose conclusive answers reach this on fit
AGREEMENT = ("binary", "reference")
# A 7-class model's logit bias is ``power * log(class frequency in HAM10000 train)``: 0 decides as the model was
# trained (classes drawn with weight n_c ** -0.5), higher powers move its decisions towards the data's prior.
PRIOR_POWERS = (0.0, 0.125, 0.25, 0.375, 0.5)


def fit_temperature(logits: np.ndarray, y: np.ndarray, bias: np.ndarray, points: int = 300) -> float:
    """The temperature in [0.3, 5] (a log-spaced grid of ``points``) minimising the NLL of ``calibrate``."""
    grid = np.exp(np.linspace(np.log(0.3), np.log(5.0), points))
    return round(float(grid[int(np.argmin([nll(y, calibrate(logits, t, bias)) for t in grid]))]), 4)


def training_log_prior(labels: list[str]) -> np.ndarray:
    """Centred log-frequency of each diagnosis among the HAM10000 training images."""
    counts = np.array([labels.count(label) for label in DIAGNOSIS_LABELS], float)
    log_prior = np.log(counts / counts.sum())
    return log_prior - log_prior.mean()


def fit_decision_prior(logits: np.ndarray, y: np.ndarray, log_prior: np.ndarray) -> tuple[float, float]:
    """The power in ``PRIOR_POWERS`` (the smallest on ties) whose bias, with its own temperature, gives the highest
    balanced accuracy on the fit set; returns (power, temperature)."""
    best = (-1.0, 0.0, 1.0)
    for power in PRIOR_POWERS:
        temperature = fit_temperature(logits, y, power * log_prior)
        score = balanced_accuracy(y, calibrate(logits, temperature, power * log_prior).argmax(1))
        best = max(best, (round(score, 6), -power, temperature))
    return -best[1], best[2]


def role_labels(role: str, y: np.ndarray) -> np.ndarray:
    return GROUP_INDEX[y] if role == "binary" else y


def fit_combination(probs: dict[str, np.ndarray], y: np.ndarray, roles: tuple[str, ...], balance: float) -> Combination:
    """Weights and biases of the log-linear pooling: the NLL of the diagnosis plus ``MALIGNANT_WEIGHT`` times that
    of the malignant question, sample weights class-balanced ** ``balance``; then one temperature, fitted by plain
    NLL and folded into the weights and biases, recalibrates the confidences on the fit set's own class mix (it
    changes no decision)."""
    weights = class_balanced_weights(y) ** balance
    group = GROUP_INDEX[y]
    group_weights = class_balanced_weights(group) ** balance

    def unpack(params: np.ndarray) -> Combination:
        return Combination(
            dict(zip(roles, np.log1p(np.exp(params[: len(roles)])))), tuple(params[len(roles) :]), AGREEMENT
        )

    def loss(params: np.ndarray) -> float:
        assessment = combine(probs, unpack(params))
        malignant = malignant_probability(assessment)
        return (
            nll(y, assessment, weights)
            + MALIGNANT_WEIGHT * nll(group, np.stack([1.0 - malignant, malignant], axis=1), group_weights)
            + 1e-3 * float(np.sum(params[len(roles) :] ** 2))
        )

    start = np.concatenate([np.zeros(len(roles)), np.zeros(len(DIAGNOSIS_LABELS))])
    fitted = unpack(minimize(loss, start, method="L-BFGS-B").x)
    temperature = fit_temperature(log_probs(combine(probs, fitted)), y, np.zeros(len(DIAGNOSIS_LABELS)))
    return Combination(
        {r: round(float(w) / temperature, 4) for r, w in fitted.weights.items()},
        tuple(round(float(b) / temperature, 4) for b in fitted.bias),
        AGREEMENT,
    )


def out_of_fold_assessment(
    probs: dict[str, np.ndarray], y: np.ndarray, roles: tuple[str, ...], balance: float, groups: np.ndarray
) -> np.ndarray:
    """The assessment fitted with ``balance`` on four fifths of the fit set and applied to the fifth left out, the
    probabilities averaged over ``BALANCE_REPEATS`` shuffles. The folds split by ``groups`` (lesion, or patient for
    PAD-UFES-20), so no lesion is both fitted and held out."""
    from sklearn.model_selection import StratifiedGroupKFold

    out = np.zeros((len(y), len(DIAGNOSIS_LABELS)))
    for seed in range(BALANCE_REPEATS):
        folds = StratifiedGroupKFold(BALANCE_FOLDS, shuffle=True, random_state=seed)
        for train, held in folds.split(y, y, groups):
            combination = fit_combination({r: p[train] for r, p in probs.items()}, y[train], roles, balance)
            out[held] += combine({r: p[held] for r, p in probs.items()}, combination)
    return out / BALANCE_REPEATS


def out_of_fold_balanced_accuracy(
    probs: dict[str, np.ndarray], y: np.ndarray, roles: tuple[str, ...], balance: float, groups: np.ndarray
) -> float:
    return balanced_accuracy(y, out_of_fold_assessment(probs, y, roles, balance, groups).argmax(1))


def fit_balance(
    probs: dict[str, np.ndarray], y: np.ndarray, roles: tuple[str, ...], groups: np.ndarray
) -> tuple[float, dict]:
    """The power in ``BALANCE_POWERS`` (the smallest on ties) with the best out-of-fold balanced accuracy, and
    every power's figure (folds by ``groups``)."""
    study = {power: round(out_of_fold_balanced_accuracy(probs, y, roles, power, groups), 4) for power in BALANCE_POWERS}
    return best_power(study), study


def best_power(study: dict[float, float]) -> float:
    """The power with the best out-of-fold balanced accuracy, the smallest on ties."""
    return max(study, key=lambda power: (study[power], -power))


def fit_calibration(
    role: str, labels: list[str], logits: np.ndarray, y: np.ndarray, log_prior: np.ndarray
) -> tuple[float, float, np.ndarray]:
    """A model's decision prior power (7-class models only), temperature and logit bias on the fit set."""
    if list(labels) == list(DIAGNOSIS_LABELS):
        power, temperature = fit_decision_prior(logits, y, log_prior)
        return power, temperature, np.round(power * log_prior, 6)
    bias = np.zeros(len(labels))
    return 0.0, fit_temperature(logits, role_labels(role, y), bias), bias


def assessment_out_of_fold(
    logits: dict[str, np.ndarray],
    labels: dict[str, list[str]],
    y: np.ndarray,
    log_prior: np.ndarray,
    groups: np.ndarray,
) -> float:
    """The assessment's best out-of-fold balanced accuracy over ``BALANCE_POWERS`` on the fit set (folds by
    ``groups``), every model calibrated as :func:`main` calibrates it: what a candidate model would make of the
    assessment."""
    probs = calibrated_probabilities(logits, labels, y, log_prior)
    _, study = fit_balance(probs, y, tuple(logits), groups)
    return max(study.values())


def calibrated_probabilities(
    logits: dict[str, np.ndarray], labels: dict[str, list[str]], y: np.ndarray, log_prior: np.ndarray
) -> dict[str, np.ndarray]:
    """Every model's probabilities on the fit set, calibrated on it as :func:`main` calibrates them."""
    probs = {}
    for role, role_logits in logits.items():
        _, temperature, bias = fit_calibration(role, labels[role], role_logits, y, log_prior)
        probs[role] = calibrate(role_logits, temperature, bias)
    return probs


def conclusive_threshold(assessment: np.ndarray, probs: dict, combination: Combination, y: np.ndarray) -> float:
    for threshold in np.round(np.arange(0.30, 0.99, 0.01), 2):
        held = conclusive(assessment, probs, combination, threshold)
        if held.sum() >= 20 and np.mean(assessment[held].argmax(1) == y[held]) >= CONCLUSIVE_ACCURACY:
            return float(threshold)
    return 0.99


def main(models_dir: Path = MODELS_DIR) -> None:
    path = Path(models_dir) / "manifest.json"
    manifest = json.loads(path.read_text())
    scores = served_scores(models_dir, FIT_SETS)
    y = np.concatenate([scores[name]["y"] for name in FIT_SETS])
    lesions = np.concatenate([scores[name]["lesion"] for name in FIT_SETS])
    log_prior = training_log_prior([sample.dx for sample in named_sets()["ham_train"]])
    probs = {}
    for role, entry in manifest["models"].items():
        logits = np.concatenate([scores[name][role] for name in FIT_SETS])
        power, temperature, bias = fit_calibration(role, entry["labels"], logits, y, log_prior)
        seven_class = entry["labels"] == list(DIAGNOSIS_LABELS)
        prior = f"decision prior power from {list(PRIOR_POWERS)} by balanced accuracy, then " if seven_class else ""
        entry["calibration"] = prior + "temperature fitted by NLL on " + " + ".join(FIT_SETS)
        entry["temperature"], entry["decision_prior_power"] = temperature, power
        entry["logit_bias"] = {label: float(b) for label, b in zip(entry["labels"], bias)}
        probs[role] = calibrate(logits, temperature, bias)
    roles = tuple(manifest["models"])
    balance, study = fit_balance(probs, y, roles, lesions)
    combination = fit_combination(probs, y, roles, balance)
    threshold = conclusive_threshold(combine(probs, combination), probs, combination, y)
    manifest["assessment"] = {
        "method": "log-linear pooling of calibrated probabilities, softmax(bias + sum weight * log p)",
        "weights": combination.weights,
        "bias": dict(zip(DIAGNOSIS_LABELS, combination.bias)),
        "agreement": list(AGREEMENT),
        "conf_threshold": threshold,
        "fitted_on": list(FIT_SETS),
        "objective": f"NLL of the diagnosis + {MALIGNANT_WEIGHT:g} x NLL of malignant, sample weights "
        f"(class-balanced) ** {balance}, the power from {list(BALANCE_POWERS)} by {BALANCE_FOLDS}-fold out-of-fold "
        "balanced accuracy on the fit sets (folds by lesion); then one temperature by plain NLL, folded into weights and biases",
        "balance_study": {str(power): score for power, score in study.items()},
    }
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    print(json.dumps(manifest["assessment"], indent=1))


if __name__ == "__main__":
    main()
