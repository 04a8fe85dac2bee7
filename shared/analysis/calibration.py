"""The one calibration step, used by serving, export and evaluation: temperature scaling with a per-label bias."""

from __future__ import annotations

import numpy as np


def calibrate(logits: np.ndarray, temperature: float, bias: np.ndarray | tuple[float, ...] | None = None) -> np.ndarray:
    """Probabilities ``softmax(logits / temperature + bias)`` over the last axis.

    ``logits`` may be any log-scores: a model that outputs probabilities passes ``log(p)``, which differs from its
    logits by a constant per row and so gives the same result."""
    scaled = np.asarray(logits, np.float64) / temperature
    if bias is not None:
        scaled = scaled + np.asarray(bias, np.float64)
    scaled -= scaled.max(axis=-1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=-1, keepdims=True)


def log_probs(probs: np.ndarray) -> np.ndarray:
    """Log-scores of a model that outputs probabilities, safe at 0."""
    return np.log(np.clip(np.asarray(probs, np.float64), 1e-12, 1.0))
