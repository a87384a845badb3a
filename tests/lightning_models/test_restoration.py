"""Masks, corruptions and the latent-optimisation inverter (lightning_models/restoration.py)."""

import pytest
import torch
from PIL import Image

from lightning_models.restoration import (center_mask, corrupt, data_loss, load_mask, mean_fill, optimize_latent,
                                          prior_penalty, random_block_mask, show_holes)

SHAPE = (1, 28, 28)


def test_center_mask_is_a_centred_square_hole():
    mask = center_mask(SHAPE, 10)
    assert mask.shape == (1, 1, 28, 28)
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    hole = (mask[0, 0] == 0).nonzero()
    assert len(hole) == 100
    assert hole[:, 0].min() == 9 and hole[:, 0].max() == 18 and hole[:, 1].min() == 9 and hole[:, 1].max() == 18
    with pytest.raises(ValueError, match="hole_size"):
        center_mask(SHAPE, 29)


def test_random_block_mask_matches_a_loop_over_blocks():
    gen = torch.Generator().manual_seed(0)
    masks = random_block_mask(5, SHAPE, num_blocks=3, block_size=6, generator=gen)
    assert masks.shape == (5, 1, 28, 28)
    gen = torch.Generator().manual_seed(0)  # the same draws, applied block by block
    tops = torch.randint(0, 23, (5, 3, 1), generator=gen)
    lefts = torch.randint(0, 23, (5, 3, 1), generator=gen)
    expected = torch.ones(5, 1, 28, 28)
    for i in range(5):
        for b in range(3):
            t, l = int(tops[i, b]), int(lefts[i, b])
            expected[i, 0, t : t + 6, l : l + 6] = 0
    torch.testing.assert_close(masks, expected)
    assert not torch.equal(masks[0], masks[1])  # each image gets its own blocks


def test_load_mask_reads_white_as_known_and_rejects_a_wrong_size(tmp_path):
    pixels = torch.full((28, 28), 255, dtype=torch.uint8)
    pixels[3:7, 10:20] = 0
    path = tmp_path / "mask.png"
    Image.fromarray(pixels.numpy()).save(path)
    mask = load_mask(str(path), SHAPE)
    torch.testing.assert_close(mask[0, 0], (pixels > 127).float())

    Image.fromarray(torch.zeros(32, 30, dtype=torch.uint8).numpy()).save(tmp_path / "big.png")
    with pytest.raises(ValueError, match=r"--model.mask_path .*big.png.* 32x30 .* 28x28"):
        load_mask(str(tmp_path / "big.png"), SHAPE)
    with pytest.raises(FileNotFoundError, match="--model.mask_path"):
        load_mask(str(tmp_path / "missing.png"), SHAPE)
    Image.fromarray(torch.full((28, 28), 255, dtype=torch.uint8).numpy()).save(tmp_path / "white.png")
    with pytest.raises(ValueError, match="no hole"):
        load_mask(str(tmp_path / "white.png"), SHAPE)


def test_corruptions_touch_only_what_they_should():
    images = torch.rand(4, *SHAPE, generator=torch.Generator().manual_seed(0))
    mask = center_mask(SHAPE, 10)
    holed = corrupt(images, "inpaint", mask=mask)
    assert torch.equal(holed * mask, images * mask) and holed[..., 9:19, 9:19].abs().sum() == 0
    assert torch.equal(corrupt(images, "reconstruct"), images)
    noisy = corrupt(torch.zeros(64, *SHAPE), "denoise", 0.3, generator=torch.Generator().manual_seed(0))
    assert abs(noisy.std().item() - 0.3) < 0.01
    with pytest.raises(ValueError, match="predict_task"):
        corrupt(images, "sharpen")
    filled = mean_fill(holed, mask)
    known_mean = (images * mask).sum((1, 2, 3)) / mask.sum()
    torch.testing.assert_close(filled[:, 0, 12, 12], known_mean)
    assert torch.equal(filled * mask, images * mask)
    assert show_holes(holed, mask)[0, 0, 12, 12] == 0.5


def test_masked_data_loss_ignores_the_hole_and_the_prior_penalties():
    targets = torch.rand(2, *SHAPE, generator=torch.Generator().manual_seed(1))
    mask = center_mask(SHAPE, 10)
    outputs = targets.clone()
    outputs[..., 9:19, 9:19] = 5.0  # anything in the hole
    for norm in ("l1", "l2"):
        assert data_loss(outputs, targets, mask, norm).abs().max() == 0
        assert data_loss(outputs, targets, None, norm).min() > 0
    outputs = targets + 0.1 * mask  # a uniform 0.1 error on the known pixels
    torch.testing.assert_close(data_loss(outputs, targets, mask, "l1"), torch.full((2,), 0.1))
    torch.testing.assert_close(data_loss(outputs, targets, mask, "l2"), torch.full((2,), 0.01))
    z = torch.stack([torch.zeros(4), torch.ones(4) * 2])
    torch.testing.assert_close(prior_penalty(z, "gaussian"), torch.tensor([0.0, 4.0]))
    torch.testing.assert_close(prior_penalty(z, "norm"), torch.tensor([1.0, 9.0]))


class LinearGenerator(torch.nn.Module):
    """A frozen toy generator z (B, 4) -> images (B, 1, 28, 28) whose inverse is well defined."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 28 * 28)
        self.requires_grad_(False)

    def forward(self, z):
        return self.linear(z).view(-1, *SHAPE)


def test_latent_optimisation_recovers_latents_and_touches_only_z():
    torch.manual_seed(0)
    net = LinearGenerator()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    z_true = torch.randn(6, 4, generator=torch.Generator().manual_seed(2))
    targets = net(z_true)
    z, loss = optimize_latent(net, targets, 4, steps=150, lr=0.1, restarts=3, prior_weight=0.0,
                              generator=torch.Generator().manual_seed(3))
    assert z.shape == (6, 4) and loss.shape == (6,)
    torch.testing.assert_close(z, z_true, atol=2e-2, rtol=0)
    assert loss.max() < 1e-3
    for name, value in net.state_dict().items():  # the generator is unchanged and got no gradients
        assert torch.equal(value, before[name])
    assert all(p.grad is None for p in net.parameters())


def test_latent_optimisation_keeps_the_best_start_and_uses_the_mask():
    net = LinearGenerator()
    z_true = torch.randn(3, 4, generator=torch.Generator().manual_seed(4))
    # zero steps: the result is the best of the starts; the init (the truth) must win over random draws
    z, loss = optimize_latent(net, net(z_true), 4, steps=0, lr=0.1, restarts=5, prior_weight=0.0, init=z_true,
                              generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(z, z_true)
    assert loss.max() < 1e-10
    # the hole of the target is garbage: with the mask, the fit ignores it and still finds z_true
    mask = center_mask(SHAPE, 10)
    targets = net(z_true) * mask + 10.0 * (1 - mask)
    z, _ = optimize_latent(net, targets, 4, steps=150, lr=0.1, restarts=2, prior_weight=0.0, mask=mask,
                           generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(z, z_true, atol=2e-2, rtol=0)


def test_latent_optimisation_runs_under_inference_mode():
    net = LinearGenerator()
    with torch.inference_mode():  # what Lightning's test and predict loops do
        targets = net(torch.zeros(2, 4))
        z, _ = optimize_latent(net, targets, 4, steps=5, lr=0.1, restarts=2, prior_weight=0.01)
    assert torch.isfinite(z).all()
