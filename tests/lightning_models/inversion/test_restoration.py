"""Masks, corruptions and the latent-optimisation inverter (lightning_models/inversion/restoration.py)."""

import pytest
import torch
from PIL import Image

from lightning_models.inversion.restoration import (center_mask, combine_restarts, corrupt, data_loss, load_mask,
                                                    mean_fill, optimize_latent, optimize_restarts, prior_penalty,
                                                    random_block_mask, show_holes)

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
    targets = net(torch.randn(2, 4, generator=torch.Generator().manual_seed(13)))
    options = dict(steps=5, lr=0.1, restarts=2, prior_weight=0.01)
    z, loss = optimize_latent(net, targets, 4, **options, generator=torch.Generator().manual_seed(14))
    with torch.inference_mode():  # what Lightning's test and predict loops do: the same optimisation runs
        inferred = optimize_latent(net, targets.clone(), 4, **options, generator=torch.Generator().manual_seed(14))
    torch.testing.assert_close(inferred, (z, loss), rtol=0, atol=0)
    start = torch.randn(2, 2, 4, generator=torch.Generator().manual_seed(14))  # the restarts' first draws
    start_loss = (data_loss(net(start.flatten(0, 1)), targets.repeat(2, 1, 1, 1), None, "l2")
                  + 0.01 * prior_penalty(start.flatten(0, 1), "norm"))
    assert (loss < start_loss.view(2, 2).min(0).values).all()  # and it moved the latents towards the targets


def test_combine_restarts_best_picks_the_lowest_loss_and_mean_matches_a_manual_weighting():
    gen = torch.Generator().manual_seed(7)
    images = torch.rand(4, 3, *SHAPE, generator=gen)  # 4 restarts of 3 images
    losses = torch.tensor([[0.3, 0.1, 0.2], [0.1, 0.4, 0.25], [0.2, 0.2, 0.05], [0.5, 0.3, 0.3]])
    best = combine_restarts(images, losses, "best")
    for i, r in enumerate([1, 0, 2]):  # the restart of lowest loss, per image
        torch.testing.assert_close(best[i], images[r, i])
    torch.testing.assert_close(combine_restarts(images, losses, "mean"), images.mean(0))
    for i in range(3):  # by hand, image by image
        w = torch.exp(-losses[:, i] / 0.1)
        torch.testing.assert_close(combine_restarts(images, losses, "mean", temperature=0.1)[i],
                                   sum(w[r] * images[r, i] for r in range(4)) / w.sum())
    top2 = combine_restarts(images, losses, "mean", top_k=2)
    for i, (a, b) in enumerate([(1, 2), (0, 2), (2, 0)]):  # the two lowest losses of each image
        torch.testing.assert_close(top2[i], (images[a, i] + images[b, i]) / 2)
    w = torch.exp(-torch.tensor([0.1, 0.2]) / 0.05)  # image 0, top 2 (restarts 1 and 2), softmax weights
    torch.testing.assert_close(combine_restarts(images, losses, "mean", 0.05, 2)[0],
                               (w[0] * images[1, 0] + w[1] * images[2, 0]) / w.sum())
    torch.testing.assert_close(combine_restarts(images, losses, "mean", top_k=9), images.mean(0))  # k > restarts
    torch.testing.assert_close(combine_restarts(images, losses, "mean", top_k=1), best)


@pytest.mark.parametrize("kwargs, message", [
    ({"combine": "median"}, r"--model.combine must be best or mean, got 'median'"),
    ({"combine": "mean", "temperature": 0.0}, r"--model.combine_temperature must be > 0"),
    ({"combine": "mean", "top_k": 0}, r"--model.combine_top_k must be >= 1"),
])
def test_combine_restarts_rejects_bad_options_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        combine_restarts(torch.rand(2, 1, *SHAPE), torch.rand(2, 1), **kwargs)
    with pytest.raises(ValueError, match=r"images \(2, 1, 1, 28, 28\) and losses \(3, 1\) disagree"):
        combine_restarts(torch.rand(2, 1, *SHAPE), torch.rand(3, 1))


def test_optimize_restarts_returns_every_restart_and_optimize_latent_keeps_the_best():
    net = LinearGenerator()
    targets = net(torch.randn(3, 4, generator=torch.Generator().manual_seed(8)))
    options = dict(steps=4, lr=0.1, restarts=5, prior_weight=0.01)
    z, losses = optimize_restarts(net, targets, 4, **options, generator=torch.Generator().manual_seed(9))
    assert z.shape == (5, 3, 4) and losses.shape == (5, 3)
    for r in range(5):  # each restart's loss is its latent's objective: data term + prior_weight * prior
        expected = data_loss(net(z[r]), targets, None, "l2") + 0.01 * prior_penalty(z[r], "norm")
        torch.testing.assert_close(losses[r], expected)
    best_z, best_loss = optimize_latent(net, targets, 4, **options, generator=torch.Generator().manual_seed(9))
    winner = losses.argmin(0)
    torch.testing.assert_close(best_z, z[winner, torch.arange(3)])
    torch.testing.assert_close(best_loss, losses.min(0).values)


class SplitGenerator(torch.nn.Module):
    """z (B, 4) -> images whose known ring depends on z[:, :2] only and whose centre 10x10 hole on z[:, 2:] only:
    the ring says nothing about the hole, the most ambiguous inpainting there is."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(10)
        self.mask = center_mask(SHAPE, 10)
        self.ring = torch.randn(2, 28 * 28, generator=gen)
        self.hole = torch.randn(2, 28 * 28, generator=gen)

    def forward(self, z):
        ring = (z[:, :2] @ self.ring).view(-1, *SHAPE) * self.mask
        return ring + (z[:, 2:] @ self.hole).view(-1, *SHAPE) * (1 - self.mask)


def test_mean_of_restarts_fills_an_ambiguous_hole_with_lower_error_than_the_best_restart():
    net = SplitGenerator()
    truth = net(torch.randn(32, 4, generator=torch.Generator().manual_seed(11)))
    z, losses = optimize_restarts(net, truth * net.mask, 4, steps=300, lr=0.2, restarts=16, prior_weight=0.0,
                                  mask=net.mask, generator=torch.Generator().manual_seed(12))
    with torch.no_grad():
        images = net(z.flatten(0, 1)).view(16, 32, *SHAPE)
    assert losses.max() < 1e-3  # every restart fits the ring: the hole is a random guess each time

    def hole_error(filled):
        return float(((filled - truth) * (1 - net.mask)).square().mean())

    best, mean = (hole_error(combine_restarts(images, losses, how)) for how in ("best", "mean"))
    assert mean < 0.7 * best  # expected ratio (1 + 1/16) / 2 for squared error against a N(0, I) truth
