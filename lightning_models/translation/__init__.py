"""Image-to-image translation: the shared two-domain scheme (`TranslationModule`), `CycleGAN` (unpaired, with its
image pool) and `Pix2Pix` (paired), with their translation scores and strips."""

from lightning_models.translation.base import TranslationModule
from lightning_models.translation.cyclegan import CycleGAN
from lightning_models.translation.pix2pix import Pix2Pix

__all__ = ["CycleGAN", "Pix2Pix", "TranslationModule"]
