"""Synthetic lesion photos for the demo, the tests and the benchmark (no real data needed).

They are drawings, not photos. The lesion's border fades and its centre is darker, as in a photo: the
not-a-lesion gate, fitted on real photos, keeps the JPEGs of all the seeds 0-23 (gate logit 1.8 to 3.8, median 2.8;
0 is the threshold), where a flat lesion with a hard border was kept by 20 of them, two by less than 0.1. A grey
re-encoding is kept by less (0.4 to 0.9). Judge the models on real photos (``make demo IMAGE=...``)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter


def synthetic_lesion(width: int = 600, height: int = 450, seed: int = 0, blur: float = 0.0) -> Image.Image:
    """A skin-toned field with pores and hair-like texture and an irregular brown lesion, darker at its centre and
    fading at its border; optionally blurred."""
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
    inside = np.clip((radius - distance) / 14.0, 0, 1)[..., None]  # a border that fades over 14 px
    depth = np.clip(1 - distance / radius, 0, 1)[..., None]  # 0 at the border, 1 at the centre
    lesion = np.array([110, 62, 40], np.float32) + rng.normal(0, 22, (height, width, 1)).astype(np.float32)
    lesion += (1 - depth) * np.array([40, 30, 25], np.float32) - depth * np.array([35, 25, 15], np.float32)
    dots = (rng.random((height, width, 1)) < 0.01) * -60.0
    pixels = skin * (1 - inside) + (lesion + dots) * inside
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    image = image.filter(ImageFilter.GaussianBlur(0.6))
    return image.filter(ImageFilter.GaussianBlur(blur)) if blur else image
