"""pix2pix (Isola et al. 2017): translation learned from aligned pairs, here in both directions.

Generator loss, images in [-1, 1]:
    adversarial(D_B(a, G_AB(a))) + adversarial(D_A(b, G_BA(b)))
    + l1_weight * (|G_AB(a) - b| + |G_BA(b) - a|)                      # the paired target, pixel by pixel
The discriminators are conditional PatchGANs: they judge (input, output) pairs stacked on channels, so a
translation must fit its input, not just look like the target domain. No history pool: an old fake has lost its
input. The shared step, metrics and pictures are `TranslationModule`'s.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from lightning_models.networks.translation import GeneratorKind
from lightning_models.translation.base import TranslationModule


class Pix2Pix(TranslationModule):
    """pix2pix: U-Net generators, PatchGAN discriminators on (input, output) pairs, L1 + adversarial loss.

    Trained on paired data (`PairedColoredMNISTDataModule`: row i of `image_a` and `image_b` is the same digit
    image), in both directions. `translate(images, "AB" | "BA")`.

    Args:
        l1_weight: weight of the L1 distance to the paired target (pix2pix's 100).
        generator: "unet" (pix2pix's), "resnet" or "recolor" (see `TranslationModule`).
        **kwargs: the options shared with CycleGAN, see `TranslationModule` (networks, loss, lr, decay, seed).
    """

    judges_pairs = True

    def __init__(self, l1_weight: float = 100.0, generator: GeneratorKind = "unet", **kwargs) -> None:
        super().__init__(generator=generator, **kwargs)
        if l1_weight < 0:
            raise ValueError(f"--model.l1_weight must be >= 0, got {l1_weight}")

    def reconstruction_losses(self, real_a: Tensor, real_b: Tensor, fake_a: Tensor, fake_b: Tensor) -> dict:
        w = self.hparams.l1_weight
        return {"l1": w * (F.l1_loss(fake_b, real_b) + F.l1_loss(fake_a, real_a))} if w else {}
