"""Batch-level augmentation: `random_affine` and `random_recolor` draw one warp or color per image, on the images'
device, repeatably."""

import pytest
import torch

from lightning_models.augment import random_affine, random_recolor


def images(n=6, size=16):
    """A bright square off centre on a -1 background, the same in every row."""
    x = torch.full((n, 1, size, size), -1.0)
    x[:, :, 3:7, 4:9] = 1.0
    return x


def centroid(x):
    w = (x + 1).clamp_min(0)[:, 0]  # (B, H, W), mass of the foreground
    ys, xs = torch.meshgrid(torch.arange(w.shape[1]).float(), torch.arange(w.shape[2]).float(), indexing="ij")
    total = w.sum((1, 2))
    return torch.stack([(w * ys).sum((1, 2)) / total, (w * xs).sum((1, 2)) / total], 1)


def test_zero_ranges_leave_the_images_unchanged():
    x = images()
    torch.testing.assert_close(random_affine(x, None, degrees=0, scale=0, shift=0, background=-1.0), x,
                               atol=1e-5, rtol=0)


def test_one_warp_per_image_repeatable_from_the_generator():
    x = images()
    a = random_affine(x, torch.Generator().manual_seed(1), background=-1.0)
    b = random_affine(x, torch.Generator().manual_seed(1), background=-1.0)
    c = random_affine(x, torch.Generator().manual_seed(2), background=-1.0)
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)
    assert all(not torch.allclose(a[0], a[i]) for i in range(1, len(a)))  # same input, a different warp each
    assert a.shape == x.shape and a.dtype == x.dtype


def test_background_fills_what_the_warp_brings_in_and_shift_is_bounded():
    x = images(n=64)
    shifted = random_affine(x, torch.Generator().manual_seed(0), degrees=0, scale=0, shift=0.25, background=-1.0)
    assert shifted.min() >= -1 - 1e-6 and shifted.max() <= 1 + 1e-6
    assert (shifted[:, :, 0, :] == -1).all() and (shifted[:, :, -1, :] == -1).all()  # no wrap-around of the square
    moved = (centroid(shifted) - centroid(x)).abs()
    assert moved.max() <= 0.25 * 16 / 2 + 0.5  # at most a quarter of the half-width (2 px), each axis
    assert moved.max() > 0.5  # and it does move
    # without a shift, a pure rotation about the centre keeps the square's distance from the centre
    rotated = random_affine(x, torch.Generator().manual_seed(0), degrees=30, scale=0, shift=0, background=-1.0)
    radius = lambda im: (centroid(im) - 7.5).norm(dim=1)  # noqa: E731
    torch.testing.assert_close(radius(rotated), radius(x), atol=0.3, rtol=0)


def test_random_recolor_keeps_the_stroke_and_draws_one_color_per_image():
    stroke = torch.rand(6, 1, 28, 28)
    stroke[:, :, 0, 0] = 1.0
    red = stroke * torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    out = random_recolor(red, torch.Generator().manual_seed(0))
    assert out.shape == red.shape and torch.allclose(out.amax(1, keepdim=True), stroke)  # brightest channel = stroke
    color = out[:, :, 0, 0]  # each image's color: its channels at a pixel of stroke 1
    assert torch.allclose(color.amax(1), torch.ones(6))
    assert torch.allclose(out, stroke * color[:, :, None, None], atol=1e-6)  # one color over the whole image
    assert (torch.cdist(color, color) + torch.eye(6)).min() > 1e-3  # a different color per image
    assert torch.equal(out, random_recolor(red, torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="RGB"):
        random_recolor(stroke, None)
