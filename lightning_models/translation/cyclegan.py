"""CycleGAN (Zhu et al. 2017): translation between two unpaired domains.

Generator loss, images in [-1, 1]:
    adversarial(D_B(G_AB(a))) + adversarial(D_A(G_BA(b)))
    + cycle_weight * (|G_BA(G_AB(a)) - a| + |G_AB(G_BA(b)) - b|)        # the round trip returns the input
    + identity_weight * (|G_BA(a) - a| + |G_AB(b) - b|)                  # a target-domain image stays as it is
The discriminators judge single images and see fakes through a history pool each. With `cycle_weight` and
`identity_weight` 0 this is the plain adversarial translator: nothing ties an output to its input.
The shared step, metrics and pictures are `TranslationModule`'s.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_models.translation.base import TranslationModule
from lightning_models.translation.pool import ImagePool


class CycleGAN(TranslationModule):
    """CycleGAN: two generators, two PatchGAN discriminators, adversarial + cycle + identity losses.

    Any adversarial loss of `lightning_models.losses` (least squares by default); an image history pool per
    discriminator. For unpaired data (`UnpairedColoredMNISTDataModule`). `translate(images, "AB" | "BA")`.

    Args:
        cycle_weight: weight of the cycle-consistency terms (0 = off: the plain GAN translator).
        identity_weight: weight of the identity terms (0 = off; CycleGAN's default is 0.5 * cycle_weight).
        pool_size: fakes kept in each discriminator's history pool (0 = off, the newest fakes only).
        **kwargs: the options shared with pix2pix, see `TranslationModule` (networks, loss, lr, decay, seed).
    """

    def __init__(self, cycle_weight: float = 10.0, identity_weight: float = 5.0, pool_size: int = 50,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if cycle_weight < 0 or identity_weight < 0:
            raise ValueError(f"--model.cycle_weight and --model.identity_weight must be >= 0 (0 turns a term off), "
                             f"got {cycle_weight} and {identity_weight}")
        shape = tuple(self.hparams.image_shape)
        self.pool_a = ImagePool(pool_size, shape)
        self.pool_b = ImagePool(pool_size, shape)

    def history(self, fake_a: Tensor, fake_b: Tensor, rng: torch.Generator) -> tuple[Tensor, Tensor]:
        return self.pool_a.query(fake_a, rng), self.pool_b.query(fake_b, rng)

    def cycle_distance(self, reconstructed: Tensor, real: Tensor) -> Tensor:
        """How far a round trip lands from its input: the mean absolute difference (CycleGAN's L1)."""
        return F.l1_loss(reconstructed, real)

    def reconstruction_losses(self, real_a: Tensor, real_b: Tensor, fake_a: Tensor, fake_b: Tensor) -> dict:
        h, terms = self.hparams, {}
        if h.cycle_weight:  # skipped when off: two generator passes saved
            terms["cycle"] = h.cycle_weight * (self.cycle_distance(self.generator_ba(fake_b), real_a)
                                               + self.cycle_distance(self.generator_ab(fake_a), real_b))
        if h.identity_weight:
            terms["identity"] = h.identity_weight * (F.l1_loss(self.generator_ba(real_a), real_a)
                                                     + F.l1_loss(self.generator_ab(real_b), real_b))
        return terms
