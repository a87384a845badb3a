"""LightningModules of the collection: training schemes over the plain networks in `lightning_models.networks`."""

from lightning_models.base import GenerativeModule, NonFiniteLossError
from lightning_models.gan import GAN

__all__ = ["GAN", "GenerativeModule", "NonFiniteLossError"]
