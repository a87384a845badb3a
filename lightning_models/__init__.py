"""LightningModules of the collection: one package per model family over the plain networks in
`lightning_models.networks`, the shared core (`base`, `callbacks`, `checkpoints`, `losses`, `augment`, `progress`,
`performance`) and the scores (`lightning_models.metrics`).

    gan/          GAN, InfoGAN                         latent/       Autoencoder, FewLabelClassifier, LatentGAN
    vae/          VAE                                  inversion/    GANInversion
    translation/  CycleGAN, Pix2Pix                    metrics/      Classifier (the evaluation classifier)

Module paths from before that layout still import, with a DeprecationWarning (`lightning_models._moved`).
"""

from lightning_models import _moved
from lightning_models.base import GenerativeModule, NonFiniteLossError
from lightning_models.gan import GAN, InfoGAN
from lightning_models.inversion import GANInversion
from lightning_models.latent import Autoencoder, FewLabelClassifier, LatentGAN
from lightning_models.metrics import Classifier
from lightning_models.performance import skip_failing_nvml_probe
from lightning_models.translation import CycleGAN, Pix2Pix
from lightning_models.vae import VAE

skip_failing_nvml_probe()  # Lightning is imported by now (it sets the variable); see the function's doc
_moved.install()

__all__ = ["Autoencoder", "Classifier", "CycleGAN", "FewLabelClassifier", "GAN", "GANInversion", "GenerativeModule",
           "InfoGAN", "LatentGAN", "NonFiniteLossError", "Pix2Pix", "VAE"]
