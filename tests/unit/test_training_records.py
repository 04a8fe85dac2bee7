"""The per-epoch training records behind the model card's training table, curves and limits."""

import json
from pathlib import Path

import pytest

from models.curves import learning_rates, resolution_experiments, training_runs

MODELS = Path(__file__).resolve().parents[2] / "models"
HISTORIES = sorted((MODELS / "weights").glob("*.history.json")) + sorted((MODELS / "experiments").glob("*.json"))


@pytest.mark.parametrize("path", HISTORIES, ids=lambda path: path.name)
def test_every_epoch_records_its_learning_rate_and_image_size(path):
    record = json.loads(path.read_text())
    rows = record["history"]
    assert [row["epoch"] for row in rows] == list(range(1, len(rows) + 1))
    assert record["train_args"]["epochs"] == len(rows)
    assert all(row["lr0"] > 0 and row["imgsz"] >= 32 for row in rows)
    assert (rows[-1]["lr0"], rows[-1]["imgsz"]) == (record["train_args"]["lr0"], record["train_args"]["imgsz"])


def test_resumed_runs_are_listed_with_their_learning_rate_and_size():
    rows = [{"lr0": 1e-3, "imgsz": 80}] * 2 + [{"lr0": 4e-4, "imgsz": 80}] * 3 + [{"lr0": 4e-4, "imgsz": 112}]
    history = {"history": rows}
    assert training_runs(history) == [(1e-3, 80, 2), (4e-4, 80, 3), (4e-4, 112, 1)]
    assert learning_rates(history) == (
        "0.001 (2 epochs at 80 px), then 0.0004 (3 epochs at 80 px), then 0.0004 (1 epoch at 112 px)"
    )
    assert learning_rates({"history": rows[:2]}) == "0.001"


def test_the_unshipped_resolution_experiment_continues_the_shipped_check():
    shipped = json.loads((MODELS / "weights" / "check-resnet50.history.json").read_text())["history"]
    experiments = {
        path.name.removesuffix(".history.json"): json.loads(path.read_text())
        for path in (MODELS / "experiments").glob("*.history.json")
    }
    assert experiments, "models/experiments holds the 112 px run the card cites"
    for experiment in experiments.values():
        assert experiment["history"][: len(shipped)] == shipped
    sentence = resolution_experiments(shipped, experiments)
    assert "at 112 px instead of 80 px" in sentence and f"{shipped[-1]['val_balanced_accuracy']:.3f}" in sentence
