"""LightningModules of the collection: training schemes over the plain networks in `lightning_models.networks`."""

from lightning_models.base import GenerativeModule, NonFiniteLossError
from lightning_models.cyclegan import CycleGAN
from lightning_models.gan import GAN
from lightning_models.pix2pix import Pix2Pix
from lightning_models.vae import VAE

__all__ = ["CycleGAN", "GAN", "GenerativeModule", "NonFiniteLossError", "Pix2Pix", "VAE"]
