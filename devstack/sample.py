"""Synthetic lesion photos for the demo, the tests and the benchmark (no real data needed).

They are drawings, not photos: the not-a-lesion gate, fitted on real photos, keeps the JPEGs of 20 of the seeds
0-23 and rejects the others (3, 6, 11, 23) and some re-encodings (seed 1 as PNG or grey). Judge the models on
real photos (``make demo IMAGE=...``)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter


def synthetic_lesion(width: int = 600, height: int = 450, seed: int = 0, blur: float = 0.0) -> Image.Image:
    """A skin-toned field with pores and hair-like texture and an irregular brown lesion; optionally blurred."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    skin = np.array([224, 172, 150], np.float32) + rng.normal(0, 9, (height, width, 1)).astype(np.float32)
    cx, cy = width * (0.45 + 0.1 * rng.random()), height * (0.45 + 0.1 * rng.random())
    angle = np.arctan2(y - cy, x - cx)
    radius = (
        min(width, height)
        * 0.28
        * (1 + 0.12 * np.sin(3 * angle + rng.random() * 6) + 0.06 * np.sin(7 * angle + rng.random() * 6))
    )
    distance = np.hypot(x - cx, y - cy)
    inside = np.clip((radius - distance) / 6.0, 0, 1)[..., None]
    lesion = np.array([110, 62, 40], np.float32) + rng.normal(0, 22, (height, width, 1)).astype(np.float32)
    dots = (rng.random((height, width, 1)) < 0.01) * -60.0
    pixels = skin * (1 - inside) + (lesion + dots) * inside
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    image = image.filter(ImageFilter.GaussianBlur(0.6))
    return image.filter(ImageFilter.GaussianBlur(blur)) if blur else image
