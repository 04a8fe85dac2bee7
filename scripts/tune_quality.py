"""Tune the quality gate on real dermoscopic images: blur (variance of the Laplacian) and brightness.

    python scripts/tune_quality.py [--data ../shared/data/ham10000] [--sigmas 1.5 2 3] [--threshold 3]

For every image it measures the sharp original and Gaussian-blurred copies (blurred at full size, sent as
JPEG), picks the blur threshold that rejects at most 1 % of the originals, and reports the share of blurred
copies it rejects. Every photo is decoded as the infer function decodes it (reduced JPEG decode). Brightness
percentiles show where the dark/overexposed thresholds sit. Writes build/quality-tuning.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from shared.analysis.classifiers import decode_side, load_manifest
from shared.analysis.imaging import decode, encode_jpeg
from shared.analysis.quality import measure

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/ham10000")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[1.5, 2.0, 3.0])
    parser.add_argument("--threshold", type=float, help="report figures for this threshold")
    args = parser.parse_args()
    paths = sorted((args.data / "images").glob("*.jpg"))
    side = decode_side(load_manifest(REPO / "models").values())
    sharp, brightness, blurred = [], [], {s: [] for s in args.sigmas}
    for path in paths:
        data = path.read_bytes()
        q = measure(decode(data, reduce_to=side).image)
        sharp.append(q.blur_score)
        brightness.append(q.brightness)
        full = decode(data).image
        for sigma in args.sigmas:
            copy = encode_jpeg(full.filter(ImageFilter.GaussianBlur(sigma)))
            blurred[sigma].append(measure(decode(copy, reduce_to=side).image).blur_score)
    sharp = np.array(sharp)
    highest = float(np.floor(np.percentile(sharp, 1) * 10) / 10)  # the strictest 0.1 step refusing <= 1 %
    threshold = args.threshold if args.threshold else highest
    report = {
        "images": len(paths),
        "threshold": threshold,
        "highest_threshold_refusing_1_percent": highest,
        "sharp_rejected": float(np.mean(sharp < threshold)),
        "blurred_rejected": {str(s): float(np.mean(np.array(v) < threshold)) for s, v in blurred.items()},
        "blurred_rejected_at_highest": {str(s): float(np.mean(np.array(v) < highest)) for s, v in blurred.items()},
        "sharp_blur_percentiles": {p: float(np.percentile(sharp, p)) for p in (0.5, 1, 5, 50)},
        "brightness_percentiles": {p: float(np.percentile(brightness, p)) for p in (0, 0.1, 1, 50, 99, 99.9, 100)},
    }
    out = REPO / "build/quality-tuning.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
