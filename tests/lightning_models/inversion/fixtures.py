"""A GANInversion whose generator has a known range, for tests whose answer can be worked out by hand.

`LinearImageGenerator` maps z to W z + b: its images form an affine subspace of `latent_dim` dimensions among
the 784 pixels. Images drawn from it are inverted exactly, fitting a noisy one by least squares (prior_weight 0)
is the projection onto that subspace, and any `latent_dim` well-spread known pixels determine the rest.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from lightning_models import GANInversion
from tests.helpers import one_thread  # noqa: F401 (autouse: one torch thread)

SHAPE = (1, 28, 28)
LATENT_DIM = 8
#: the architecture GANInversion builds before the test swaps its generator (no GAN checkpoint needed)
GENERATOR_CONFIG = {"latent_dim": LATENT_DIM, "image_shape": list(SHAPE), "width": 8, "norm": "batch"}


class LinearImageGenerator(nn.Module):
    """z (B, latent_dim) -> W z + b as images (B, 1, 28, 28), in [-1, 1] for z ~ N(0, I) (small W and b).

    `blind_hole`: a mask (1 = known); the output is then -1 (black once decoded) in its hole whatever z is, so
    the known pixels are still fitted exactly and the hole is always filled with 0."""

    def __init__(self, latent_dim: int = LATENT_DIM, blind_hole: Tensor | None = None, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("weight", 0.05 * torch.randn(SHAPE[1] * SHAPE[2], latent_dim, generator=gen))
        self.register_buffer("bias", 0.1 * torch.randn(SHAPE[1] * SHAPE[2], generator=gen))
        self.blind_hole = blind_hole

    def forward(self, z: Tensor) -> Tensor:
        images = (z @ self.weight.T + self.bias).view(-1, *SHAPE)
        return images if self.blind_hole is None else images * self.blind_hole - (1 - self.blind_hole)

    def least_squares(self, targets: Tensor) -> Tensor:
        """The latents (B, latent_dim) whose images are closest to `targets` (B, 1, 28, 28) in [-1, 1]."""
        return torch.linalg.lstsq(self.weight, (targets.flatten(1) - self.bias).T).solution.T


def known_inverter(generator: LinearImageGenerator | None = None, **options) -> GANInversion:
    """A GANInversion (tiny encoder, no prior: the data term alone decides) with `generator` as its generator."""
    model = GANInversion(generator_config=GENERATOR_CONFIG, encoder_width=4, prior_weight=0.0, **options).eval()
    model.generator = (generator or LinearImageGenerator()).requires_grad_(False)
    return model


def range_images(model: GANInversion, n: int, seed: int = 1) -> Tensor:
    """`n` images (n, 1, 28, 28) in [0, 1] of the generator's range (inside (0, 1): no clamping)."""
    return model.decode(torch.randn(n, model.latent_dim, generator=torch.Generator().manual_seed(seed)))


def psnr(images: Tensor, truth: Tensor) -> float:
    """Mean over images of the per-image PSNR (data range 1), as the test scores average it."""
    return float((10 * torch.log10(1 / (images - truth).square().flatten(1).mean(1))).mean())
