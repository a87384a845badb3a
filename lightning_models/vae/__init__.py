"""The VAE with continuous, categorical (Gumbel-softmax) and color latents, its test metrics and its latent plots."""

from lightning_models.vae.vae import VAE

__all__ = ["VAE"]
