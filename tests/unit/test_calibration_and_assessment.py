"""The one calibration function, the assessment's pooling and the conclusive rule, and colour constancy."""

from __future__ import annotations

import numpy as np

from models import fit
from models.metrics import balanced_accuracy, nll
from shared.analysis.assessment import GROUP_INDEX, Combination, combine, conclusive, malignant_probability
from shared.analysis.calibration import calibrate, log_probs
from shared.analysis.preprocess import shades_of_grey
from shared.labels import DIAGNOSIS_LABELS

ROLES = ("binary", "diagnosis", "check", "reference")


def test_calibrate_is_softmax_of_scaled_logits_plus_bias():
    logits = np.array([[2.0, 0.0, -1.0]])
    probs = calibrate(logits, 2.0, (0.0, 1.0, 0.0))
    expected = np.exp([1.0, 1.0, -0.5]) / np.exp([1.0, 1.0, -0.5]).sum()
    assert np.allclose(probs, expected) and np.allclose(probs.sum(-1), 1)


def test_probabilities_and_their_logs_calibrate_alike():
    logits = np.array([1.5, -0.3, 0.2])
    softmax = np.exp(logits) / np.exp(logits).sum()
    assert np.allclose(calibrate(log_probs(softmax), 0.8), calibrate(logits, 0.8))


def uniform(k: int) -> np.ndarray:
    return np.full(k, 1.0 / k)


def test_one_model_with_weight_one_and_no_bias_is_its_own_assessment():
    diagnosis = np.array([0.05, 0.05, 0.1, 0.05, 0.6, 0.1, 0.05])
    combination = Combination({"diagnosis": 1.0}, (0.0,) * 7, ())
    assert np.allclose(combine({"diagnosis": diagnosis}, combination), diagnosis)
    assert np.isclose(malignant_probability(diagnosis), 0.05 + 0.05 + 0.6)


def test_the_binary_model_moves_the_assessment_towards_its_group():
    probs = {"binary": np.array([0.1, 0.9]), "diagnosis": uniform(7)}
    combination = Combination({"binary": 1.0, "diagnosis": 1.0}, (0.0,) * 7, ())
    assessment = combine(probs, combination)
    assert np.isclose(assessment.sum(), 1) and malignant_probability(assessment) > 0.5
    assert DIAGNOSIS_LABELS[int(np.argmax(assessment))] in ("akiec", "bcc", "mel")


def test_conclusive_needs_confidence_and_agreement():
    mel = np.array([0.02, 0.02, 0.02, 0.02, 0.88, 0.02, 0.02])
    combination = Combination({"reference": 1.0}, (0.0,) * 7, ("binary", "reference"))
    agreeing = {"reference": mel, "binary": np.array([0.2, 0.8])}
    disagreeing = {"reference": mel, "binary": np.array([0.7, 0.3])}
    assert conclusive(mel, agreeing, combination, 0.8)
    assert not conclusive(mel, agreeing, combination, 0.9)
    assert not conclusive(mel, disagreeing, combination, 0.8)


def test_shades_of_grey_removes_a_colour_cast():
    rng = np.random.default_rng(0)
    scene = rng.integers(60, 200, (32, 32, 3)).astype(np.float32)
    cast = np.clip(scene * np.array([1.3, 1.0, 0.7]), 0, 255).astype(np.uint8)
    corrected = shades_of_grey(cast).reshape(-1, 3).astype(float)
    means = np.power(np.mean(corrected**6, axis=0), 1 / 6)
    assert means.max() / means.min() < 1.05
    assert shades_of_grey(cast).dtype == np.uint8 and shades_of_grey(cast).shape == cast.shape


def test_the_decision_prior_is_the_smallest_power_when_none_decides_better():
    y = np.repeat(np.arange(7), 10)
    logits = 5.0 * np.eye(7)[y]  # every decision is already right
    log_prior = fit.training_log_prior(["nv"] * 60 + ["mel", "bkl", "bcc", "akiec", "vasc", "df"] * 10)
    assert fit.fit_decision_prior(logits, y, log_prior)[0] == 0.0


def test_the_decision_prior_moves_decisions_away_from_a_class_the_model_overcalls():
    y = np.repeat(np.arange(7), 10)
    logits = np.eye(7)[y]
    logits[:, 3] += 1.2  # df wins every image by 0.2 without a prior
    log_prior = fit.training_log_prior(["nv"] * 60 + ["mel", "bkl", "bcc", "akiec", "vasc"] * 10 + ["df"])
    power, temperature = fit.fit_decision_prior(logits, y, log_prior)
    assert power > 0 and 0.3 <= temperature <= 5.0
    bias = power * log_prior
    assert balanced_accuracy(y, (logits / temperature + bias).argmax(1)) == 1.0


def rare_classes_problem(seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One model that ranks the six rare classes well but always gives nv, 20 times as common, a head start."""
    rng, nv = np.random.default_rng(seed), DIAGNOSIS_LABELS.index("nv")
    y = np.concatenate([np.full(400, nv), np.repeat(np.delete(np.arange(7), nv), 20)])
    logits = rng.normal(0.0, 1.0, (len(y), 7)) + 2.0 * np.eye(7)[y]
    logits[:, nv] += 1.5
    return {"diagnosis": calibrate(logits, 1.0)}, y


def test_the_assessment_balance_power_is_chosen_by_out_of_fold_balanced_accuracy():
    probs, y = rare_classes_problem()
    power, study = fit.fit_balance(probs, y, ("diagnosis",), np.arange(len(y)))
    assert set(study) == set(fit.BALANCE_POWERS)
    assert power > 0.0 and study[power] == max(study.values()) > study[0.0]


def test_the_assessment_balance_power_is_the_smallest_when_none_decides_better():
    y = np.repeat(np.arange(7), 10)
    probs = {"diagnosis": calibrate(6.0 * np.eye(7)[y], 1.0)}  # every answer is right at any power
    power, study = fit.fit_balance(probs, y, ("diagnosis",), np.arange(len(y)))
    assert power == 0.0 and set(study.values()) == {1.0}


def test_the_out_of_fold_assessment_never_fits_and_holds_out_images_of_one_lesion(monkeypatch):
    probs, y = rare_classes_problem()
    lesions = np.arange(len(y)) // 2  # two photos of every lesion
    fitted_on = []
    real_fit = fit.fit_combination

    def recording_fit(probs_part, y_part, roles, balance):
        fitted_on.append(probs_part["diagnosis"])
        return real_fit(probs_part, y_part, roles, balance)

    monkeypatch.setattr(fit, "fit_combination", recording_fit)
    fit.out_of_fold_assessment(probs, y, ("diagnosis",), 1.0, lesions)
    rows = {row.tobytes(): index for index, row in enumerate(probs["diagnosis"])}
    assert len(fitted_on) == fit.BALANCE_REPEATS * fit.BALANCE_FOLDS
    for part in fitted_on:
        fitted = {lesions[rows[row.tobytes()]] for row in part}
        held = set(lesions) - fitted
        assert held, "each fold holds some lesions out"
        counts = np.bincount(lesions[[rows[row.tobytes()] for row in part]], minlength=lesions.max() + 1)
        assert set(counts[list(fitted)]) == {2}, "a lesion is fitted with both its photos or not at all"


def test_a_second_model_with_its_own_errors_lifts_the_assessment_and_an_echo_does_not():
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(7), 30)
    first = rng.normal(0.0, 1.5, (len(y), 7)) + 1.5 * np.eye(7)[y]
    independent = rng.normal(0.0, 1.5, (len(y), 7)) + 1.5 * np.eye(7)[y]
    labels = {"diagnosis": list(DIAGNOSIS_LABELS), "reference": list(DIAGNOSIS_LABELS)}
    no_prior = np.zeros(7)
    echo = fit.assessment_out_of_fold({"diagnosis": first, "reference": first}, labels, y, no_prior, np.arange(len(y)))
    lifted = fit.assessment_out_of_fold(
        {"diagnosis": independent, "reference": first}, labels, y, no_prior, np.arange(len(y))
    )
    alone = balanced_accuracy(y, first.argmax(1))
    assert abs(echo - alone) < 0.05 and lifted > echo + 0.05


def test_the_assessment_temperature_is_fitted_and_changes_no_decision():
    probs, y = rare_classes_problem()
    combination = fit.fit_combination(probs, y, ("diagnosis",), 1.0)
    fitted = combine(probs, combination)

    def scaled(factor: float) -> np.ndarray:
        weights = {role: factor * w for role, w in combination.weights.items()}
        return combine(probs, Combination(weights, tuple(factor * b for b in combination.bias), ()))

    assert nll(y, fitted) < min(nll(y, scaled(0.8)), nll(y, scaled(1.25)))
    assert np.array_equal(scaled(0.8).argmax(1), fitted.argmax(1))


def test_the_malignant_question_weighs_in_the_assessment_fit(monkeypatch):
    rng = np.random.default_rng(2)
    y = np.repeat(np.arange(7), 40)
    diagnosis = rng.normal(0.0, 1.0, (len(y), 7)) + 1.0 * np.eye(7)[y]
    binary = rng.normal(0.0, 1.0, (len(y), 2)) + 2.5 * np.eye(2)[GROUP_INDEX[y]]  # sure of the group only
    probs = {"diagnosis": calibrate(diagnosis, 1.0), "binary": calibrate(binary, 1.0)}

    def malignant_nll() -> float:
        malignant = malignant_probability(combine(probs, fit.fit_combination(probs, y, tuple(probs), 0.0)))
        return nll(GROUP_INDEX[y], np.stack([1.0 - malignant, malignant], axis=1))

    with_question = malignant_nll()
    monkeypatch.setattr(fit, "MALIGNANT_WEIGHT", 0.0)
    assert with_question < malignant_nll()
