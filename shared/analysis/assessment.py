"""The assessment: every served model's calibrated scores combined into one diagnosis, and when it is conclusive.

Log-linear pooling: ``score(c) = bias(c) + sum_m weight_m * log p_m(c)``, softmax over the seven diagnoses; the
binary model contributes ``log p_binary(group(c))``. The weights and biases are fitted on validation lesions
(``models/assessment.py``) and listed in the manifest and the model card.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.analysis.calibration import calibrate, log_probs
from shared.labels import DIAGNOSIS_LABELS, MALIGNANT, group_of

MALIGNANT_INDEX = np.array([label in MALIGNANT for label in DIAGNOSIS_LABELS])
GROUP_INDEX = np.array([1 if group_of(label) == "malignant" else 0 for label in DIAGNOSIS_LABELS])


@dataclass(frozen=True)
class Combination:
    weights: dict[str, float]  # role -> weight of its log-probabilities
    bias: tuple[float, ...]  # per diagnosis label
    agreement: tuple[str, ...]  # roles whose benign/malignant answer must match the assessment's for `conclusive`

    @classmethod
    def from_manifest(cls, spec: dict) -> Combination:
        return cls(
            weights={role: float(w) for role, w in spec["weights"].items()},
            bias=tuple(float(spec["bias"][label]) for label in DIAGNOSIS_LABELS),
            agreement=tuple(spec["agreement"]),
        )


def diagnosis_log_probs(role: str, probs: np.ndarray) -> np.ndarray:
    """A model's log-probabilities over the seven diagnoses (N x 7); the binary model's spread by group."""
    logs = log_probs(probs)
    return logs[..., GROUP_INDEX] if role == "binary" else logs


def combine(probs: dict[str, np.ndarray], combination: Combination) -> np.ndarray:
    """The assessment's probabilities (N x 7, or 7) from each role's calibrated probabilities."""
    terms = [weight * diagnosis_log_probs(role, probs[role]) for role, weight in combination.weights.items()]
    return calibrate(np.sum(terms, axis=0), 1.0, combination.bias)


def malignant_probability(probs: np.ndarray) -> np.ndarray:
    return probs[..., MALIGNANT_INDEX].sum(axis=-1)


def group_answer(role: str, probs: np.ndarray) -> np.ndarray:
    """1 where a role's answer is malignant, else 0 (the binary model by its label, the others by their
    top diagnosis)."""
    best = np.argmax(probs, axis=-1)
    return best if role == "binary" else GROUP_INDEX[best]


def conclusive(
    assessment: np.ndarray, probs: dict[str, np.ndarray], combination: Combination, threshold: float
) -> np.ndarray:
    """``assessment.confidence >= threshold`` and every agreement role answers the assessment's group."""
    agree = np.ones(assessment.shape[:-1], bool)
    own = GROUP_INDEX[np.argmax(assessment, axis=-1)]
    for role in combination.agreement:
        agree &= group_answer(role, probs[role]) == own
    return (assessment.max(axis=-1) >= threshold) & agree
