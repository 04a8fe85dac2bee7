"""Which test-time views help each served model: its fit-set figures on the identity view alone and with each
other view of ``shared.analysis.preprocess.VIEWS`` averaged in. ``models.specs.VIEWS`` records the choice.

    python -m models.views

Scored through the serving code (the crop, colour constancy, ONNX Runtime, log-scores averaged as served) on the
fit sets only (HAM10000 val fit half, PAD-UFES-20 val), with the distillation selection's score: the mean over the
sets of balanced accuracy and malignant AUC, before calibration. Each model's scores go to its manifest entry
(``views_study``, for the model card) with the views it is served on (``input.views``, from ``models.specs``);
``make export`` runs it after the exports and before ``models.fit``, which fits on those views.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from models.data import named_sets
from models.distil import SELECTION_SETS, figures
from models.scores import MODELS_DIR, model_inputs, run_batches
from models.specs import VIEWS as SERVED_VIEWS
from shared.analysis.calibration import calibrate
from shared.analysis.classifiers import ROLES, decode_side, load_classifiers
from shared.analysis.preprocess import VIEWS
from shared.analysis.threads import usable_cpus


def study(models_dir: Path = MODELS_DIR) -> dict:
    """``{role: {"identity+<view>": score}}`` (``"identity"`` alone included) for every role and view."""
    sets = named_sets()
    classifiers = load_classifiers(models_dir, "onnx", usable_cpus())
    side = decode_side(classifier.entry for classifier in classifiers.values())
    report = {}
    for role in ROLES:
        classifier = classifiers[role]
        base = classifier.entry
        classifier.entry = dataclasses.replace(base, views=("identity",))  # each view is applied below, alone
        pixels = {name: model_inputs(base, sets[name], side) for name in SELECTION_SETS}
        logs = {  # a pair is then the mean of two, as serving averages them
            view: {name: run_batches(classifier, transform(pixels[name]))["logits"] for name in SELECTION_SETS}
            for view, transform in VIEWS.items()
        }
        classifier.entry = base
        rows = {}
        for view in VIEWS:
            chosen = ("identity",) if view == "identity" else ("identity", view)
            by_set = {
                name: figures(calibrate(np.mean([logs[v][name] for v in chosen], axis=0), 1.0), sets[name], base.labels)
                for name in SELECTION_SETS
            }
            rows["+".join(chosen)] = round(float(np.mean([list(row.values()) for row in by_set.values()])), 4)
        report[role] = rows
        print(role, json.dumps(rows), flush=True)
    return report


def main(models_dir: Path = MODELS_DIR) -> None:
    path = Path(models_dir) / "manifest.json"
    scores = study(models_dir)
    manifest = json.loads(path.read_text())
    for role, rows in scores.items():
        manifest["models"][role]["views_study"] = {"sets": list(SELECTION_SETS), "score": rows}
        manifest["models"][role]["input"]["views"] = list(SERVED_VIEWS[role])
    path.write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()
