"""Measure the diagnosis student's YOLO11 size and input size: train it from scratch with the served recipe
(``models.specs.STUDENTS``) at another architecture or size, and score it against the served model on the fit sets,
as ``models.distil`` scores a distilled student.

    python -m models.size_study --arch yolo11s-cls.yaml --imgsz 128 [--pretrained official|PATH]

Trains into ``build/size-study/<run>/`` (a finished run is scored again, not retrained) and writes its curves and
fit-set figures to ``models/experiments/diagnosis-<run>.history.json``, which the model card lists; ``<run>`` is
``<arch>-<size>px``, with ``-pretrained`` when it starts from ImageNet weights (``official``: ultralytics downloads
``<arch>.pt``; or a local file). Nothing ships from here: a winner is served by changing ``STUDENTS`` and exporting it.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from models.data import SHARED_DATA, load_samples
from models.distil import fit_record
from models.nets import MODELS_DIR
from models.train import TrainConfig, train_one

BUILD_DIR = MODELS_DIR.parent / "build" / "size-study"
ROLE = "diagnosis"


def study(arch: str, imgsz: int, data_root: Path = SHARED_DATA, pretrained: str = "scratch") -> Path:
    """Train (unless done) and score one candidate; return the experiment record's path."""
    run = f"{Path(arch).stem}-{imgsz}px" + ("" if pretrained == "scratch" else "-pretrained")
    config = TrainConfig.of(
        ROLE, data_root / "ham10000", arch=arch, imgsz=imgsz, pretrained=pretrained, weights_dir=BUILD_DIR / run
    )
    if not config.out.exists():
        train_one(config, load_samples(config.data))
    record = fit_record(ROLE, config.out, data_root, side="candidate")
    history = json.loads(config.out.with_suffix(".history.json").read_text())
    target = MODELS_DIR / "experiments" / f"{ROLE}-{run}.history.json"
    target.write_text(json.dumps({**history, "size_study": record}, indent=1) + "\n")
    print(f"[{ROLE}] {Path(arch).stem} at {imgsz} px: {json.dumps(record)} -> {target}", flush=True)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="yolo11n-cls.yaml", help="e.g. yolo11s-cls.yaml")
    parser.add_argument("--imgsz", type=int, required=True)
    parser.add_argument("--pretrained", default="scratch", help="official (downloads <arch>.pt) or a local file")
    parser.add_argument("--data-root", type=Path, default=SHARED_DATA)
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("TRAIN_THREADS", os.cpu_count() or 1)))
    study(args.arch, args.imgsz, args.data_root, args.pretrained)


if __name__ == "__main__":
    main()
