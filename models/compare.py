"""Compare a candidate models directory with the served one through the assessment, on the fit sets only.

    python -m models.compare CANDIDATE_DIR [--served models] [--resamples 2000]

``CANDIDATE_DIR`` holds a ``manifest.json`` and the files it names, as ``make export`` writes them (a retrained
reference with its gate, say). For each directory every model is recalibrated and the assessment refitted on the fit
sets (``models.fit``, at the served class-balance power) and scored out of fold: balanced accuracy, class-balanced
NLL (the assessment's own objective, steadier than an argmax count) and malignant AUC. The change of each is
bootstrapped in pairs over lesions, since 867 fit photos cannot rank two models by balanced accuracy alone. Prints
JSON; no report figure is computed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from models.data import named_sets
from models.fit import FIT_SETS, best_power, calibrated_probabilities, out_of_fold_assessment, training_log_prior
from models.metrics import auc, balanced_accuracy, bootstrap_values, class_balanced_weights, nll
from models.scores import MODELS_DIR, served_scores
from shared.labels import DIAGNOSIS_LABELS, MALIGNANT

MALIGNANT_COLUMNS = np.array([label in MALIGNANT for label in DIAGNOSIS_LABELS])
MEASURES = {
    "balanced_accuracy": lambda y, p: balanced_accuracy(y, p.argmax(1)),
    "class_balanced_nll": lambda y, p: nll(y, p, class_balanced_weights(y)),
    "malignant_auc": lambda y, p: auc(MALIGNANT_COLUMNS[y], p[:, MALIGNANT_COLUMNS].sum(1)),
}


def out_of_fold(models_dir: Path, balance: float, log_prior: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the assessment out of fold, labels, lesion ids) on the fit sets for the models in ``models_dir``."""
    models = json.loads((Path(models_dir) / "manifest.json").read_text())["models"]
    scores = served_scores(Path(models_dir), FIT_SETS)
    y = np.concatenate([scores[name]["y"] for name in FIT_SETS])
    lesions = np.concatenate([scores[name]["lesion"] for name in FIT_SETS])
    logits = {role: np.concatenate([scores[name][role] for name in FIT_SETS]) for role in models}
    probs = calibrated_probabilities(logits, {role: e["labels"] for role, e in models.items()}, y, log_prior)
    return out_of_fold_assessment(probs, y, tuple(models), balance, lesions), y, lesions


def compare(candidate_dir: Path, served_dir: Path = MODELS_DIR, resamples: int = 2000) -> dict:
    """Each measure for both directories, the candidate's change and its paired-bootstrap 95 % interval and share
    of resamples where the candidate is worse."""
    served_manifest = json.loads((Path(served_dir) / "manifest.json").read_text())
    balance = best_power({float(power): ba for power, ba in served_manifest["assessment"]["balance_study"].items()})
    log_prior = training_log_prior([sample.dx for sample in named_sets()["ham_train"]])
    served, y, lesions = out_of_fold(served_dir, balance, log_prior)
    candidate, candidate_y, _ = out_of_fold(candidate_dir, balance, log_prior)
    assert np.array_equal(y, candidate_y), "both directories must be scored on the same fit sets"
    record: dict = {"sets": list(FIT_SETS), "balance_power": balance, "resamples": resamples}
    for name, measure in MEASURES.items():

        def paired(i: np.ndarray, measure=measure) -> float:
            return measure(y[i], candidate[i]) - measure(y[i], served[i])

        change = bootstrap_values(paired, lesions, resamples)
        worse = change > 0 if name == "class_balanced_nll" else change < 0
        record[name] = {
            "served": round(measure(y, served), 4),
            "candidate": round(measure(y, candidate), 4),
            "change": round(measure(y, candidate) - measure(y, served), 4),
            "interval_95": [round(float(v), 4) for v in np.percentile(change, [2.5, 97.5])],
            "share_worse": round(float(np.mean(worse)), 3),
        }
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("candidate", type=Path)
    parser.add_argument("--served", type=Path, default=MODELS_DIR)
    parser.add_argument("--resamples", type=int, default=2000)
    args = parser.parse_args()
    print(json.dumps(compare(args.candidate, args.served, args.resamples), indent=1))


if __name__ == "__main__":
    main()
