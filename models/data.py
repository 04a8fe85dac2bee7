"""Datasets for training and evaluation: a HAM10000-style folder or an ImageFolder tree, and a lesion-level split.

    python -m models.data [DATA_ROOT]   # is every data set that training, export and evaluation read in place?

HAM10000 layout: ``<root>/metadata.csv`` (image_id, lesion_id, dx) and ``<root>/images/<image_id>.jpg``.
ImageFolder layout: ``<root>/train/<class>/*.jpg`` and optionally ``<root>/val/<class>/*.jpg``; without ``val/``
every image counts as its own lesion and is split like the rest.
"""

from __future__ import annotations

import csv
import hashlib
import sys
from dataclasses import dataclass, replace
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


def label_indices(samples: list[Sample], labels: tuple[str, ...]) -> np.ndarray:
    """Each sample's index in ``labels``: its diagnosis, or its benign/malignant group for the binary labels."""
    to_label = binary_label if labels == BINARY_LABELS else (lambda dx: dx)
    index = {label: i for i, label in enumerate(labels)}
    return np.array([index[to_label(s.dx)] for s in samples], dtype=np.int64)


def load_pixels(samples: list[Sample], size: int) -> np.ndarray:
    """Decode and prepare every image exactly as inference does; N x size x size x 3 uint8."""
    out = np.empty((len(samples), size, size, 3), dtype=np.uint8)
    for index, sample in enumerate(samples):
        with Image.open(sample.path) as image:
            out[index] = resize_center_crop(image, size)
    return out


SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
# What training, export and evaluation read under SHARED_DATA (each folder: metadata.csv and images/), and whence.
DATA_SOURCES = {
    "ham10000": "HAM10000 (Tschandl et al. 2018; ISIC archive or Harvard Dataverse), 200x150 JPEGs; metadata.csv with "
    "image_id, lesion_id, dx",
    "external/pad-ufes-20": "PAD-UFES-20 phone photos (Pacheco et al. 2020; Mendeley Data); metadata.csv with "
    "image_id (PAD_PAT_<patient>_<lesion>_<image>), file, dx in the HAM10000 labels",
    "external/derm7pt": "Derm7pt (Kawahara et al. 2019; derm.cs.sfu.ca), evaluation only; metadata.csv with "
    "image_id, file, dx",
    "external/not-a-lesion": "photos that are not a lesion (objects, scenes, hands); metadata.csv with image_id, "
    "file, dx = none",
}
PAD_SPLIT_PERCENT = {"train": 50, "val": 20}  # the rest (30 %) is the held-out test


def patient_split(patient: str, seed: str = "pad-v1") -> str:
    """PAD-UFES-20 split by patient (file names are PAD_PAT_<patient>_<lesion>_<image>): train / val / test."""
    bucket = int(hashlib.sha256(f"{seed}:{patient}".encode()).hexdigest()[:8], 16) % 100
    if bucket < PAD_SPLIT_PERCENT["train"]:
        return "train"
    return "val" if bucket < PAD_SPLIT_PERCENT["train"] + PAD_SPLIT_PERCENT["val"] else "test"


def load_external(root: Path, split_by_patient: bool = False) -> list[Sample]:
    """An ``external/<source>`` folder (metadata.csv: image_id, file, dx); each image is its own lesion unless
    ``split_by_patient`` (PAD-UFES-20), where the split follows the patient so no patient is on two sides."""
    with (Path(root) / "metadata.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    samples = []
    for row in rows:
        patient = row["image_id"].split("_")[2] if split_by_patient else row["image_id"]
        split = patient_split(patient) if split_by_patient else "test"
        samples.append(Sample(Path(root) / "images" / row["file"], row["image_id"], patient, row["dx"], split))
    return samples


def ham_samples(root: Path, split_file: Path) -> list[Sample]:
    """HAM10000 samples with the recorded lesion-level split (models/split.csv)."""
    split = read_split(split_file)
    return [replace(s, split=split[s.image_id]) for s in load_samples(root) if s.image_id in split]


def load_constant_pixels(samples: list[Sample], size: int) -> np.ndarray:
    """Like :func:`load_pixels`, with shades-of-grey colour constancy applied after the crop, as served."""
    from shared.analysis.preprocess import shades_of_grey

    out = np.empty((len(samples), size, size, 3), dtype=np.uint8)
    for index, sample in enumerate(samples):
        with Image.open(sample.path) as image:
            out[index] = shades_of_grey(resize_center_crop(image, size))
    return out


def load_model_pixels(samples: list[Sample], size: int, shades_of_grey: bool) -> np.ndarray:
    """``samples`` as a model reads them: the crop, with shades of grey if the model was trained on them."""
    return (load_constant_pixels if shades_of_grey else load_pixels)(samples, size)


def half(key: str, seed: str = "fit-v1") -> str:
    """Split a validation set in two by ``key`` (a lesion or image id): ``fit`` (calibration, weights,
    thresholds) and ``report`` (the figures)."""
    return "fit" if int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:8], 16) % 2 == 0 else "report"


def named_sets(data_root: Path = SHARED_DATA, split_file: Path | None = None) -> dict[str, list[Sample]]:
    """Every set training, export and evaluation use, by name, split by lesion (HAM10000), patient
    (PAD-UFES-20) or image (Derm7pt, not-a-lesion). Derm7pt is for evaluation only."""
    split_file = split_file or Path(__file__).resolve().parent / "split.csv"
    ham = ham_samples(data_root / "ham10000", split_file)
    pad = [
        s for s in load_external(data_root / "external/pad-ufes-20", split_by_patient=True) if s.dx in DIAGNOSIS_LABELS
    ]
    derm = [s for s in load_external(data_root / "external/derm7pt") if s.dx in DIAGNOSIS_LABELS]
    other = load_external(data_root / "external/not-a-lesion")
    return {
        "ham_train": [s for s in ham if s.split == "train"],
        "ham_val_fit": [s for s in ham if s.split == "val" and half(s.lesion_id) == "fit"],
        "ham_val_report": [s for s in ham if s.split == "val" and half(s.lesion_id) == "report"],
        "pad_train": [s for s in pad if s.split == "train"],
        "pad_val": [s for s in pad if s.split == "val"],
        "pad_test": [s for s in pad if s.split == "test"],
        "derm7pt": derm,
        "not_a_lesion_fit": [s for s in other if half(s.image_id, "gate-v1") == "fit"],
        "not_a_lesion_test": [s for s in other if half(s.image_id, "gate-v1") == "report"],
    }


def missing_data(data_root: Path = SHARED_DATA) -> list[str]:
    """The data sets of ``DATA_SOURCES`` that are not in ``data_root``, each with where it comes from."""
    return [
        f"{data_root / folder}/: {what}"
        for folder, what in DATA_SOURCES.items()
        if not (data_root / folder / "metadata.csv").is_file()
    ]


if __name__ == "__main__":  # the first step of `make train`, `make export` and `make evaluate`
    if missing := missing_data(Path(sys.argv[1]) if len(sys.argv) > 1 else SHARED_DATA):
        print(
            "The models are trained and measured on data sets that are not here (README: Models, data):",
            file=sys.stderr,
        )
        print("\n".join(f"  - {line}" for line in missing), file=sys.stderr)
        sys.exit(2)
