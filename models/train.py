"""Train the three classifiers from scratch, offline and seeded.

    python -m models.train --data ../shared/data/ham10000 [--model diagnosis|binary|check|all]

Writes ``models/weights/{binary,diagnosis}-yolo11n-cls.pt`` (ultralytics checkpoints: ``YOLO(path)`` loads them),
``models/weights/check-resnet50.pth`` (a torchvision state dict), each with a ``.history.json`` of the per-epoch
validation curve, and ``models/split.csv``. Imbalance is handled by sampling: class c is drawn with weight
``n_c ** -SAMPLING_POWER``; augmentation is random rotation (full circle), flips, zoom, shift and colour jitter.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.data import BINARY_LABELS, DIAGNOSIS_LABELS, binary_label, load_pixels, load_samples, write_split

MODELS_DIR = Path(__file__).resolve().parent
WEIGHTS_DIR = MODELS_DIR / "weights"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SAMPLING_POWER = 0.5

SPECS = {
    "diagnosis": dict(
        arch="yolo11n-cls.yaml",
        labels=DIAGNOSIS_LABELS,
        imgsz=128,
        epochs=24,
        lr=2e-3,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
    ),
    "binary": dict(
        arch="yolo11n-cls.yaml",
        labels=BINARY_LABELS,
        imgsz=128,
        epochs=10,
        lr=1e-3,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        init_from="diagnosis",
    ),
    "check": dict(
        arch="resnet50", labels=DIAGNOSIS_LABELS, imgsz=80, epochs=8, lr=1e-3, mean=IMAGENET_MEAN, std=IMAGENET_STD
    ),
}


def weights_path(name: str, arch: str) -> Path:
    if arch == "resnet50":
        return WEIGHTS_DIR / f"{name}-resnet50.pth"
    return WEIGHTS_DIR / f"{name}-{Path(arch).stem}.pt"


def build_model(arch: str, labels: tuple[str, ...], pretrained: str = "scratch") -> torch.nn.Module:
    """The student architecture; ``pretrained`` is ``official`` (ImageNet weights downloaded the standard way),
    a local file, or ``scratch``/``wheel`` (no ImageNet weights exist in the wheels for these architectures)."""
    from models.pretrained import resnet50, yolo_classifier

    if arch == "resnet50":
        return resnet50(pretrained, len(labels))
    return yolo_classifier(arch, pretrained, labels)


def logits_of(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Logits in train and eval mode alike (ultralytics' head returns (probs, logits) in eval mode)."""
    out = model(x)
    return out[1] if isinstance(out, (tuple, list)) else out


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


class ExponentialAverage:
    """EMA of weights and BN statistics whose decay ramps up (``d * (1 - exp(-step / 2000))``), as in timm."""

    def __init__(self, model: torch.nn.Module, decay: float = 0.999):
        self.module = copy.deepcopy(model).eval()
        self.decay = decay
        self.steps = 0
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.steps += 1
        decay = self.decay * (1 - math.exp(-self.steps / 2000))
        for mine, theirs in zip(self.module.state_dict().values(), model.state_dict().values()):
            if mine.dtype.is_floating_point:
                mine.mul_(decay).add_(theirs.detach(), alpha=1 - decay)
            else:
                mine.copy_(theirs)


def normalise(x: torch.Tensor, mean, std) -> torch.Tensor:
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


@torch.no_grad()
def predict(model, pixels: torch.Tensor, mean, std, batch_size: int = 256) -> np.ndarray:
    model.eval()
    probs = []
    for start in range(0, len(pixels), batch_size):
        x = pixels[start : start + batch_size].permute(0, 3, 1, 2).float() / 255.0
        probs.append(torch.softmax(logits_of(model, normalise(x, mean, std)), 1))
    return torch.cat(probs).numpy()


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    recalls = [np.mean(y_pred[y_true == c] == c) for c in range(n_classes) if np.any(y_true == c)]
    return float(np.mean(recalls))


def load_weights(model: torch.nn.Module, source: Path) -> None:
    """Copy the matching tensors of a checkpoint (ultralytics dict or torchvision state dict) into ``model``."""
    donor = torch.load(source, map_location="cpu", weights_only=False)
    if isinstance(donor, dict) and "model" in donor:
        donor = donor["model"].float().state_dict()
    own = model.state_dict()
    model.load_state_dict({k: v for k, v in donor.items() if k in own and v.shape == own[k].shape}, strict=False)


def train_one(
    name: str,
    data: Path,
    arch: str | None,
    epochs: int | None,
    batch_size: int,
    seed: int,
    split_file: Path,
    resume: bool = False,
    lr: float | None = None,
    imgsz: int | None = None,
) -> Path:
    """Train one model; ``resume`` continues from its saved weights (and history) instead of starting afresh."""
    spec = dict(SPECS[name])
    arch = arch or spec["arch"]
    epochs = epochs or spec["epochs"]
    spec["lr"] = lr or spec["lr"]
    spec["imgsz"] = imgsz or spec["imgsz"]
    labels, size, mean, std = spec["labels"], spec["imgsz"], spec["mean"], spec["std"]
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)

    samples = load_samples(data)
    write_split(samples, split_file)
    to_label = binary_label if labels == BINARY_LABELS else (lambda dx: dx)
    index = {label: i for i, label in enumerate(labels)}
    train = [s for s in samples if s.split == "train"]
    val = [s for s in samples if s.split == "val"]
    y_train = torch.tensor([index[to_label(s.dx)] for s in train])
    y_val = np.array([index[to_label(s.dx)] for s in val])
    started = time.time()
    x_train = torch.from_numpy(load_pixels(train, size))
    x_val = torch.from_numpy(load_pixels(val, size))
    print(
        f"[{name}] {len(train)} train / {len(val)} val images at {size}px loaded in {time.time() - started:.0f}s",
        flush=True,
    )

    model = build_model(arch, labels, os.environ.get("PRETRAINED", "scratch"))
    out = weights_path(name, arch)
    earlier = []
    if resume:
        load_weights(model, out)
        before = json.loads(out.with_suffix(".history.json").read_text())
        earlier = before["history"]
        print(f"[{name}] resuming from {out.name} after {len(earlier)} epochs", flush=True)
    elif spec.get("init_from"):
        source = weights_path(spec["init_from"], arch)
        load_weights(model, source)
        print(f"[{name}] backbone initialised from {source.name}", flush=True)

    counts = torch.bincount(y_train, minlength=len(labels)).float()
    sample_weights = counts[y_train].pow(-SAMPLING_POWER)
    steps_per_epoch = len(train) // batch_size
    total_steps = steps_per_epoch * epochs
    optimiser = torch.optim.AdamW(model.parameters(), lr=spec["lr"], weight_decay=0.05)
    warmup = steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / total_steps))
    )
    ema = ExponentialAverage(model)

    history = []
    for epoch in range(1, epochs + 1):
        model.train()
        tic = time.time()
        order = torch.multinomial(sample_weights, steps_per_epoch * batch_size, replacement=True, generator=gen)
        running = 0.0
        for step in range(steps_per_epoch):
            batch = order[step * batch_size : (step + 1) * batch_size]
            x = augment(x_train[batch].permute(0, 3, 1, 2).float() / 255.0, gen)
            loss = F.cross_entropy(logits_of(model, normalise(x, mean, std)), y_train[batch], label_smoothing=0.05)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            ema.update(model)
            running += loss.item()
        pred = predict(ema.module, x_val, mean, std).argmax(1)
        raw_pred = predict(model, x_val, mean, std).argmax(1)
        row = {
            "epoch": epoch,
            "loss": running / steps_per_epoch,
            "val_accuracy": float(np.mean(pred == y_val)),
            "val_balanced_accuracy": balanced_accuracy(y_val, pred, len(labels)),
            "raw_val_balanced_accuracy": balanced_accuracy(y_val, raw_pred, len(labels)),
            "seconds": round(time.time() - tic, 1),
        }
        history.append(row)
        print(f"[{name}] {json.dumps(row)}", flush=True)

    final = copy.deepcopy(ema.module).eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    history = earlier + [
        {**row, "epoch": len(earlier) + row["epoch"], "lr0": spec["lr"], "imgsz": size} for row in history
    ]
    train_args = {
        "task": "classify",
        "model": arch,
        "data": str(data),
        "imgsz": size,
        "epochs": len(history),
        "batch": batch_size,
        "seed": seed,
        "lr0": spec["lr"],
        "optimizer": "AdamW",
        "sampling_power": SAMPLING_POWER,
        "mean": mean,
        "std": std,
        "labels": list(labels),
    }
    if arch == "resnet50":
        torch.save(final.state_dict(), out)
    else:
        import ultralytics

        torch.save(
            {
                "date": dt.datetime.now(dt.UTC).isoformat(),
                "version": ultralytics.__version__,
                "license": "CC BY-NC-SA 4.0 (trained on HAM10000)",
                "epoch": epochs,
                "best_fitness": None,
                "model": final.half(),
                "ema": None,
                "updates": None,
                "optimizer": None,
                "train_args": train_args,
                "train_metrics": history[-1],
            },
            out,
        )
    history_text = json.dumps({"train_args": train_args, "history": history}, indent=1) + "\n"
    out.with_suffix(".history.json").write_text(history_text)
    print(f"[{name}] wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=MODELS_DIR.parent.parent / "shared/data/ham10000")
    parser.add_argument("--model", choices=[*SPECS, "all"], default="all")
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
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("TRAIN_THREADS", os.cpu_count() or 1)))
    for name in SPECS if args.model == "all" else [args.model]:
        train_one(
            name,
            args.data,
            args.arch if name != "check" else None,
            args.epochs,
            args.batch,
            args.seed,
            args.split_file,
            args.resume,
            args.lr,
            args.imgsz,
        )


if __name__ == "__main__":
    main()
