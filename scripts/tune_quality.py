"""Tune the quality gate on real dermoscopic images: blur (variance of the Laplacian) and brightness.

    python scripts/tune_quality.py [--data ../shared/data/ham10000] [--sigma 2]

For every image it measures the sharp original and a Gaussian-blurred copy, picks the blur threshold that
rejects at most 1 % of the originals, and reports the share of blurred copies it rejects. Brightness
percentiles show where the dark/overexposed thresholds sit. Writes build/quality-tuning.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from shared.quality import measure  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/ham10000")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[1.5, 2.0, 3.0])
    parser.add_argument("--threshold", type=float, help="report figures for this threshold")
    args = parser.parse_args()
    paths = sorted((args.data / "images").glob("*.jpg"))
    sharp, brightness, blurred = [], [], {s: [] for s in args.sigmas}
    for path in paths:
        with Image.open(path) as image:
            image = image.convert("RGB")
            q = measure(image)
            sharp.append(q.blur_score)
            brightness.append(q.brightness)
            for sigma in args.sigmas:
                blurred[sigma].append(measure(image.filter(ImageFilter.GaussianBlur(sigma))).blur_score)
    sharp = np.array(sharp)
    threshold = args.threshold if args.threshold else float(np.floor(np.percentile(sharp, 1)))
    report = {
        "images": len(paths), "threshold": threshold,
        "sharp_rejected": float(np.mean(sharp < threshold)),
        "blurred_rejected": {str(s): float(np.mean(np.array(v) < threshold)) for s, v in blurred.items()},
        "sharp_blur_percentiles": {p: float(np.percentile(sharp, p)) for p in (0.5, 1, 5, 50)},
        "brightness_percentiles": {p: float(np.percentile(brightness, p)) for p in (0, 0.1, 1, 50, 99, 99.9, 100)},
    }
    out = REPO / "build/quality-tuning.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
