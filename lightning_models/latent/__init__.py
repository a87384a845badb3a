"""Models on an autoencoder's codes: the `Autoencoder` itself, the few-label classifier on its codes
(`FewLabelClassifier`) and the GAN in its latent space (`LatentGAN`, a `lightning_models.gan.GAN`)."""

from lightning_models.latent.autoencoder import Autoencoder
from lightning_models.latent.few_label import FewLabelClassifier
from lightning_models.latent.latent_gan import LatentGAN

__all__ = ["Autoencoder", "FewLabelClassifier", "LatentGAN"]
