"""Pictures of a latent space, drawn with plain torch into image tensors (C, H, W) in [0, 1]: scatter plots of a
2-d projection, traversals of continuous dimensions, grids over categorical values, reconstructions.

No plotting library: points are small squares written into a canvas, so any logger (`callbacks.log_images`)
and `predict`'s `ImageWriter` take the result like any sample grid.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from torchvision.utils import make_grid

from datamodules.colored_mnist import stroke_color

#: Colors of digit labels 0-9 in scatter plots (matplotlib's "tab10"); more labels cycle through them.
LABEL_COLORS = torch.tensor([
    [0.12, 0.47, 0.71], [1.00, 0.50, 0.05], [0.17, 0.63, 0.17], [0.84, 0.15, 0.16], [0.58, 0.40, 0.74],
    [0.55, 0.34, 0.29], [0.89, 0.47, 0.76], [0.50, 0.50, 0.50], [0.74, 0.74, 0.13], [0.09, 0.75, 0.81],
])
Decode = Callable[[Tensor], Tensor]  # latent codes (N, L) -> images (N, C, H, W) in [0, 1]


def label_colors(labels: Tensor) -> Tensor:
    """RGB (N, 3) of integer labels (N,) from `LABEL_COLORS`."""
    return LABEL_COLORS.to(labels.device)[labels.long() % len(LABEL_COLORS)]


def foreground_color(images: Tensor) -> Tensor:
    """RGB (N, 3) of each image's strokes: the brightness-weighted mean color, scaled so its largest channel is 1
    (a painted digit's palette color, whatever its stroke intensity). Gray images give gray."""
    return stroke_color(images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images[:, :3])


def project_2d(features: Tensor) -> Tensor:
    """(N, F) -> (N, 2): the features themselves when F <= 2 (padded with zeros), else their projection on the
    two principal axes. Axis signs are fixed (largest loading positive) so repeated plots do not flip."""
    features = features.float()
    if features.shape[1] <= 2:
        return torch.cat([features, features.new_zeros(len(features), 2 - features.shape[1])], 1)
    centered = features - features.mean(0)
    _, _, v = torch.linalg.svd(centered, full_matrices=False)  # rows of v: principal axes
    axes = v[:2]
    signs = torch.sign(axes.gather(1, axes.abs().argmax(1, keepdim=True)))
    return centered @ (axes * signs).T


def scatter_image(points: Tensor, colors: Tensor, size: int = 256, marker: int = 3,
                  background: float = 0.1) -> Tensor:
    """Scatter plot (3, size, size) of `points` (N, 2) as `marker` x `marker` squares of `colors` (N, 3).

    The points are scaled to fill the canvas (equal scale on both axes, so distances are not distorted); the
    background is dark gray so white and yellow points stay visible.
    """
    canvas = torch.full((3, size, size), background, device=points.device)
    if len(points) == 0:
        return canvas
    low, high = points.amin(0), points.amax(0)
    scale = (high - low).max().clamp_min(1e-8)
    margin = marker
    pixels = ((points - (low + high) / 2) / scale * (size - 2 * margin - 1) + (size - 1) / 2).round().long()
    offsets = torch.arange(marker, device=points.device) - marker // 2
    xs = (pixels[:, 0, None, None] + offsets[None, None, :]).expand(-1, marker, marker).clamp(0, size - 1)
    ys = (pixels[:, 1, None, None] + offsets[None, :, None]).expand(-1, marker, marker).clamp(0, size - 1)
    rgb = colors.to(canvas)[:, :, None, None].expand(-1, -1, marker, marker)  # (N, 3, m, m)
    flip = size - 1 - ys  # image rows grow downwards; y grows upwards
    canvas[:, flip.reshape(-1), xs.reshape(-1)] = rgb.permute(1, 0, 2, 3).reshape(3, -1)
    return canvas


def traversal_grid(decode: Decode, code: Tensor, continuous_dim: int, values: Tensor) -> Tensor:
    """One row per continuous dimension d < `continuous_dim`: `code` (L,) with dimension d set to each of
    `values` (S,) in turn, decoded; a grid (3, H', W') with S images per row."""
    steps = len(values)
    codes = code.repeat(continuous_dim * steps, 1)
    rows = torch.arange(continuous_dim, device=code.device).repeat_interleave(steps)
    codes[torch.arange(len(codes), device=code.device), rows] = values.to(code).repeat(continuous_dim)
    return make_grid(decode(codes), nrow=steps, padding=2, pad_value=1.0)


def category_grid(decode: Decode, codes: Tensor, offset: int, categories: int) -> Tensor:
    """One row per category k of the categorical variable stored at `codes[:, offset:offset + categories]`:
    every code of `codes` (M, L) with that variable set to one-hot k, decoded; a grid with M images per row."""
    m = len(codes)
    grid_codes = codes.repeat(categories, 1)
    one_hot = torch.eye(categories, device=codes.device, dtype=codes.dtype).repeat_interleave(m, 0)
    grid_codes[:, offset : offset + categories] = one_hot
    return make_grid(decode(grid_codes), nrow=m, padding=2, pad_value=1.0)


def reconstruction_grid(images: Tensor, reconstructions: Tensor, per_row: int = 8) -> Tensor:
    """Rows of `per_row` originals, each followed by the row of their reconstructions."""
    n = len(images) - len(images) % per_row or len(images)
    per_row = min(per_row, n)
    pairs = torch.stack([images[:n].view(-1, per_row, *images.shape[1:]),
                         reconstructions[:n].view(-1, per_row, *images.shape[1:])], 1)  # (rows, 2, per_row, ...)
    return make_grid(pairs.flatten(0, 2), nrow=per_row, padding=2, pad_value=1.0)
