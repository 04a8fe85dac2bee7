"""Per-epoch checkpoints, so that a training run cut off at any moment goes on where it stopped when the same
command runs again.

A checkpoint holds the model, its EMA, the optimiser, the schedule, the sampler's generator and the curves so far,
with a key of the recipe that wrote it: a run with another recipe (epochs, learning rate, pretrained source, seed...)
starts afresh instead of going on from it. Every file is written whole or not at all (a temporary file, then a
rename), so a run killed while writing leaves the previous checkpoint intact.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.nets import ExponentialAverage


def _atomically(write, path: Path, temporary: Path) -> None:
    """``write(temporary)``, then rename it over ``path``; a failed write leaves no temporary file behind."""
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it over ``path``."""
    _atomically(lambda temporary: torch.save(obj, temporary), path, path.with_name(path.name + ".partial"))


def atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    """``np.savez`` to a temporary file beside ``path``, then rename it over ``path``."""
    _atomically(lambda temporary: np.savez(temporary, **arrays), path, path.with_name(path.stem + ".partial.npz"))


def atomic_write_text(path: Path, text: str) -> None:
    _atomically(lambda temporary: temporary.write_text(text), path, path.with_name(path.name + ".partial"))


def digest(path: Path | None) -> str | None:
    """A short digest of the weights in a file, for a recipe's starting weights (None for no file). Torch files are
    digested by their tensors, not their bytes, so weights written again unchanged (from a checkpoint, with a new
    date) keep their digest; other files (ONNX) by their bytes."""
    if path is None or not path.exists():
        return None
    hashed = hashlib.sha256()
    if path.suffix in (".pt", ".pth"):
        weights = torch.load(path, map_location="cpu", weights_only=False)
        if isinstance(weights, dict) and isinstance(weights.get("model"), torch.nn.Module):  # ultralytics
            weights = weights["model"].state_dict()
        for key in sorted(weights):
            hashed.update(key.encode())
            hashed.update(weights[key].detach().contiguous().numpy().tobytes())
    else:
        hashed.update(path.read_bytes())
    return hashed.hexdigest()[:12]


def recipe_key(recipe: dict) -> str:
    """A short digest of everything that makes two runs the same run."""
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:16]


def save(
    path: Path, recipe: dict, parts: dict, ema: ExponentialAverage, gen: torch.Generator, history: list[dict]
) -> None:
    """Everything :func:`restore` needs to go on exactly where training stopped."""
    state = {key: part.state_dict() for key, part in parts.items()}
    atomic_save(
        {
            **state,
            "recipe": recipe_key(recipe),
            "ema_steps": ema.steps,
            "gen": gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "history": history,
        },
        path,
    )


def load(path: Path, recipe: dict) -> dict | None:
    """The checkpoint at ``path`` if ``recipe`` wrote it, else None (none there, or another recipe's: said). It is
    read onto the CPU (the generators' states must be); ``load_state_dict`` puts tensors where the model is."""
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("recipe") != recipe_key(recipe):
        print(f"{path} was written by another recipe: starting afresh", flush=True)
        return None
    return state


def restore(path: Path, recipe: dict, parts: dict, ema: ExponentialAverage, gen: torch.Generator) -> list[dict]:
    """Load ``recipe``'s checkpoint into ``parts`` (state_dict holders), the EMA step count and the generators;
    return the curves so far (empty when there is none to go on from)."""
    state = load(path, recipe)
    if state is None:
        return []
    for key, part in parts.items():
        part.load_state_dict(state[key])
    ema.steps = state["ema_steps"]
    gen.set_state(state["gen"])
    torch.set_rng_state(state["torch_rng"])
    print(f"{path.name}: resumed after epoch {len(state['history'])}", flush=True)
    return state["history"]


def finished(path: Path, recipe: dict, epochs: int) -> dict | None:
    """``recipe``'s last checkpoint if it says all ``epochs`` are done, else None."""
    state = load(path, recipe)
    if state is None or len(state["history"]) < epochs:
        return None
    return state
