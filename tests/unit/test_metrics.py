"""models/metrics.py, the one metrics module of training and evaluation."""

import numpy as np
import pytest

from models.metrics import (
    balanced_accuracy,
    bootstrap_interval,
    bootstrap_values,
    class_balanced_weights,
    ece,
    macro_auc,
    sensitivity_specificity,
)


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


def test_bootstrap_interval_contains_the_mean_and_narrows_with_more_groups():
    rng = np.random.default_rng(1)
    few, many = rng.normal(size=40), rng.normal(size=4000)
    low_few, high_few = bootstrap_interval(lambda i: float(few[i].mean()), np.arange(40), resamples=300)
    low_many, high_many = bootstrap_interval(lambda i: float(many[i].mean()), np.arange(4000), resamples=300)
    assert low_few < few.mean() < high_few and low_many < many.mean() < high_many
    assert 5 < (high_few - low_few) / (high_many - low_many) < 15  # width ~ 1 / sqrt(n): 10 times narrower


def test_bootstrap_interval_resamples_whole_groups():
    # two groups, each of identical values: every resample mixes whole groups, so means are 0, 0.5 or 1 only
    values = np.array([0.0] * 5 + [1.0] * 5)
    seen = set()
    bootstrap_interval(lambda i: seen.add(float(values[i].mean())) or 0.0, np.array([7] * 5 + [3] * 5), 200)
    assert seen == {0.0, 0.5, 1.0}
    # one group: every resample is the whole set, so the interval is the figure itself
    assert bootstrap_interval(lambda i: float(values[i].mean()), np.zeros(10), 50) == (0.5, 0.5)


def test_bootstrap_interval_leaves_out_undefined_resamples():
    calls = iter(range(100))
    low, high = bootstrap_interval(lambda i: float("nan") if next(calls) % 2 else 1.0, np.arange(5), 100)
    assert (low, high) == (1.0, 1.0)


def test_a_paired_bootstrap_draws_both_models_on_the_same_groups():
    # b is a plus 0.1 on every image: paired, every resample sees exactly 0.1; unpaired draws would scatter widely
    rng = np.random.default_rng(2)
    a = rng.normal(size=300)
    b = a + 0.1
    change = bootstrap_values(lambda i: float(b[i].mean() - a[i].mean()), np.arange(300) // 3, resamples=200)
    assert len(change) == 200 and np.allclose(change, 0.1)
