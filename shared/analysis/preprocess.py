"""Model input preparation, shared by training, export, evaluation and inference.

It reproduces ultralytics' classification transform (torchvision ``Resize(size)`` on a PIL image, then
``CenterCrop(size)``) without importing torch, so the ONNX runtime and the training code see the same pixels.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def resize_center_crop(image: Image.Image, size: int) -> np.ndarray:
    """Resize the shorter side to ``size`` (bilinear), crop the centre square; return HxWx3 uint8 RGB."""
    width, height = image.size
    if width <= height:
        new_width, new_height = size, int(size * height / width)
    else:
        new_width, new_height = int(size * width / height), size
    resized = image.convert("RGB").resize((new_width, new_height), Image.Resampling.BILINEAR)
    top = int(round((new_height - size) / 2.0))
    left = int(round((new_width - size) / 2.0))
    return np.asarray(resized.crop((left, top, left + size, top + size)), dtype=np.uint8)


def to_tensor(pixels: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """uint8 HxWx3 (or NxHxWx3) RGB to float32 NCHW scaled to [0, 1] and normalised: (x / 255 - mean) / std,
    computed as one multiply and one subtraction into a contiguous array."""
    batch = pixels[None] if pixels.ndim == 3 else pixels
    std32 = np.asarray(std, np.float32).reshape(1, 3, 1, 1)
    out = np.empty((batch.shape[0], 3, batch.shape[1], batch.shape[2]), np.float32)
    np.multiply(batch.transpose(0, 3, 1, 2), 1.0 / (255.0 * std32), out=out)
    out -= np.asarray(mean, np.float32).reshape(1, 3, 1, 1) / std32
    return out


def shades_of_grey(pixels: np.ndarray, power: float = 6.0) -> np.ndarray:
    """Shades-of-grey colour constancy (Finlayson & Trezzi 2004): estimate the illuminant as the Minkowski
    ``power``-mean of each channel and rescale the channels so that it becomes neutral grey.

    Takes and returns HxWx3 uint8 RGB; the same step runs in training, export, evaluation and serving."""
    rgb = pixels.astype(np.float32)
    illuminant = np.power(np.mean(np.power(rgb, power), axis=(0, 1)), 1.0 / power)
    gains = illuminant.mean() / np.maximum(illuminant, 1e-6)
    return np.clip(rgb * gains, 0, 255).astype(np.uint8)


def model_input(image: Image.Image, size: int, colour_constancy: bool) -> np.ndarray:
    """The crop a model reads (HxWx3 uint8): shorter side to ``size``, centre square, shades of grey if asked."""
    crop = resize_center_crop(image, size)
    return shades_of_grey(crop) if colour_constancy else crop


# Test-time views of a batch of crops (N x S x S x 3): each a symmetry of the square that a lesion photo has no
# preferred orientation against. A model's manifest entry lists the views it is run on (``input.views``, the
# identity first); its log-scores are the mean over them.
VIEWS = {
    "identity": lambda batch: batch,
    "hflip": lambda batch: batch[:, :, ::-1],
    "vflip": lambda batch: batch[:, ::-1],
    "rot180": lambda batch: batch[:, ::-1, ::-1],
    "transpose": lambda batch: batch.transpose(0, 2, 1, 3),
}


def with_views(batch: np.ndarray, views: tuple[str, ...]) -> np.ndarray:
    """The N crops under each view in turn: (len(views) * N) x S x S x 3, view-major."""
    if views == ("identity",):
        return batch
    return np.ascontiguousarray(np.concatenate([VIEWS[view](batch) for view in views]))


def mean_over_views(scores: np.ndarray, views: int) -> np.ndarray:
    """Per-image mean of view-major scores ((views * N) x K to N x K)."""
    return scores if views == 1 else scores.reshape(views, -1, scores.shape[-1]).mean(axis=0)
