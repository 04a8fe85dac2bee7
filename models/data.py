"""Datasets for training and evaluation: a HAM10000-style folder or an ImageFolder tree, and a lesion-level split.

HAM10000 layout: ``<root>/metadata.csv`` (image_id, lesion_id, dx) and ``<root>/images/<image_id>.jpg``.
ImageFolder layout: ``<root>/train/<class>/*.jpg`` and optionally ``<root>/val/<class>/*.jpg``; without ``val/``
every image counts as its own lesion and is split like the rest.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from shared.analysis.preprocess import resize_center_crop
from shared.labels import BINARY_LABELS, DIAGNOSIS_LABELS, MALIGNANT, group_of

binary_label = group_of  # training's name for the grouping

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


@dataclass(frozen=True)
class Sample:
    path: Path
    image_id: str
    lesion_id: str
    dx: str
    split: str  # "train" or "val"


def lesion_split(lesion_id: str, val_percent: int, seed: str) -> str:
    """Deterministic split by lesion: every image of one lesion lands on the same side."""
    bucket = int(hashlib.sha256(f"{seed}:{lesion_id}".encode()).hexdigest()[:8], 16) % 100
    return "val" if bucket < val_percent else "train"


def load_samples(root: Path, val_percent: int = 20, seed: str = "skin-v1") -> list[Sample]:
    root = Path(root)
    metadata = root / "metadata.csv"
    if metadata.exists():
        with metadata.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        return [
            Sample(
                root / "images" / f"{row['image_id']}.jpg",
                row["image_id"],
                row["lesion_id"],
                row["dx"],
                lesion_split(row["lesion_id"], val_percent, seed),
            )
            for row in rows
        ]
    if (root / "train").is_dir():
        samples = []
        has_val = (root / "val").is_dir()
        for part in ("train", "val") if has_val else ("train",):
            for path in sorted((root / part).glob("*/*")):
                if path.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                split = part if has_val else lesion_split(path.stem, val_percent, seed)
                samples.append(Sample(path, path.stem, path.stem, path.parent.name, split))
        return samples
    raise FileNotFoundError(f"{root}: expected metadata.csv + images/ or an ImageFolder train/<class>/ tree")


def write_split(samples: list[Sample], path: Path) -> None:
    with Path(path).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_id", "lesion_id", "dx", "split"])
        for sample in sorted(samples, key=lambda s: s.image_id):
            writer.writerow([sample.image_id, sample.lesion_id, sample.dx, sample.split])


def read_split(path: Path) -> dict[str, str]:
    with Path(path).open(newline="") as handle:
        return {row["image_id"]: row["split"] for row in csv.DictReader(handle)}


def load_pixels(samples: list[Sample], size: int) -> np.ndarray:
    """Decode and prepare every image exactly as inference does; N x size x size x 3 uint8."""
    out = np.empty((len(samples), size, size, 3), dtype=np.uint8)
    for index, sample in enumerate(samples):
        with Image.open(sample.path) as image:
            out[index] = resize_center_crop(image, size)
    return out
