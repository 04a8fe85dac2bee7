"""The per-epoch training records behind the model card's training table, curves and limits."""

import json
from pathlib import Path

import pytest

from models.curves import learning_rates, load_histories, resolution_experiments, training_runs

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
    history = json.loads((MODELS / "weights" / "check-resnet50.history.json").read_text())["history"]
    shipped = [row for row in history if row.get("stage") != "distil"]  # the from-scratch rows it went on from
    experiments = {
        path.name.removesuffix(".history.json"): json.loads(path.read_text())
        for path in (MODELS / "experiments").glob("*.history.json")
    }
    assert experiments, "models/experiments holds the 112 px run the card cites"
    for experiment in experiments.values():
        args = experiment["train_args"]
        from_fresh = args.get("distillation", {}).get("start") == "scratch"
        if args["model"] == "resnet50" and not from_fresh:  # the others went on from the from-scratch check
            assert experiment["history"][: len(shipped)] == shipped
    sentence = resolution_experiments(history, experiments)
    assert "at 112 px instead of 80 px" in sentence and f"{shipped[-1]['val_balanced_accuracy']:.3f}" in sentence


def test_the_committed_model_card_is_rendered_from_the_committed_records():
    """MODEL_CARD.md is generated (``make evaluate``): it must say what metrics.json, the manifest and the curves say."""
    from models import card

    histories, experiments = load_histories(MODELS / "weights"), load_histories(MODELS / "experiments")
    metrics = json.loads((MODELS / "metrics.json").read_text())
    manifest = json.loads((MODELS / "manifest.json").read_text())
    assert card.render(metrics, manifest, histories, experiments) == (MODELS / "MODEL_CARD.md").read_text()


def test_the_committed_experiments_record_is_rendered_from_the_committed_records():
    """EXPERIMENTS.md is generated (``make evaluate``): it must say what the training records say."""
    from models import card

    histories, experiments = load_histories(MODELS / "weights"), load_histories(MODELS / "experiments")
    assert card.render_experiments(histories, experiments) == (MODELS / "EXPERIMENTS.md").read_text()


def test_the_reference_schedule_names_each_stage_and_a_resumed_run():
    from models.card import schedule

    stages = [
        {"name": "head", "epochs": 5, "imgsz": 160, "lr": 1e-3, "frozen_blocks": 3, "freeze_bn": False},
        {"name": "full", "epochs": 2, "imgsz": 192, "lr": 3e-4, "frozen_blocks": 0, "freeze_bn": True},
    ]
    rows = [{"stage": "head", "epoch": e, "schedule_epochs": 3 if e <= 3 else 5} for e in range(1, 6)]
    rows += [{"stage": "full", "epoch": e} for e in range(1, 3)]
    text = schedule({"train_args": {"stages": stages, "epochs": 7}, "history": rows})
    assert text == (
        "stage head (160 px, peak learning rate 0.001, stem and first 3 blocks frozen): epochs 1–3 on a 3-epoch "
        "cosine schedule; then resumed: epochs 4–5 on a 5-epoch cosine schedule; then stage full (192 px, peak "
        "learning rate 0.0003, every block, batch-norm statistics held): epochs 1–2 on a 2-epoch cosine schedule"
    )


def test_a_size_study_is_listed_with_its_verdict_and_only_size_studies_are():
    from models.card import size_studies

    def side(score: float) -> dict:
        figures = {"balanced_accuracy": score, "malignant_auc": score}
        return {"ham_val_fit": figures, "pad_val": figures, "score": score}

    def study(candidate: float) -> dict:
        record = {"sets": ["ham_val_fit", "pad_val"], "served": side(0.6), "candidate": side(candidate)}
        rows = [{"epoch": 1, "seconds": 60.0}, {"epoch": 2, "seconds": 60.0}]
        return {"train_args": {"model": "yolo11s-cls.yaml", "imgsz": 96}, "history": rows, "size_study": record}

    lines = size_studies({"a": study(0.7), "b": study(0.5), "c": {"history": [], "train_args": {}}}).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("  - yolo11s-cls at 96 px, 2 epochs (2 min): balanced accuracy 0.700 / 0.700")
    assert "**better** (`experiments/a.history.json`)" in lines[0]
    assert "not better (`experiments/b.history.json`)" in lines[1]
