"""Training augmentation on float batches in [0, 1] (N x 3 x H x W): geometry, scale and colour.

Strong colour and scale augmentation is what lets a model trained on dermoscopy read phone photos and other
clinics' cameras: random illuminant (per-channel gains), brightness, contrast, saturation and gamma; any rotation,
flips, zoom from 0.6x to 1.15x and shifts."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _uniform(batch: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(batch, generator=gen)


def geometry(x: torch.Tensor, gen: torch.Generator, zoom: tuple[float, float] = (0.6, 1.15)) -> torch.Tensor:
    """Random rotation (full circle), horizontal flip, zoom and shift, with reflected borders."""
    batch = x.shape[0]
    angle = _uniform(batch, 0, 2 * math.pi, gen)
    scale = _uniform(batch, *zoom, gen)
    flip = torch.where(torch.rand(batch, generator=gen) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    shift_x, shift_y = _uniform(batch, -0.12, 0.12, gen), _uniform(batch, -0.12, 0.12, gen)
    theta = torch.stack([torch.stack([cos * flip, -sin, shift_x], 1), torch.stack([sin * flip, cos, shift_y], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def colour(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random illuminant, brightness, contrast, saturation and gamma."""
    batch = x.shape[0]
    shape = (batch, 1, 1, 1)
    gains = 1.0 + 0.2 * (2 * torch.rand(batch, 3, 1, 1, generator=gen) - 1)
    x = x * gains * _uniform(batch, 0.7, 1.3, gen).view(shape)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * _uniform(batch, 0.7, 1.3, gen).view(shape) + mean
    grey = x.mean(dim=1, keepdim=True)
    x = (x - grey) * _uniform(batch, 0.6, 1.4, gen).view(shape) + grey
    return x.clamp(1e-4, 1.0).pow(_uniform(batch, 0.75, 1.33, gen).view(shape))


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return colour(geometry(x, gen), gen).clamp_(0.0, 1.0)
