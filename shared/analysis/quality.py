"""Quality gate: refuse photos too blurry, too dark or overexposed to analyse, with advice to retake them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

GATE_SIZE = 256  # every photo is measured on a 256x256 greyscale resize, so scores compare across resolutions


@dataclass(frozen=True)
class Quality:
    blur_score: float
    brightness: float
    width: int
    height: int


def measure(image: Image.Image, size: tuple[int, int] | None = None) -> Quality:
    """Blur and brightness of ``image``; ``size``: the photo's own, when ``image`` is a reduced decode."""
    width, height = size or image.size
    grey = np.asarray(image.convert("L").resize((GATE_SIZE, GATE_SIZE), Image.Resampling.BILINEAR), dtype=np.float32)
    laplacian = grey[:-2, 1:-1] + grey[2:, 1:-1]  # 4-neighbour Laplacian, summed in place (a third of the time)
    laplacian += grey[1:-1, :-2]
    laplacian += grey[1:-1, 2:]
    laplacian -= 4.0 * grey[1:-1, 1:-1]
    return Quality(float(laplacian.var()), float(grey.mean()), width, height)


@dataclass(frozen=True)
class Thresholds:
    blur: float
    dark: float
    bright: float


def rejection(quality: Quality, limits: Thresholds) -> dict | None:
    """The ``rejection`` object of API.md when the photo fails the gate, else None. Light is judged first:
    a dark photo also has little detail, and the advice to fix is the light."""
    if quality.brightness < limits.dark:
        return {"code": "too_dark", "message": "The photo is too dark to analyse. Take it again in good light."}
    if quality.brightness > limits.bright:
        return {
            "code": "overexposed",
            "message": "The photo is overexposed. Take it again without direct flash or strong light on the skin.",
        }
    if quality.blur_score < limits.blur:
        return {
            "code": "too_blurry",
            "message": "The photo is too blurry to analyse. Hold the camera steady, "
            "let it focus on the lesion and take the photo again.",
        }
    return None


def report(quality: Quality, limits: Thresholds) -> dict:
    """The ``result.quality`` object of API.md."""
    return {
        "ok": rejection(quality, limits) is None,
        "blurScore": round(quality.blur_score, 2),
        "blurThreshold": limits.blur,
        "width": quality.width,
        "height": quality.height,
    }
