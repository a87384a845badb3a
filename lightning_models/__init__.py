"""LightningModules of the collection: training schemes over the plain networks in `lightning_models.networks`."""

from lightning_models.autoencoder import Autoencoder
from lightning_models.base import GenerativeModule, NonFiniteLossError
from lightning_models.cyclegan import CycleGAN
from lightning_models.few_label import FewLabelClassifier
from lightning_models.gan import GAN
from lightning_models.infogan import InfoGAN
from lightning_models.inversion import GANInversion
from lightning_models.latent_gan import LatentGAN
from lightning_models.performance import skip_failing_nvml_probe
from lightning_models.pix2pix import Pix2Pix
from lightning_models.vae import VAE

skip_failing_nvml_probe()  # Lightning is imported by now (it sets the variable); see the function's doc

__all__ = ["Autoencoder", "CycleGAN", "FewLabelClassifier", "GAN", "GANInversion", "GenerativeModule", "InfoGAN",
           "LatentGAN", "NonFiniteLossError", "Pix2Pix", "VAE"]
