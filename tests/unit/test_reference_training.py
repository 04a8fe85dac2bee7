"""Training resumes where it stopped (weights, EMA, optimiser, schedule, sampler and curves), only for the recipe
that wrote the checkpoint, and a run killed while writing one leaves the one before intact."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from models import checkpoints
from models.nets import ExponentialAverage

RECIPE = {"epochs": 4, "lr": 1e-2}


def parts_for(model: torch.nn.Module) -> tuple[dict, ExponentialAverage]:
    ema = ExponentialAverage(model, decay=0.9)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: 0.5 * (1 + math.cos(math.pi * s / 10)))
    return {"model": model, "ema": ema.module, "optimiser": optimiser, "schedule": schedule}, ema


def step(parts: dict, ema: ExponentialAverage, gen: torch.Generator) -> None:
    x = torch.randn(8, 4, generator=gen)
    loss = parts["model"](x).pow(2).mean()
    parts["optimiser"].zero_grad()
    loss.backward()
    parts["optimiser"].step()
    parts["schedule"].step()
    ema.update(parts["model"])


def test_a_resumed_run_continues_exactly_like_an_uninterrupted_one(tmp_path):
    torch.manual_seed(0)
    straight, straight_ema = parts_for(torch.nn.Linear(4, 2))
    torch.manual_seed(0)
    first, first_ema = parts_for(torch.nn.Linear(4, 2))
    gen_straight, gen_first = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    for _ in range(3):
        step(straight, straight_ema, gen_straight)
        step(first, first_ema, gen_first)
    checkpoints.save(tmp_path / "last.ckpt", RECIPE, first, first_ema, gen_first, [{"epoch": 1}])

    resumed, resumed_ema = parts_for(torch.nn.Linear(4, 2))
    gen_resumed = torch.Generator().manual_seed(99)
    assert checkpoints.restore(tmp_path / "last.ckpt", RECIPE, resumed, resumed_ema, gen_resumed) == [{"epoch": 1}]
    for _ in range(3):
        step(straight, straight_ema, gen_straight)
        step(resumed, resumed_ema, gen_resumed)
    for key in ("model", "ema"):
        for a, b in zip(straight[key].state_dict().values(), resumed[key].state_dict().values()):
            assert torch.allclose(a, b)
    assert resumed["schedule"].get_last_lr() == straight["schedule"].get_last_lr()


def test_no_checkpoint_means_a_fresh_start(tmp_path):
    parts, ema = parts_for(torch.nn.Linear(4, 2))
    assert checkpoints.restore(tmp_path / "absent.ckpt", RECIPE, parts, ema, torch.Generator()) == []


def test_a_checkpoint_of_another_recipe_is_not_gone_on_from(tmp_path):
    parts, ema = parts_for(torch.nn.Linear(4, 2))
    checkpoints.save(tmp_path / "last.ckpt", RECIPE, parts, ema, torch.Generator(), [{"epoch": 1}, {"epoch": 2}])
    longer = {**RECIPE, "epochs": 8}
    assert checkpoints.restore(tmp_path / "last.ckpt", longer, parts, ema, torch.Generator()) == []
    assert checkpoints.finished(tmp_path / "last.ckpt", RECIPE, 2) is not None
    assert checkpoints.finished(tmp_path / "last.ckpt", RECIPE, 3) is None, "two epochs of three: not done"
    assert checkpoints.finished(tmp_path / "last.ckpt", longer, 2) is None


def test_a_run_killed_while_writing_a_checkpoint_leaves_the_last_one_whole(tmp_path, monkeypatch):
    parts, ema = parts_for(torch.nn.Linear(4, 2))
    path = tmp_path / "last.ckpt"
    checkpoints.save(path, RECIPE, parts, ema, torch.Generator(), [{"epoch": 1}])
    real_save = torch.save

    def killed(obj, target):
        Path(target).write_bytes(b"PK\x03\x04 half a zip")  # what a kill mid-write leaves
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        checkpoints.save(path, RECIPE, parts, ema, torch.Generator(), [{"epoch": 1}, {"epoch": 2}])
    monkeypatch.setattr(torch, "save", real_save)
    assert checkpoints.restore(path, RECIPE, parts, ema, torch.Generator()) == [{"epoch": 1}]
    assert [file.name for file in tmp_path.iterdir()] == ["last.ckpt"], "no half-written file is left behind"


def test_weights_written_again_unchanged_keep_their_digest_and_changed_ones_do_not(tmp_path):
    model = torch.nn.Linear(4, 2)
    torch.save(model.state_dict(), tmp_path / "first.pth")
    torch.save({"ema": model.state_dict()}, tmp_path / "last.ckpt")  # as a checkpoint holds them
    checkpoints.atomic_save(torch.load(tmp_path / "last.ckpt")["ema"], tmp_path / "again.pth")
    assert (tmp_path / "first.pth").read_bytes() != (tmp_path / "again.pth").read_bytes()
    assert checkpoints.digest(tmp_path / "first.pth") == checkpoints.digest(tmp_path / "again.pth")
    with torch.no_grad():
        model.bias.add_(1.0)
    torch.save(model.state_dict(), tmp_path / "changed.pth")
    assert checkpoints.digest(tmp_path / "changed.pth") != checkpoints.digest(tmp_path / "first.pth")
    assert checkpoints.digest(None) is None and checkpoints.digest(tmp_path / "absent.pth") is None


def test_a_finished_multi_stage_run_is_not_trained_again_and_its_lost_weights_come_back(tmp_path, monkeypatch):
    from models import reference

    monkeypatch.setattr(reference, "BUILD_DIR", tmp_path)
    monkeypatch.setattr(reference, "HISTORY", tmp_path / "history.json")
    monkeypatch.setattr(reference, "write_split", lambda *args: None)
    monkeypatch.setattr(reference, "load_external", lambda *args, **kwargs: [])
    trained = []

    def fake_stage(spec, stage, pretrained, init, data_root, gen, device, recipe):
        """Train nothing: write the stage's weights and a complete checkpoint as run_stage does."""
        trained.append(stage["name"])
        torch.manual_seed(len(trained))
        parts, ema = parts_for(torch.nn.Linear(4, 2))
        history = [
            {"stage": stage["name"], "epoch": e + 1, "seconds": 1.0, "ham_val_balanced_accuracy": 0.5}
            for e in range(stage["epochs"])
        ]
        checkpoints.atomic_save(ema.module.state_dict(), tmp_path / f"{stage['name']}.pth")
        checkpoints.save(tmp_path / f"{stage['name']}.ckpt", recipe, parts, ema, gen, history)
        return history

    monkeypatch.setattr(reference, "run_stage", fake_stage)
    stages = (
        {"name": "head", "epochs": 1, "imgsz": 32, "lr": 1e-3, "frozen_blocks": 3, "freeze_bn": False},
        {"name": "full", "epochs": 2, "imgsz": 32, "lr": 1e-4, "frozen_blocks": 0, "freeze_bn": False},
    )
    spec = {**reference.REFERENCE, "stages": stages}
    reference.run(spec, "wheel", tmp_path)
    assert trained == ["head", "full"]
    head = checkpoints.digest(tmp_path / "head.pth")
    (tmp_path / "head.pth").unlink()  # lost after its checkpoint was written
    reference.run(spec, "wheel", tmp_path)
    assert trained == ["head", "full"], "a finished run is not trained again"
    assert checkpoints.digest(tmp_path / "head.pth") == head and (tmp_path / "reference.pth").exists()
    reference.run({**spec, "stages": (stages[0], {**stages[1], "epochs": 3})}, "wheel", tmp_path)
    assert trained == ["head", "full", "full"], "another recipe for a stage runs that stage again"
