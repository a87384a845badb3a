"""Colored MNIST datamodules: painted colors, color ids, pairing, reproducibility, DDP shards."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from datamodules import (
    ColoredMNISTDataModule,
    MNISTDataModule,
    PairedColoredMNISTDataModule,
    UnpairedColoredMNISTDataModule,
)
from datamodules.colored_mnist import DEFAULT_PALETTE, color_shares, dominant_color, paint, single_color


def make(cls, data_dir: str, **kwargs):
    return cls(data_dir=data_dir, **{"batch_size": 8, "val_size": 16, **kwargs})


def cat(batches: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {key: torch.cat([b[key] for b in batches]) for key in batches[0]}


def unit_max(colors: torch.Tensor) -> torch.Tensor:
    return colors / colors.amax(-1, keepdim=True)


def stroke_color(images: torch.Tensor) -> torch.Tensor:
    """(B, 3): each channel's peak (= peak gray * rgb) scaled to a largest channel of 1: the painted color."""
    return unit_max(images.amax((2, 3)))


def gray(images: torch.Tensor) -> torch.Tensor:
    """The stroke of a painted image: its brightest channel equals the gray level for palettes with max 1."""
    return images.amax(1)


def row_bytes(images: torch.Tensor) -> list[bytes]:
    return [bytes(r.flatten().tolist()) for r in images]


def test_random_coloring_paints_palette_colors(mnist_dir, batches_of):
    dm = make(ColoredMNISTDataModule, mnist_dir)
    batch = cat(batches_of(dm, "fit", "train"))
    assert set(batch) == {"image", "label", "color"}
    assert batch["image"].shape == (48, 3, 28, 28) and batch["color"].dtype == torch.int64
    assert torch.allclose(stroke_color(batch["image"]), dm.palette[batch["color"]], atol=1e-6)
    assert torch.equal(dominant_color(batch["image"], dm.palette), batch["color"])
    assert len(batch["color"].unique()) >= 6  # uniform over 10 colors, 48 draws
    assert dm.image_shape == (3, 28, 28) and dm.num_classes == 10 and dm.num_colors == 10
    assert dm.color_names[:3] == ["red", "green", "blue"] and dm.palette.shape == (10, 3)


def test_painting_keeps_the_gray_digit_of_the_mnist_split(mnist_dir, batches_of):
    colored = cat(batches_of(make(ColoredMNISTDataModule, mnist_dir), "validate", "val"))
    plain = cat(batches_of(make(MNISTDataModule, mnist_dir), "validate", "val"))
    assert torch.equal(colored["label"], plain["label"])  # the same split code
    assert torch.allclose(gray(colored["image"]), plain["image"][:, 0])


def test_colors_are_reproducible_per_seed_and_split(mnist_dir):
    def colors(seed: int, split: str = "train") -> torch.Tensor:
        return make(ColoredMNISTDataModule, mnist_dir, seed=seed).split(split)["color"]

    assert torch.equal(colors(0), colors(0))
    assert not torch.equal(colors(0), colors(1))
    assert not torch.equal(colors(0, "test")[:16], colors(0, "val"))


def test_palette_coloring_colors_by_digit(mnist_dir, batches_of):
    dm = make(ColoredMNISTDataModule, mnist_dir, coloring="palette")
    batch = cat(batches_of(dm, "test", "test"))
    assert torch.equal(batch["color"], batch["label"])
    assert torch.equal(dominant_color(batch["image"], dm.palette), batch["label"])


def test_custom_palette(mnist_dir, batches_of):
    dm = make(ColoredMNISTDataModule, mnist_dir, palette=[(1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.2, 0.4, 0.6)])
    batch = cat(batches_of(dm, "fit", "train"))
    assert set(batch["color"].tolist()) == {0, 1, 2} and dm.color_names == ["red", "blue", "#336699"]
    assert torch.allclose(stroke_color(batch["image"]), unit_max(dm.palette[batch["color"]]), atol=1e-6)
    assert torch.equal(dominant_color(batch["image"], dm.palette), batch["color"])


@pytest.mark.parametrize("kwargs, match", [
    ({"coloring": "palette", "palette": [(1.0, 0.0, 0.0)]}, "at least 10 colors"),
    ({"palette": [(255.0, 0.0, 0.0)]}, r"\[0, 1\]"),
    ({"palette": [(1.0, 0.0)]}, "RGB triples"),
    ({"coloring": "rainbow"}, "--data.coloring"),
])
def test_bad_palettes_are_rejected(mnist_dir, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make(ColoredMNISTDataModule, mnist_dir, **kwargs)


def test_paint_runs_on_the_batch_device():
    gray_images = torch.rand(4, 1, 5, 5, dtype=torch.float64, device="meta")
    out = paint(gray_images, torch.eye(3), torch.tensor([0, 1, 2, 0]))
    assert out.device.type == "meta" and out.shape == (4, 3, 5, 5) and out.dtype == torch.float64


def test_paired_images_share_the_digit_in_different_colors(mnist_dir, batches_of):
    dm = make(PairedColoredMNISTDataModule, mnist_dir)
    batch = cat(batches_of(dm, "fit", "train"))
    assert set(batch) == {"image_a", "image_b", "label", "color_a", "color_b"}
    assert batch["image_a"].shape == batch["image_b"].shape == (48, 3, 28, 28)
    assert torch.allclose(gray(batch["image_a"]), gray(batch["image_b"]))  # same stroke, same mask
    assert torch.equal(batch["color_a"], batch["label"]) and torch.equal(batch["color_b"], batch["label"])
    assert torch.equal(dominant_color(batch["image_a"], dm.palette_a), batch["label"])
    assert torch.equal(dominant_color(batch["image_b"], dm.palette_b), batch["label"])
    assert (dm.palette_a != dm.palette_b).any(1).all()  # every digit changes color from A to B
    assert dm.color_names_b[0] == dm.color_names_a[5] == "cyan"


def test_paired_random_coloring_draws_each_side_independently(mnist_dir):
    dm = make(PairedColoredMNISTDataModule, mnist_dir, coloring_a="random", coloring_b="random",
              palette_b=[(1.0, 1.0, 1.0), (1.0, 0.5, 0.0)])
    split = dm.split("train")
    assert not torch.equal(split["color_a"], split["label"]) and split["color_b"].max() == 1
    assert not torch.equal(split["color_a"] % 2, split["color_b"])


def test_unpaired_rows_pair_different_images(mnist_dir, batches_of):
    dm = make(UnpairedColoredMNISTDataModule, mnist_dir)
    batch = cat(batches_of(dm, "fit", "train"))
    assert set(batch) == {"image_a", "image_b", "label_a", "label_b", "color_a", "color_b"}
    assert len(batch["label_a"]) == 24  # 48 training images, half per domain
    assert torch.equal(dominant_color(batch["image_a"], dm.palette_a), batch["label_a"])
    assert torch.equal(dominant_color(batch["image_b"], dm.palette_b), batch["label_b"])
    assert (batch["label_a"] != batch["label_b"]).any()
    split = dm.split("train")
    side_a, side_b = set(row_bytes(split["image_a"])), set(row_bytes(split["image_b"]))
    assert len(side_a) == len(side_b) == 24 and not side_a & side_b  # disjoint halves


def test_unpaired_eval_splits_cover_the_split_on_both_sides(mnist_dir):
    dm = make(UnpairedColoredMNISTDataModule, mnist_dir)
    plain = make(MNISTDataModule, mnist_dir).split("test")
    split = dm.split("test")
    assert torch.equal(split["image_a"], plain["image"]) and torch.equal(split["label_a"], plain["label"])
    a, b = row_bytes(split["image_a"]), row_bytes(split["image_b"])
    assert sorted(a) == sorted(b) and all(x != y for x, y in zip(a, b))


def test_unpaired_rows_are_reproducible(mnist_dir):
    def images(seed: int) -> torch.Tensor:
        return make(UnpairedColoredMNISTDataModule, mnist_dir, seed=seed).split("train")["image_b"]

    assert torch.equal(images(0), images(0)) and not torch.equal(images(0), images(1))


def stub_trainer(rank: int, world_size: int) -> SimpleNamespace:
    """What `ImageDataModule` reads from a DDP trainer: rank, world size, epoch, batches done."""
    progress = SimpleNamespace(current=SimpleNamespace(processed=0))
    return SimpleNamespace(global_rank=rank, world_size=world_size, current_epoch=0,
                           fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress)))


def test_ddp_ranks_get_disjoint_shards(mnist_dir):
    dm = make(UnpairedColoredMNISTDataModule, mnist_dir, batch_size=4)
    dm.setup("fit")
    shards = []
    for rank in range(2):
        dm.trainer = stub_trainer(rank, 2)
        shards.append(row_bytes(torch.cat([b["image_a"] for b in dm.train_dataloader()])))
    assert len(shards[0]) == len(shards[1]) == 12 and not set(shards[0]) & set(shards[1])


def test_the_strict_color_rule_abstains_on_mixed_strokes_and_blank_images():
    palette = torch.tensor(DEFAULT_PALETTE)  # 0 red, 1 green, 3 yellow, 6 orange
    stroke = torch.zeros(1, 1, 28, 28)
    stroke[..., 4:24, 10:18] = torch.linspace(0.4, 1.0, 8)  # 20 rows of 8 pixels, gray levels varying along a row
    one = paint(stroke, palette, torch.tensor([6]))
    half = torch.cat([paint(stroke[..., :14, :], palette, torch.tensor([0])),
                      paint(stroke[..., 14:, :], palette, torch.tensor([1]))], dim=2)  # top red, bottom green
    most = torch.cat([paint(stroke[..., :18, :], palette, torch.tensor([0])),
                      paint(stroke[..., 18:, :], palette, torch.tensor([1]))], dim=2)  # 112 red, 48 green pixels
    blank = torch.zeros(1, 3, 28, 28)
    images = torch.cat([one, half, most, blank])
    # the mean-hue rule calls the half-and-half stroke yellow, a color no pixel has
    assert dominant_color(images[:2], palette).tolist() == [6, 3]
    shares = color_shares(images, palette)
    assert shares[0, 6] == pytest.approx(1.0) and shares[1, 3] == 0
    assert shares[1, 0] == pytest.approx(0.5) and shares[1, 1] == pytest.approx(0.5)
    assert shares[2, 0] == pytest.approx(112 / 160) and shares[3].sum() == 0
    assert single_color(images, palette).tolist() == [6, -1, 0, -1]
    assert single_color(images, palette, min_share=0.9).tolist() == [6, -1, -1, -1]
