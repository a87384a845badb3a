"""GAN losses as small pure functions, chosen by name from one table.

Each entry gives the discriminator's loss on real and fake logits and the generator's loss on fake logits
(logits are raw discriminator outputs, any shape, averaged over the batch). `wgan_gp` adds a gradient penalty,
computed by `gradient_penalty` because it needs the discriminator itself. `invariant_information_loss` is the
clustering loss of InfoGAN's consistency term (not an adversarial objective, so not in the table).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class GANLoss:
    """The two halves of one adversarial objective."""

    discriminator: Callable[[Tensor, Tensor], Tensor]  # (real_logits, fake_logits) -> scalar
    generator: Callable[[Tensor], Tensor]  # fake_logits -> scalar
    gradient_penalty: bool = False


def _bce_discriminator(real: Tensor, fake: Tensor) -> Tensor:
    # -log sigmoid(real) - log(1 - sigmoid(fake)), written with softplus for stability.
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def saturating_generator(fake: Tensor) -> Tensor:
    """Minimax generator: minimise log(1 - D(G(z))) = -softplus(fake). Its gradient vanishes when D wins."""
    return -F.softplus(fake).mean()


def non_saturating_generator(fake: Tensor) -> Tensor:
    """Maximise log D(G(z)): minimise softplus(-fake)."""
    return F.softplus(-fake).mean()


def lsgan_discriminator(real: Tensor, fake: Tensor) -> Tensor:
    """Least squares with targets 1 (real) and 0 (fake)."""
    return 0.5 * ((real - 1).pow(2).mean() + fake.pow(2).mean())


def lsgan_generator(fake: Tensor) -> Tensor:
    return 0.5 * (fake - 1).pow(2).mean()


def hinge_discriminator(real: Tensor, fake: Tensor) -> Tensor:
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def wasserstein_discriminator(real: Tensor, fake: Tensor) -> Tensor:
    """Critic estimate of -W(real, fake); pair it with a gradient penalty."""
    return fake.mean() - real.mean()


def wasserstein_generator(fake: Tensor) -> Tensor:
    return -fake.mean()


LOSSES: dict[str, GANLoss] = {
    "saturating": GANLoss(_bce_discriminator, saturating_generator),
    "non_saturating": GANLoss(_bce_discriminator, non_saturating_generator),
    "lsgan": GANLoss(lsgan_discriminator, lsgan_generator),
    "hinge": GANLoss(hinge_discriminator, wasserstein_generator),
    "wgan_gp": GANLoss(wasserstein_discriminator, wasserstein_generator, gradient_penalty=True),
}


def get_loss(name: str) -> GANLoss:
    """The loss called `name`; an unknown name lists the valid ones."""
    if name not in LOSSES:
        raise ValueError(f"--model.loss must be one of {sorted(LOSSES)}, got {name!r}")
    return LOSSES[name]


def gradient_penalty(critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, rng: torch.Generator) -> Tensor:
    """WGAN-GP: E[(||grad_x D(x)||_2 - 1)^2] at random points between real and fake inputs (Gulrajani et al.)."""
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)  # images (B, C, H, W) or latent codes (B, D)
    eps = torch.rand(shape, device=real.device, dtype=real.dtype, generator=rng)
    mixed = (eps * real + (1 - eps) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1).pow(2).mean()


def mode_seeking_loss(fake: Tensor, latent: Tensor, eps: float = 1e-5) -> Tensor:
    """MSGAN's term (Mao et al. 2019): 1 / (mean |G(z1) - G(z2)| / mean |z1 - z2| + eps) for the pairs made of the
    first and second half of a batch (drawn for the same conditions). Minimising it makes different noise give
    different images, against a generator that ignores its noise (one image per class)."""
    half = len(fake) // 2
    image_gap = (fake[:half] - fake[half : 2 * half]).abs().mean()
    latent_gap = (latent[:half] - latent[half : 2 * half]).abs().mean()
    return 1.0 / (image_gap / latent_gap + eps)


def invariant_information_loss(p: Tensor, q: Tensor) -> Tensor:
    """Minus the mutual information I(c; c') of two categorical predictions of the same images, p and q (B, K)
    softmax rows, e.g. of an image and of a warped copy (IIC, Ji et al. 2019). Its minimum, -log K, needs
    predictions that agree (c = c'), are confident, and use all K categories equally often; one category for
    everything scores 0. The joint distribution is the batch mean of p_i q_i^T, symmetrised."""
    joint = p.float().t() @ q.float() / len(p)  # (K, K)
    joint = ((joint + joint.t()) / 2).clamp_min(1e-8)
    marginal_p, marginal_q = joint.sum(dim=1, keepdim=True), joint.sum(dim=0, keepdim=True)
    return -(joint * (joint.log() - marginal_p.log() - marginal_q.log())).sum()
