"""models/metrics.py, the one metrics module of training and evaluation."""

import numpy as np
import pytest

from models.metrics import balanced_accuracy, class_balanced_weights, ece, macro_auc, sensitivity_specificity


def test_balanced_accuracy_weighs_every_class_alike():
    y = np.array([0, 0, 0, 0, 1])
    assert balanced_accuracy(y, np.zeros(5, int)) == 0.5
    assert balanced_accuracy(y, y) == 1.0


def test_perfect_scores_give_auc_one_and_reversed_zero():
    y = np.array([0, 1, 2, 0, 1, 2])
    probs = np.eye(3)[y] * 0.8 + 0.2 / 3
    assert macro_auc(y, probs) == 1.0
    assert macro_auc(y, 1 - probs) == 0.0


def test_sensitivity_and_specificity():
    assert sensitivity_specificity(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0])) == (0.5, 1.0)


def test_ece_is_zero_when_confidence_matches_accuracy_and_large_when_overconfident():
    y = np.array([0, 0, 0, 1])
    honest = np.tile([0.75, 0.25], (4, 1))
    assert ece(y, honest) == pytest.approx(0.0)
    assert ece(y, np.tile([0.99, 0.01], (4, 1))) == pytest.approx(0.24)


def test_class_balanced_weights_give_each_class_the_same_total():
    y = np.array([0, 0, 0, 1])
    weights = class_balanced_weights(y)
    assert weights[y == 0].sum() == pytest.approx(weights[y == 1].sum())
