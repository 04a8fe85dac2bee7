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
