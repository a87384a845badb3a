"""Pictures of a latent space, drawn with plain torch into image tensors (C, H, W) in [0, 1]: scatter plots of a
2-d projection, traversals of continuous dimensions, grids over categorical values, reconstructions.

No plotting library: points are small squares written into a canvas, with axis lines, ticks and a legend drawn
as pixels (3x5 digit glyphs), so any logger (`callbacks.log_images`) and `predict`'s `ImageWriter` take the
result like any sample grid.
"""

from __future__ import annotations

import math
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


#: 3x5 pixel glyphs of the digits, for the legends of scatter plots (no font, no plotting library).
DIGIT_GLYPHS = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
    "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001001001001",
    "8": "111101111101111", "9": "111101111001111",
}
AXIS_COLOR, TEXT_COLOR = 0.6, 0.9
MIN_DECORATED_SIZE = 32  #: smaller scatter plots are points only (no room for axes and a legend)


def draw_text(canvas: Tensor, text: str, row: int, col: int, scale: int = 1, color: float = TEXT_COLOR) -> None:
    """Writes the digits `text` into `canvas` (C, H, W) in place, top left at (`row`, `col`), each a 3x5 glyph
    (`DIGIT_GLYPHS`) of `scale` x `scale` pixel cells with one cell between digits; clipped at the canvas edges."""
    for i, char in enumerate(text):
        glyph = torch.tensor([int(b) for b in DIGIT_GLYPHS[char]], dtype=torch.bool).view(5, 3)
        mask = glyph.repeat_interleave(scale, 0).repeat_interleave(scale, 1).to(canvas.device)
        top, left = row, col + i * 4 * scale
        region = canvas[:, max(top, 0) : top + 5 * scale, max(left, 0) : left + 3 * scale]
        mask = mask[max(-top, 0) : max(-top, 0) + region.shape[1], max(-left, 0) : max(-left, 0) + region.shape[2]]
        region[:, mask] = color


def legend_classes(colors: Tensor) -> list[int]:
    """The classes of a legend: when every color (N, 3) is a `LABEL_COLORS` entry (points colored by
    `label_colors`), the indices of the entries used, ascending; otherwise (colors of their own) none."""
    if len(colors) == 0:
        return []
    matches = (colors.float()[:, None, :].cpu() == LABEL_COLORS[None]).all(-1)  # (N, 10)
    return matches.any(0).nonzero().flatten().tolist() if bool(matches.any(1).all()) else []


def nice_step(span: float, ticks: int = 5) -> float:
    """A tick interval of 1, 2 or 5 x 10^k giving about `ticks` intervals over `span`."""
    raw = max(span, 1e-30) / ticks
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw * 0.999)


def scatter_image(points: Tensor, colors: Tensor, size: int = 256, marker: int = 3,
                  background: float = 0.1) -> Tensor:
    """Scatter plot (3, size, size) of `points` (N, 2) as `marker` x `marker` squares of `colors` (N, 3), with axes
    and, for points colored by `label_colors`, a legend.

    The points are scaled to fill the plot area (equal scale on both axes, so distances are not distorted); the
    background is dark gray so white and yellow points stay visible. Axes: gray lines along the left and bottom
    edges with outward ticks every 1, 2 or 5 x 10^k data units (the same interval on both axes); the tick at 0
    also reaches into the plot. Legend (when every color is a `LABEL_COLORS` entry): one row per class at the
    right edge, a square of its color and its index in 3x5 pixel digits (as many rows as fit). Lines, ticks and
    digits are `max(1, size // 128)` pixels thick. Below `MIN_DECORATED_SIZE` the points fill the whole canvas,
    without axes or legend.
    """
    device = points.device
    canvas = torch.full((3, size, size), background, device=device)
    u = max(1, size // 128)  # line thickness and glyph cell
    tick = 2 * u
    decorated = size >= MIN_DECORATED_SIZE
    classes = legend_classes(colors) if decorated else []
    legend_width = 12 * u if classes else 0
    # plot area: columns x0..x1, rows y0..y1 (inclusive), right of the y axis and above the x axis
    axis_col, axis_row = tick, size - tick - u  # first column / row of the axis lines
    x0, x1 = (axis_col + 2 * u if decorated else 0), size - 1 - legend_width
    y0, y1 = 0, (axis_row - u - 1 if decorated else size - 1)
    if decorated:
        canvas[:, y0 : axis_row + u, axis_col : axis_col + u] = AXIS_COLOR
        canvas[:, axis_row : axis_row + u, axis_col : x1 + 1] = AXIS_COLOR

    if classes:  # legend rows: square of the class color, then its index
        left, pitch = size - 10 * u, 7 * u
        for i, k in enumerate(classes[: max(0, (y1 + u + 1) // pitch)]):
            top = u + i * pitch
            canvas[:, top : top + 5 * u, left : left + 5 * u] = LABEL_COLORS[k].to(canvas)[:, None, None]
            draw_text(canvas, str(k), top, left + 6 * u, u)
    if len(points) == 0:
        return canvas

    points = points.float()
    low, high = points.amin(0), points.amax(0)
    center = (low + high) / 2
    margin = marker
    room = torch.tensor([x1 - x0 - 2 * margin, y1 - y0 - 2 * margin], device=device).clamp_min(0)
    scale = (room / (high - low).clamp_min(1e-8)).min()  # pixels per data unit, both axes
    origin = torch.tensor([(x0 + x1) / 2, (y0 + y1) / 2], device=device)  # pixel of `center`

    def to_pixels(values: Tensor, axis: int) -> Tensor:  # data -> column (axis 0) or row (axis 1)
        offset = (values - center[axis]) * scale
        return (origin[axis] + (offset if axis == 0 else -offset)).round().long()  # rows grow downwards

    spread = decorated and float(scale) > 0 and float((high - low).max()) > 1e-8
    step = nice_step(max(x1 - x0, y1 - y0) / float(scale)) if spread else 1.0  # one tick interval, both axes
    for axis in (0, 1) if spread else ():  # ticks (none without a spread or room)
        lo, hi = (x0, x1) if axis == 0 else (y0, y1)
        half = (hi - lo) / 2 / float(scale)
        first, last = math.ceil((float(center[axis]) - half) / step), math.floor((float(center[axis]) + half) / step)
        values = torch.arange(first, last + 1, device=device, dtype=torch.float64)[:25] * step
        for value, pixel in zip(values.tolist(), to_pixels(values.float(), axis).tolist()):
            if not lo <= pixel <= hi:
                continue
            inward = tick if value == 0 else 0
            if axis == 0:
                canvas[:, axis_row + u : size, pixel : pixel + u] = AXIS_COLOR
                canvas[:, axis_row - inward : axis_row, pixel : pixel + u] = AXIS_COLOR
            else:
                canvas[:, pixel : pixel + u, 0 : axis_col] = AXIS_COLOR
                canvas[:, pixel : pixel + u, axis_col + u : axis_col + u + inward] = AXIS_COLOR

    offsets = torch.arange(marker, device=device) - marker // 2
    xs = (to_pixels(points[:, 0], 0)[:, None, None] + offsets[None, None, :]).expand(-1, marker, marker)
    ys = (to_pixels(points[:, 1], 1)[:, None, None] + offsets[None, :, None]).expand(-1, marker, marker)
    xs, ys = xs.clamp(x0, x1), ys.clamp(y0, y1)
    rgb = colors.to(canvas)[:, :, None, None].expand(-1, -1, marker, marker)  # (N, 3, m, m)
    canvas[:, ys.reshape(-1), xs.reshape(-1)] = rgb.permute(1, 0, 2, 3).reshape(3, -1)
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
