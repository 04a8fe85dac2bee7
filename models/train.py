"""Train the three students from scratch, offline and seeded.

    python -m models.train --data ../shared/data/ham10000 [--model diagnosis|binary|check|all]

Writes ``models/weights/{binary,diagnosis}-yolo11n-cls.pt`` (ultralytics checkpoints: ``YOLO(path)`` loads them),
``models/weights/check-resnet50.pth`` (a torchvision state dict), each with a ``.history.json`` of the per-epoch
validation curve, and ``models/split.csv``. The specs are ``models.specs.STUDENTS``. Imbalance is handled by
sampling: class c is drawn with weight ``n_c ** -SAMPLING_POWER``; augmentation is random rotation (full circle),
flips, zoom, shift and colour jitter.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models import checkpoints
from models.data import Sample, half, label_indices, load_pixels, load_samples, write_split
from models.metrics import balanced_accuracy
from models.nets import MODELS_DIR, WEIGHTS_DIR, ExponentialAverage, build_model, logits_of, normalise, weights_path
from models.specs import SAMPLING_POWER, STUDENTS

CHECKPOINT_DIR = MODELS_DIR.parent / "build" / "train"  # per-epoch checkpoints of runs in progress


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Dermoscopy-safe augmentation of a float batch in [0, 1]: any rotation, flip, zoom, shift, colour."""
    batch = x.shape[0]
    uniform = lambda lo, hi: lo + (hi - lo) * torch.rand(batch, generator=gen)
    angle = uniform(0, 2 * math.pi)
    zoom = uniform(0.8, 1.05)
    flip = torch.where(torch.rand(batch, generator=gen) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) * zoom, torch.sin(angle) * zoom
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, uniform(-0.1, 0.1)], 1), torch.stack([sin * flip, cos, uniform(-0.1, 0.1)], 1)],
        1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    shape = (batch, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * uniform(0.8, 1.2).view(shape) + mean
    x = x * uniform(0.8, 1.2).view(shape)
    grey = x.mean(dim=1, keepdim=True)
    x = (x - grey) * uniform(0.7, 1.3).view(shape) + grey
    return x.clamp_(0.0, 1.0)


@torch.no_grad()
def predict(model, pixels: torch.Tensor, mean, std, batch_size: int = 256) -> np.ndarray:
    model.eval()
    probs = []
    for start in range(0, len(pixels), batch_size):
        x = pixels[start : start + batch_size].permute(0, 3, 1, 2).float() / 255.0
        probs.append(torch.softmax(logits_of(model, normalise(x, mean, std)), 1))
    return torch.cat(probs).numpy()


def load_weights(model: torch.nn.Module, source: Path) -> None:
    """Copy the matching tensors of a checkpoint (ultralytics dict or torchvision state dict) into ``model``."""
    donor = torch.load(source, map_location="cpu", weights_only=False)
    if isinstance(donor, dict) and "model" in donor:
        donor = donor["model"].float().state_dict()
    load_matching(model, donor)


def load_matching(model: torch.nn.Module, donor: dict[str, torch.Tensor]) -> None:
    """Copy the tensors of ``donor`` whose names and shapes ``model`` has (a new head keeps its own)."""
    own = model.state_dict()
    model.load_state_dict({k: v for k, v in donor.items() if k in own and v.shape == own[k].shape}, strict=False)


@dataclass(frozen=True)
class TrainConfig:
    """One training run: a student's spec (``models.specs.STUDENTS``) with the command line's overrides."""

    name: str
    data: Path
    arch: str
    epochs: int
    lr: float
    imgsz: int
    batch: int = 64
    seed: int = 0
    resume: bool = False  # continue from the saved weights (and history) for ``epochs`` more
    pretrained: str = "scratch"  # see build_model
    weights_dir: Path = WEIGHTS_DIR

    @classmethod
    def of(
        cls,
        name: str,
        data: Path,
        arch: str | None = None,
        epochs: int | None = None,
        lr: float | None = None,
        imgsz: int | None = None,
        **options,
    ) -> TrainConfig:
        """The spec's own architecture, epochs, learning rate and size unless overridden."""
        spec = STUDENTS[name]
        return cls(
            name,
            Path(data),
            arch or spec["arch"],
            epochs or spec["epochs"],
            lr or spec["lr"],
            imgsz or spec["imgsz"],
            **options,
        )

    @property
    def spec(self) -> dict:
        return STUDENTS[self.name]

    @property
    def labels(self) -> tuple[str, ...]:
        return self.spec["labels"]

    @property
    def out(self) -> Path:
        return weights_path(self.name, self.arch, self.weights_dir)


@dataclass
class Pixels:
    """Training and validation images (uint8 N x S x S x 3) with their label indices."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: np.ndarray


def load_data(config: TrainConfig, samples: list[Sample]) -> Pixels:
    train = [s for s in samples if s.split == "train"]
    # the validation curves read the fit half of the validation lesions; the report half stays unseen until
    # make evaluate
    val = [s for s in samples if s.split == "val" and half(s.lesion_id) == "fit"]
    started = time.time()
    pixels = Pixels(
        x_train=torch.from_numpy(load_pixels(train, config.imgsz)),
        y_train=torch.from_numpy(label_indices(train, config.labels)),
        x_val=torch.from_numpy(load_pixels(val, config.imgsz)),
        y_val=label_indices(val, config.labels),
    )
    print(
        f"[{config.name}] {len(train)} train / {len(val)} val images at {config.imgsz}px loaded in "
        f"{time.time() - started:.0f}s",
        flush=True,
    )
    return pixels


def starting_model(config: TrainConfig) -> tuple[torch.nn.Module, list[dict]]:
    """A fresh model, the saved one and its history (``resume``), or one whose backbone comes from the spec's
    ``init_from`` model."""
    model = build_model(config.arch, config.labels, config.pretrained)
    if config.resume:
        load_weights(model, config.out)
        earlier = json.loads(config.out.with_suffix(".history.json").read_text())["history"]
        print(f"[{config.name}] resuming from {config.out.name} after {len(earlier)} epochs", flush=True)
        return model, earlier
    if config.spec.get("init_from"):
        source = weights_path(config.spec["init_from"], config.arch, config.weights_dir)
        load_weights(model, source)
        print(f"[{config.name}] backbone initialised from {source.name}", flush=True)
    return model, []


def starting_file(config: TrainConfig) -> Path | None:
    """The weights :func:`starting_model` starts from (None: fresh or ImageNet weights, named in the recipe)."""
    if config.resume:
        return config.out
    if config.spec.get("init_from"):
        return weights_path(config.spec["init_from"], config.arch, config.weights_dir)
    return None


class Trainer:
    """AdamW with a one-epoch warm-up and cosine decay, class-balanced sampling, EMA weights validated each epoch."""

    def __init__(self, config: TrainConfig, model: torch.nn.Module, pixels: Pixels, gen: torch.Generator):
        self.config, self.model, self.pixels, self.gen = config, model, pixels, gen
        counts = torch.bincount(pixels.y_train, minlength=len(config.labels)).float()
        self.sample_weights = counts[pixels.y_train].pow(-SAMPLING_POWER)
        self.steps_per_epoch = len(pixels.y_train) // config.batch
        total_steps, warmup = self.steps_per_epoch * config.epochs, self.steps_per_epoch
        self.optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.05)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimiser,
            lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / total_steps)),
        )
        self.ema = ExponentialAverage(model)
        self.epoch = 0  # epochs done

    def batch_loss(self, batch: torch.Tensor) -> torch.Tensor:
        """The loss on the training images ``batch`` (indices): augmented, against their labels."""
        x = augment(self.pixels.x_train[batch].permute(0, 3, 1, 2).float() / 255.0, self.gen)
        logits = logits_of(self.model, normalise(x, self.config.spec["mean"], self.config.spec["std"]))
        return F.cross_entropy(logits, self.pixels.y_train[batch], label_smoothing=0.05)

    def train_epoch(self) -> float:
        """One epoch of class-balanced sampled batches; the mean loss."""
        batch_size = self.config.batch
        self.model.train()
        order = torch.multinomial(
            self.sample_weights, self.steps_per_epoch * batch_size, replacement=True, generator=self.gen
        )
        running = 0.0
        for step in range(self.steps_per_epoch):
            loss = self.batch_loss(order[step * batch_size : (step + 1) * batch_size])
            self.optimiser.zero_grad(set_to_none=True)
            loss.backward()
            self.optimiser.step()
            self.schedule.step()
            self.ema.update(self.model)
            running += loss.item()
        return running / self.steps_per_epoch

    def validate(self) -> dict[str, float]:
        mean, std, y_val = self.config.spec["mean"], self.config.spec["std"], self.pixels.y_val
        pred = predict(self.ema.module, self.pixels.x_val, mean, std).argmax(1)
        raw_pred = predict(self.model, self.pixels.x_val, mean, std).argmax(1)
        return {
            "val_accuracy": float(np.mean(pred == y_val)),
            "val_balanced_accuracy": balanced_accuracy(y_val, pred),
            "raw_val_balanced_accuracy": balanced_accuracy(y_val, raw_pred),
        }

    def fit(self, checkpoint: Path | None = None, recipe: dict | None = None) -> list[dict]:
        """Train for ``config.epochs``; one history row per epoch. With a ``checkpoint``, every epoch is saved
        there, and a run of the same ``recipe`` that was cut off goes on from its last epoch."""
        parts = {"model": self.model, "ema": self.ema.module, "optimiser": self.optimiser, "schedule": self.schedule}
        history = checkpoints.restore(checkpoint, recipe or {}, parts, self.ema, self.gen) if checkpoint else []
        for epoch in range(len(history) + 1, self.config.epochs + 1):
            self.epoch = epoch - 1
            tic = time.time()
            loss = self.train_epoch()
            row = {"epoch": epoch, "loss": loss, **self.validate(), "seconds": round(time.time() - tic, 1)}
            history.append(row)
            print(f"[{self.config.name}] {json.dumps(row)}", flush=True)
            if checkpoint:
                checkpoints.save(checkpoint, recipe or {}, parts, self.ema, self.gen, history)
        return history


def train_args(config: TrainConfig, epochs: int) -> dict:
    """The run's arguments as recorded in the checkpoint and its history (``epochs``: all epochs so far)."""
    return {
        "task": "classify",
        "model": config.arch,
        "data": str(config.data),
        "imgsz": config.imgsz,
        "epochs": epochs,
        "batch": config.batch,
        "seed": config.seed,
        "lr0": config.lr,
        "optimizer": "AdamW",
        "sampling_power": SAMPLING_POWER,
        "mean": config.spec["mean"],
        "std": config.spec["std"],
        "labels": list(config.labels),
    }


def save(
    config: TrainConfig, model: torch.nn.Module, earlier: list[dict], history: list[dict], extra: dict | None = None
) -> Path:
    """Write the weights (ultralytics checkpoint or torchvision state dict) and the whole history so far;
    ``extra`` adds to the recorded training arguments (how a distilled student was trained)."""
    out = config.out
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = earlier + [
        {**row, "epoch": len(earlier) + row["epoch"], "lr0": config.lr, "imgsz": config.imgsz} for row in history
    ]
    args = {**train_args(config, len(rows)), **(extra or {})}
    if config.arch == "resnet50":
        checkpoints.atomic_save(model.state_dict(), out)
    else:
        import ultralytics

        checkpoint = {
            "date": dt.datetime.now(dt.UTC).isoformat(),
            "version": ultralytics.__version__,
            "license": "CC BY-NC-SA 4.0 (trained on HAM10000)",
            "epoch": config.epochs,
            "best_fitness": None,
            "model": model.half(),
            "ema": None,
            "updates": None,
            "optimizer": None,
            "train_args": args,
            "train_metrics": rows[-1],
        }
        checkpoints.atomic_save(checkpoint, out)
    history_text = json.dumps({"train_args": args, "history": rows}, indent=1) + "\n"
    checkpoints.atomic_write_text(out.with_suffix(".history.json"), history_text)
    print(f"[{config.name}] wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)", flush=True)
    return out


def train_one(config: TrainConfig, samples: list[Sample]) -> Path:
    """Train one student on ``samples`` (split by lesion) and save its EMA weights; return their path. A run cut
    off before the end goes on from its checkpoint (``build/train/``) when the same command runs again; a run that
    finished is not repeated."""
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    model, earlier = starting_model(config)
    recipe = {
        **train_args(config, config.epochs),
        "pretrained": config.pretrained,
        "start": checkpoints.digest(starting_file(config)),
        "earlier_epochs": len(earlier),  # --resume: these weights, not the ones the next --resume starts from
    }
    checkpoint = CHECKPOINT_DIR / f"{config.out.stem}.ckpt"
    CHECKPOINT_DIR.mkdir(parents=True, exist_ok=True)
    done = checkpoints.finished(checkpoint, recipe, config.epochs)
    if done is not None:  # its weights are written again from the checkpoint, in case the run stopped before
        model.load_state_dict(done["ema"])
        print(f"[{config.name}] done: {checkpoint}", flush=True)
        return save(config, model.eval(), earlier, done["history"])
    trainer = Trainer(config, model, load_data(config, samples), gen)
    history = trainer.fit(checkpoint, recipe)
    return save(config, copy.deepcopy(trainer.ema.module).eval(), earlier, history)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=MODELS_DIR.parent.parent / "shared/data/ham10000")
    parser.add_argument("--model", choices=[*STUDENTS, "all"], default="all")
    parser.add_argument("--arch", help="override the architecture, e.g. yolo11s-cls.yaml")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split-file", type=Path, default=MODELS_DIR / "split.csv")
    parser.add_argument("--resume", action="store_true", help="continue from the saved weights for --epochs more")
    parser.add_argument("--lr", type=float, help="peak learning rate (default: the model's own)")
    parser.add_argument(
        "--imgsz", type=int, help="input size (default: the model's own); with --resume, fine-tunes at the new size"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("TRAIN_THREADS", os.cpu_count() or 1)))
    samples = load_samples(args.data)
    write_split(samples, args.split_file)
    for name in STUDENTS if args.model == "all" else [args.model]:
        config = TrainConfig.of(
            name,
            args.data,
            arch=args.arch if name != "check" else None,
            epochs=args.epochs,
            lr=args.lr,
            imgsz=args.imgsz,
            batch=args.batch,
            seed=args.seed,
            resume=args.resume,
            pretrained=os.environ.get("PRETRAINED", "scratch"),
            weights_dir=WEIGHTS_DIR,
        )
        train_one(config, samples)


if __name__ == "__main__":
    main()
