"""Colored MNIST / Fashion-MNIST: one digit image, painted on the training device in a palette color.

The gray digits are decoded once (the MNIST module's own split code); a split only adds int64 color ids, drawn
once at setup from `seed` and the split. `paint` turns gray (B, 1, H, W) into RGB (B, 3, H, W) per batch on the
device, so three datamodules (single domain, aligned pairs, unpaired domains) share one painting helper.
"""

from __future__ import annotations

import zlib
from typing import Any, Literal, Sequence

import torch
from torch import Tensor

from datamodules.mnist import MNISTDataModule

#: Named colors whose hues are at least 30 degrees apart (or, for white, without hue), so the dominant color of a
#: painted image (`dominant_color`) is unambiguous even though painting scales a color by the gray intensity.
NAMED_COLORS: dict[str, tuple[float, float, float]] = {
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "yellow": (1.0, 1.0, 0.0),
    "magenta": (1.0, 0.0, 1.0),
    "cyan": (0.0, 1.0, 1.0),
    "orange": (1.0, 0.5, 0.0),
    "violet": (0.5, 0.0, 1.0),
    "white": (1.0, 1.0, 1.0),
    "chartreuse": (0.5, 1.0, 0.0),
}
#: The default palette, in this order: color id i is the i-th named color (digit i's color in `palette` mode).
DEFAULT_PALETTE = list(NAMED_COLORS.values())
SPLITS = ("train", "val", "test")
Coloring = Literal["random", "palette"]


def paint(gray: Tensor, palette: Tensor, color: Tensor) -> Tensor:
    """Paints gray images (B, 1, H, W) in [0, 1] with `palette[color]`: returns (B, 3, H, W) on `gray`'s device."""
    rgb = palette.to(device=gray.device, dtype=gray.dtype)[color.to(gray.device)]  # (B, 3)
    return gray * rgb[:, :, None, None]


def stroke_color(images: Tensor) -> Tensor:
    """Color (B, C) of each image's strokes (B, C, H, W) in [0, 1]: the brightness-weighted mean color, scaled so
    its largest channel is 1 (a painted digit's palette color, whatever its stroke's gray level)."""
    weight = images.amax(1, keepdim=True)  # (B, 1, H, W)
    mean = (images * weight).sum((2, 3)) / weight.sum((2, 3)).clamp_min(1e-8)  # (B, C)
    return unit_max(mean)


def dominant_color(images: Tensor, palette: Tensor) -> Tensor:
    """Color id (B,) of the palette entry closest to the hue of each image's foreground (B, 3, H, W) in [0, 1].

    Pixels are weighted by their brightness, and colors compared after scaling their largest channel to 1,
    because painting multiplies a color by the stroke's gray level (`stroke_color`). Used by tests and
    color-accuracy metrics.
    """
    chroma = stroke_color(images)
    ref = unit_max(palette.to(images.device, images.dtype))
    return torch.cdist(chroma, ref).argmin(1)


def unit_max(colors: Tensor) -> Tensor:
    """Colors (..., C) scaled so that each one's largest channel is 1 (black stays black)."""
    return colors / colors.amax(-1, keepdim=True).clamp_min(1e-8)


#: `single_color`'s default: the called color must hold more than this share of the stroke's brightness
MIN_COLOR_SHARE = 0.5
#: A pixel is foreground (stroke) when its brightest channel exceeds this (painting scales a color by the stroke's
#: gray level, and the named colors have a channel at 1, so this is the gray level; it skips faint generator haze,
#: whose hue is noise). The translation metrics' foreground masks use it too.
FOREGROUND_THRESHOLD = 0.3


def foreground(images: Tensor) -> Tensor:
    """Foreground (stroke) mask (B, H, W) of images (B, C, H, W) in [0, 1]."""
    return images.amax(1) > FOREGROUND_THRESHOLD


def color_shares(images: Tensor, palette: Tensor) -> Tensor:
    """(B, K): for each image (B, 3, H, W) in [0, 1], the brightness-weighted share of its stroke pixels whose own
    color is nearest to each palette entry (K, 3). Rows sum to 1 (0 for an image without a stroke)."""
    ref = unit_max(palette.to(images.device, images.dtype))
    brightness = images.amax(1)  # (B, H, W)
    weight = torch.where(foreground(images), brightness, torch.zeros_like(brightness)).flatten(1)
    pixels = unit_max(images.movedim(1, -1).flatten(1, 2))  # (B, H*W, 3)
    nearest = torch.cdist(pixels, ref.expand(len(images), -1, -1)).argmin(-1)  # (B, H*W)
    shares = torch.zeros(len(images), len(ref), device=images.device, dtype=weight.dtype)
    shares.scatter_add_(1, nearest, weight)
    return shares / shares.sum(1, keepdim=True).clamp_min(1e-8)


def single_color(images: Tensor, palette: Tensor, min_share: float = MIN_COLOR_SHARE) -> Tensor:
    """Color id (B,) of the palette entry that holds the largest share of each image's stroke (`color_shares`), or
    -1 (abstains) where that share is not above `min_share`: a stroke half in one color and half in another has no
    color (where `dominant_color`, from the mean hue, calls half red, half green yellow, a color no pixel has),
    and neither has a blank image."""
    share, color = color_shares(images, palette).max(1)
    return torch.where(share > min_share, color, torch.full_like(color, -1))


def make_palette(colors: Sequence[Sequence[float]] | None, option: str) -> tuple[Tensor, list[str]]:
    """(K, 3) float palette in [0, 1] and its color names (a named color's name, else `#rrggbb`)."""
    table = torch.tensor(DEFAULT_PALETTE if colors is None else [list(c) for c in colors], dtype=torch.float32)
    if table.dim() != 2 or table.shape[1] != 3 or len(table) == 0:
        raise ValueError(f"{option} must be a non-empty list of RGB triples, got {colors!r}")
    if (table < 0).any() or (table > 1).any():
        raise ValueError(f"{option}: RGB values must be in [0, 1] (divide 0-255 values by 255), got {colors!r}")
    by_value = {rgb: name for name, rgb in NAMED_COLORS.items()}
    names = []
    for rgb in table.tolist():
        hex_name = "#" + "".join(f"{round(v * 255):02x}" for v in rgb)
        names.append(by_value.get(tuple(rgb), hex_name))
    return table, names


def draw_colors(labels: Tensor, coloring: str, num_colors: int, seed: int, stream: str) -> Tensor:
    """int64 color ids (N,): the label (`palette`), or uniform draws reproducible from `(seed, stream)`."""
    if coloring == "palette":
        return labels.clone()
    # crc32, not hash(): Python salts str hashes per process, and every DDP rank must draw the same colors.
    gen = torch.Generator().manual_seed(zlib.crc32(f"{seed}/{stream}".encode()))
    return torch.randint(num_colors, labels.shape, generator=gen)


def _check_coloring(coloring: str, palette: Tensor, option: str, num_classes: int) -> None:
    if coloring not in ("random", "palette"):
        raise ValueError(f"{option} must be 'random' or 'palette', got {coloring!r}")
    if coloring == "palette" and len(palette) < num_classes:
        raise ValueError(f"{option}=palette colors digit d with palette[d], so the palette needs at least "
                         f"{num_classes} colors; got {len(palette)}")


class ColoredMNISTDataModule(MNISTDataModule):
    """MNIST or Fashion-MNIST painted in color: `{"image": (B, 3, H, W), "label": digit, "color": color id}`.

    Color ids index `palette` (float (K, 3) in [0, 1]), named in `color_names`. The default palette is, by id:
    0 red, 1 green, 2 blue, 3 yellow, 4 magenta, 5 cyan, 6 orange, 7 violet, 8 white, 9 chartreuse.
    Splits, sizes and `seed` are those of `MNISTDataModule`; the gray digit is kept as uint8 and painted per batch
    on the training device.

    The other arguments are `MNISTDataModule`'s.

    Args:
        seed: seed of the train/val split, the training order and the random colors.
        coloring: `random`: each image gets a color id drawn uniformly once at setup (reproducible from `seed`
            and the split); `palette`: the color id is the digit label (digit d is painted `palette[d]`).
        palette: RGB triples in [0, 1], one per color id (default: the 10 named colors above).
    """

    def __init__(
        self,
        coloring: Coloring = "random",
        palette: list[tuple[float, float, float]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)  # MNISTDataModule's options (LightningCLI reads them through **kwargs)
        self.palette, self.color_names = make_palette(palette, "--data.palette")
        _check_coloring(coloring, self.palette, "--data.coloring", self.num_classes)
        self.coloring = coloring
        self.num_colors = len(self.palette)
        self.image_shape = (3, self.image_size, self.image_size)

    def load_split(self, split: str) -> dict[str, Tensor]:
        data = super().load_split(split)
        if split in SPLITS:  # not the full training file the parent splits train/val from
            data["color"] = draw_colors(data["label"], self.coloring, self.num_colors, self.seed, split)
        return data

    def transform_batch(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        batch["image"] = paint(batch["image"], self.palette, batch["color"])
        return batch


class PairedColoredMNISTDataModule(MNISTDataModule):
    """Aligned pairs: the same digit image painted in a domain-A and a domain-B color (for pix2pix-style models).

    Batches: `{"image_a": (B, 3, H, W), "image_b": (B, 3, H, W), "label": digit, "color_a", "color_b"}`, where
    `color_a` indexes `palette_a` and `color_b` indexes `palette_b`. By default both domains use `palette`
    coloring: in A digit d is `palette_a[d]` (the default palette: 0 red, 1 green, ... as in
    `ColoredMNISTDataModule`), in B it is `palette_b[d]` with `palette_b` = `palette_a` shifted by half its length
    (digit d gets A's color of digit d+5), so every class has its own fixed color in each domain and a different
    one in B than in A.

    The other arguments are `MNISTDataModule`'s.

    Args:
        batch_size: pairs per batch on each device.
        seed: seed of the train/val split, the training order and the random colors.
        coloring_a: `palette` (digit d gets `palette_a[d]`) or `random` (a uniform color id per image).
        coloring_b: the same for domain B; random draws are independent of domain A's.
        palette_a: RGB triples in [0, 1] of domain A (default: the 10 named colors of `ColoredMNISTDataModule`).
        palette_b: RGB triples in [0, 1] of domain B (default: `palette_a` shifted by half its length; with
            `random` coloring on both sides give a different palette, or the two domains look alike).
    """

    def __init__(
        self,
        coloring_a: Coloring = "palette",
        coloring_b: Coloring = "palette",
        palette_a: list[tuple[float, float, float]] | None = None,
        palette_b: list[tuple[float, float, float]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)  # MNISTDataModule's options (LightningCLI reads them through **kwargs)
        self.palette_a, self.color_names_a = make_palette(palette_a, "--data.palette_a")
        if palette_b is None:
            shift = len(self.palette_a) // 2
            self.palette_b = self.palette_a.roll(-shift, 0)
            self.color_names_b = self.color_names_a[shift:] + self.color_names_a[:shift]
        else:
            self.palette_b, self.color_names_b = make_palette(palette_b, "--data.palette_b")
        _check_coloring(coloring_a, self.palette_a, "--data.coloring_a", self.num_classes)
        _check_coloring(coloring_b, self.palette_b, "--data.coloring_b", self.num_classes)
        self.coloring_a, self.coloring_b = coloring_a, coloring_b
        self.num_colors_a, self.num_colors_b = len(self.palette_a), len(self.palette_b)
        self.image_shape = (3, self.image_size, self.image_size)

    def load_split(self, split: str) -> dict[str, Tensor]:
        data = super().load_split(split)
        if split in SPLITS:
            labels = data["label"]
            data["color_a"] = draw_colors(labels, self.coloring_a, self.num_colors_a, self.seed, split + "/a")
            data["color_b"] = draw_colors(labels, self.coloring_b, self.num_colors_b, self.seed, split + "/b")
        return data

    def transform_batch(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        gray = batch.pop("image")
        batch["image_a"] = paint(gray, self.palette_a, batch["color_a"])
        batch["image_b"] = paint(gray, self.palette_b, batch["color_b"])
        return batch


class UnpairedColoredMNISTDataModule(PairedColoredMNISTDataModule):
    """Two unaligned domains (for CycleGAN-style models): a row's A and B images are different digit images.

    Batches: `{"image_a", "image_b": (B, 3, H, W), "label_a", "label_b": digits, "color_a", "color_b"}`;
    colors and palettes as in `PairedColoredMNISTDataModule` (same arguments). The rows are fixed at setup from
    `seed`, so runs are reproducible and resume exactly:
    - train: the split is cut into two disjoint random halves, A and B, so no digit image is seen in both
      domains (each domain gets half the training images);
    - val/test: every image of the split is on the A side in file order, and on the B side in a seeded order
      that moves every image (a derangement), so metrics see the whole split in both domains with each image's
      own label and color.
    """

    def load_split(self, split: str) -> dict[str, Tensor]:
        data = super().load_split(split)
        if split not in SPLITS:
            return data
        n = len(data["label"])
        gen = torch.Generator().manual_seed(zlib.crc32(f"{self.seed}/{split}/unpair".encode()))
        order = torch.randperm(n, generator=gen)
        if split == "train":
            a, b = order[: n // 2], order[n // 2 : 2 * (n // 2)]
        else:
            a, b = torch.arange(n), torch.empty_like(order)
            b[order] = order.roll(-1)  # row order[i] gets image order[i + 1]: no image meets itself
        return {
            "image_a": data["image"][a], "label_a": data["label"][a], "color_a": data["color_a"][a],
            "image_b": data["image"][b], "label_b": data["label"][b], "color_b": data["color_b"][b],
        }

    def transform_batch(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        batch["image_a"] = paint(batch["image_a"], self.palette_a, batch["color_a"])
        batch["image_b"] = paint(batch["image_b"], self.palette_b, batch["color_b"])
        return batch
