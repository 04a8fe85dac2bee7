"""The one metrics module, used by training, export and evaluation alike.

Probabilities are N x K arrays; ``y`` holds label indices. Malignant scores for a 7-class model are the summed
probabilities of mel, bcc and akiec; for the binary model its ``malignant`` column.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.metrics import roc_auc_score


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean recall over the classes present in ``y_true``."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in np.unique(y_true)]))


def macro_auc(y: np.ndarray, probs: np.ndarray) -> float:
    """Mean one-vs-rest AUC over the classes present with both positives and negatives."""
    aucs = [roc_auc_score(y == c, probs[:, c]) for c in range(probs.shape[1]) if 0 < np.sum(y == c) < len(y)]
    return float(np.mean(aucs)) if aucs else float("nan")


def auc(positive: np.ndarray, score: np.ndarray) -> float:
    positive = np.asarray(positive, bool)
    return float(roc_auc_score(positive, score)) if 0 < positive.sum() < len(positive) else float("nan")


def sensitivity_specificity(positive: np.ndarray, predicted: np.ndarray) -> tuple[float, float]:
    positive, predicted = np.asarray(positive, bool), np.asarray(predicted, bool)
    sensitivity = float(np.mean(predicted[positive])) if positive.any() else float("nan")
    specificity = float(np.mean(~predicted[~positive])) if (~positive).any() else float("nan")
    return sensitivity, specificity


def ece(y: np.ndarray, probs: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error of the top label, equal-width confidence bins."""
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total)


def nll(y: np.ndarray, probs: np.ndarray, sample_weight: np.ndarray | None = None) -> float:
    picked = np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0))
    return float(-np.average(picked, weights=sample_weight))


def class_balanced_weights(y: np.ndarray) -> np.ndarray:
    """Per-sample weights that give every class present the same total weight."""
    counts = np.bincount(y)
    return len(y) / (np.count_nonzero(counts) * counts[y])


def bootstrap_interval(
    statistic: Callable[[np.ndarray], float],
    groups: np.ndarray,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile interval of ``statistic(indices)`` over :func:`bootstrap_values`."""
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(bootstrap_values(statistic, groups, resamples, seed), [tail, 100.0 - tail])
    return float(lo), float(hi)


def bootstrap_values(
    statistic: Callable[[np.ndarray], float], groups: np.ndarray, resamples: int = 1000, seed: int = 0
) -> np.ndarray:
    """``statistic(indices)`` over resamples of whole groups (lesions or patients) drawn with replacement, so that
    images of one lesion stay together; resamples where the statistic is undefined (a class absent, NaN) are left
    out. A paired comparison passes a statistic that is the difference of two models on the same indices."""
    _, inverse = np.unique(np.asarray(groups), return_inverse=True)
    members = np.split(np.argsort(inverse, kind="stable"), np.cumsum(np.bincount(inverse))[:-1])
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        picked = rng.integers(0, len(members), len(members))
        value = statistic(np.concatenate([members[g] for g in picked]))
        if value == value:
            values.append(value)
    return np.array(values)
