"""Each GAN loss against its closed form, the gradient penalty against a critic with a known gradient, and the
invariant-information (IIC) loss against mutual informations worked out by hand."""

import math

import pytest
import torch
import torch.nn.functional as F

from lightning_models.losses import (LOSSES, get_loss, gradient_penalty, invariant_information_loss,
                                     mode_seeking_loss)

REAL = torch.tensor([2.0, -1.0, 0.5])
FAKE = torch.tensor([-0.5, 1.5, 0.0])


def _log_sigmoid(x):
    return torch.tensor([math.log(1 / (1 + math.exp(-v))) for v in x.tolist()])


def test_bce_discriminator_is_binary_cross_entropy():
    expected = F.binary_cross_entropy_with_logits(REAL, torch.ones(3)) + F.binary_cross_entropy_with_logits(
        FAKE, torch.zeros(3))
    for name in ("saturating", "non_saturating"):
        torch.testing.assert_close(LOSSES[name].discriminator(REAL, FAKE), expected)


def test_saturating_generator_is_log_one_minus_d():
    d_fake = torch.sigmoid(FAKE)
    torch.testing.assert_close(LOSSES["saturating"].generator(FAKE), torch.log(1 - d_fake).mean())


def test_non_saturating_generator_is_minus_log_d():
    torch.testing.assert_close(LOSSES["non_saturating"].generator(FAKE), -_log_sigmoid(FAKE).mean())


def test_saturating_gradient_vanishes_when_discriminator_wins():
    # D confidently rejects the fakes (logit -8): the minimax loss gives almost no gradient, the
    # non-saturating one a strong one -- the report's "saturating stalled" in one line.
    fake = torch.full((4,), -8.0, requires_grad=True)
    (g_sat,) = torch.autograd.grad(LOSSES["saturating"].generator(fake), fake)
    (g_ns,) = torch.autograd.grad(LOSSES["non_saturating"].generator(fake), fake)
    assert g_sat.abs().max() < 1e-3 < g_ns.abs().min()


def test_lsgan():
    torch.testing.assert_close(LOSSES["lsgan"].discriminator(REAL, FAKE),
                               0.5 * (((REAL - 1) ** 2).mean() + (FAKE**2).mean()))
    torch.testing.assert_close(LOSSES["lsgan"].generator(FAKE), 0.5 * ((FAKE - 1) ** 2).mean())


def test_hinge():
    expected = torch.clamp(1 - REAL, min=0).mean() + torch.clamp(1 + FAKE, min=0).mean()
    torch.testing.assert_close(LOSSES["hinge"].discriminator(REAL, FAKE), expected)
    torch.testing.assert_close(LOSSES["hinge"].generator(FAKE), -FAKE.mean())


def test_wgan_gp_terms():
    loss = LOSSES["wgan_gp"]
    assert loss.gradient_penalty and not LOSSES["hinge"].gradient_penalty
    torch.testing.assert_close(loss.discriminator(REAL, FAKE), FAKE.mean() - REAL.mean())
    torch.testing.assert_close(loss.generator(FAKE), -FAKE.mean())


def test_gradient_penalty_of_linear_critic():
    # D(x) = <w, x>: its input gradient is w everywhere, so the penalty is (||w|| - 1)^2 exactly.
    w = torch.randn(1, 3, 4, 4)
    critic = lambda x: (x * w).flatten(1).sum(1)  # noqa: E731
    real, fake = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    gp = gradient_penalty(critic, real, fake, torch.Generator().manual_seed(0))
    torch.testing.assert_close(gp, (w.norm() - 1) ** 2)


def test_gradient_penalty_is_differentiable_for_the_critic():
    w = torch.randn(1, 1, 2, 2, requires_grad=True)
    gp = gradient_penalty(lambda x: (x * w).flatten(1).sum(1), torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2),
                          torch.Generator().manual_seed(0))
    (grad,) = torch.autograd.grad(gp, w)
    torch.testing.assert_close(grad, 2 * (w.norm() - 1) * w / w.norm())


def test_unknown_loss_lists_valid_names():
    with pytest.raises(ValueError, match="--model.loss must be one of .*non_saturating"):
        get_loss("minimax")


def test_invariant_information_loss_is_minus_the_mutual_information_of_the_pairs():
    eye = torch.eye(4)
    # agreeing, confident, balanced predictions: I = H = log K, the minimum
    torch.testing.assert_close(invariant_information_loss(eye, eye), torch.tensor(-math.log(4)))
    # one category for every image: I = 0 (collapse earns nothing)
    one = eye[[0, 0, 0, 0]]
    assert abs(float(invariant_information_loss(one, one))) < 1e-5  # (the 1e-8 floor of empty cells)
    # pairs (0, 0), (0, 0), (1, 1), (0, 1): symmetrised joint [[1/2, 1/8], [1/8, 1/4]], marginals (5/8, 3/8)
    two = torch.eye(2)
    p, q = two[[0, 0, 1, 0]], two[[0, 0, 1, 1]]
    joint = {(0, 0): 1 / 2, (0, 1): 1 / 8, (1, 0): 1 / 8, (1, 1): 1 / 4}
    marginal = (5 / 8, 3 / 8)
    mi = sum(v * math.log(v / (marginal[i] * marginal[j])) for (i, j), v in joint.items())
    torch.testing.assert_close(invariant_information_loss(p, q), torch.tensor(-mi))
    # soft predictions that disagree score above agreeing ones, and the loss has a gradient for both
    logits = torch.randn(32, 5, generator=torch.Generator().manual_seed(0), requires_grad=True)
    agree = invariant_information_loss(logits.softmax(1), logits.softmax(1))
    shuffled = invariant_information_loss(logits.softmax(1), logits.softmax(1).roll(1, dims=0))
    assert agree < shuffled
    agree.backward()
    assert logits.grad.abs().sum() > 0


def test_mode_seeking_loss_by_hand():
    # pairs (row 0, row 2) and (row 1, row 3): image gaps |1-0| and |3-0| -> mean 2; latent gaps 1 and 3 -> mean 2
    fake = torch.tensor([[1.0], [3.0], [0.0], [0.0]], requires_grad=True)
    latent = torch.tensor([[0.0], [0.0], [1.0], [3.0]])
    loss = mode_seeking_loss(fake, latent, eps=0.0)
    torch.testing.assert_close(loss, torch.tensor(1.0))  # 1 / (2 / 2)
    # a generator that ignores its noise (equal images per pair) is penalised with 1 / eps
    same = torch.zeros(4, 1)
    assert float(mode_seeking_loss(same, latent, eps=1e-5)) == pytest.approx(1e5)
    # its gradient pushes the two images of each pair apart
    loss.backward()
    assert fake.grad[0] < 0 and fake.grad[2] > 0
