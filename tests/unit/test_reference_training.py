"""The reference trainer resumes where it stopped: weights, EMA, optimiser, schedule, sampler and curves."""

from __future__ import annotations

import math

import torch

from models.nets import ExponentialAverage
from models.reference import restore, save_checkpoint


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
    save_checkpoint(tmp_path / "last.ckpt", first, first_ema, gen_first, [{"epoch": 1}])

    resumed, resumed_ema = parts_for(torch.nn.Linear(4, 2))
    gen_resumed = torch.Generator().manual_seed(99)
    assert restore(tmp_path / "last.ckpt", resumed, resumed_ema, gen_resumed, "cpu") == [{"epoch": 1}]
    for _ in range(3):
        step(straight, straight_ema, gen_straight)
        step(resumed, resumed_ema, gen_resumed)
    for key in ("model", "ema"):
        for a, b in zip(straight[key].state_dict().values(), resumed[key].state_dict().values()):
            assert torch.allclose(a, b)
    assert resumed["schedule"].get_last_lr() == straight["schedule"].get_last_lr()


def test_no_checkpoint_means_a_fresh_start(tmp_path):
    parts, ema = parts_for(torch.nn.Linear(4, 2))
    assert restore(tmp_path / "absent.ckpt", parts, ema, torch.Generator(), "cpu") == []
