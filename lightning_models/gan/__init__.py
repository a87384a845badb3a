"""Adversarial training on images: `GAN` (unconditional and label-conditional, with its generator EMA) and
`InfoGAN` (a GAN that also learns interpretable codes), with InfoGAN's clustering scores and code traversals."""

from lightning_models.gan.gan import GAN
from lightning_models.gan.infogan import InfoGAN

__all__ = ["GAN", "InfoGAN"]
