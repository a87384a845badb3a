"""Inverting a trained GAN's generator (`GANInversion`: encoder, latent optimisation, or both), its reconstruction
scores, and the restorations built on it (denoising, inpainting)."""

from lightning_models.inversion.inversion import GANInversion

__all__ = ["GANInversion"]
