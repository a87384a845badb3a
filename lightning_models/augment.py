"""Batch-level augmentation on the training device: one vectorised op per batch, a different draw per image."""

from __future__ import annotations

import math
from typing import Sequence

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


def check_consistency(weight: float, warp: Sequence[float], categories: Sequence[int], categories_option: str) -> None:
    """The options of an IIC consistency term (`--model.consistency_weight`, `--model.consistency_warp`): a weight
    >= 0, a warp of three numbers >= 0 (degrees, zoom < 1, shift), and a categorical variable to apply it to."""
    if weight < 0 or len(warp) != 3 or min(warp) < 0 or warp[1] >= 1:
        raise ValueError(f"--model.consistency_weight must be >= 0 and --model.consistency_warp three numbers >= 0 "
                         f"(degrees, zoom < 1, shift), got {weight} and {list(warp)}")
    if weight and not categories:
        raise ValueError(f"--model.consistency_weight needs a categorical variable ({categories_option})")


def random_recolor(images: Tensor, generator: torch.Generator | None) -> Tensor:
    """Each RGB image of (B, 3, H, W) in [0, 1] on black redrawn in its own random color: the stroke (the
    brightest channel of each pixel) times a color drawn uniformly in the RGB cube and scaled so that its largest
    channel is 1. The shape stays and the color is new, for terms that must ignore color (the color distortion of
    contrastive learning, made for strokes on a black background)."""
    if images.shape[1] != 3:
        raise ValueError(f"random_recolor takes RGB images (B, 3, H, W), got {tuple(images.shape)}")
    color = torch.rand(len(images), 3, 1, 1, device=images.device, generator=generator).clamp_min(1e-3)
    color = color / color.amax(1, keepdim=True)
    return images.amax(1, keepdim=True) * color.to(images.dtype)


DIFF_AUGMENT = ("translation", "cutout")


def diff_augment(images: Tensor, policy: list[str] | tuple[str, ...], generator: torch.Generator | None,
                 background: float = -1.0) -> Tensor:
    """DiffAugment (Zhao et al. 2020): differentiable augmentations applied to every image a GAN discriminator
    sees, real and fake, in both steps, so that D cannot memorise a small training set while G still gets
    gradients through the augmentation. One draw per image, vectorised:

    - "translation": shift by a random whole number of pixels, up to 1/8 of the image size per axis, the image's
      `background` filling in (the paper's policy, zero padding of images on black);
    - "cutout": a square of half the image size at a random place set to 0 (the paper's cutout, a mid-grey
      square for images in [-1, 1])."""
    unknown = [p for p in policy if p not in DIFF_AUGMENT]
    if unknown:
        raise ValueError(f"--model.diff_augment: unknown augmentation(s) {unknown}; choose from {list(DIFF_AUGMENT)}")
    n, _, height, width = images.shape
    device = images.device
    if "translation" in policy:
        max_dy, max_dx = max(1, height // 8), max(1, width // 8)
        dy = torch.randint(-max_dy, max_dy + 1, (n, 1, 1), device=device, generator=generator)
        dx = torch.randint(-max_dx, max_dx + 1, (n, 1, 1), device=device, generator=generator)
        rows = torch.arange(height, device=device).view(1, height, 1) - dy  # source row of each output row
        cols = torch.arange(width, device=device).view(1, 1, width) - dx
        inside = ((rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)).unsqueeze(1)
        index = (rows.clamp(0, height - 1) * width + cols.clamp(0, width - 1)).view(n, 1, -1)
        shifted = images.flatten(2).gather(2, index.expand(-1, images.shape[1], -1)).view_as(images)
        images = torch.where(inside, shifted, torch.full_like(shifted, background))
    if "cutout" in policy:
        size_y, size_x = height // 2, width // 2
        y0 = torch.randint(0, height - size_y + 1, (n, 1, 1), device=device, generator=generator)
        x0 = torch.randint(0, width - size_x + 1, (n, 1, 1), device=device, generator=generator)
        rows = torch.arange(height, device=device).view(1, height, 1)
        cols = torch.arange(width, device=device).view(1, 1, width)
        hole = ((rows >= y0) & (rows < y0 + size_y) & (cols >= x0) & (cols < x0 + size_x)).unsqueeze(1)
        images = images.masked_fill(hole, 0.0)
    return images
