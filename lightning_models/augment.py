"""Batch-level augmentation on the training device: one vectorised op per batch, a different draw per image."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def random_affine(images: Tensor, generator: torch.Generator | None, degrees: float = 15.0, scale: float = 0.15,
                  shift: float = 0.1, background: float = 0.0) -> Tensor:
    """Each image of (B, C, H, W) warped by its own random rotation (uniform in +-`degrees`), zoom (factor
    uniform in 1 +- `scale`) and shift (uniform in +-`shift` of the half-width, each axis), bilinear; pixels
    warped in from outside the image get `background` (-1 for images in [-1, 1] on black).

    torchvision's `RandomAffine` draws one warp per call, i.e. per batch here; this draws one per image, in one
    `grid_sample`, from `generator` (so a step-seeded generator repeats the same warps on resume)."""
    n = len(images)
    u = torch.rand(n, 4, device=images.device, generator=generator) * 2 - 1  # uniform in [-1, 1]
    angle = u[:, 0] * math.radians(degrees)
    zoom = 1 + u[:, 1] * scale
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom  # the grid maps output to input coordinates
    theta = torch.stack([torch.stack([cos, -sin, u[:, 2] * shift], 1),
                         torch.stack([sin, cos, u[:, 3] * shift], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta.float(), list(images.shape), align_corners=False)
    warped = F.grid_sample(images.float() - background, grid, mode="bilinear", padding_mode="zeros",
                           align_corners=False)
    return (warped + background).to(images.dtype)
