"""An experiment of the pairing study (RESULTS.md, issue 6, section 6), kept so it can be rerun; not part of the
library. Negative data augmentation for CycleGAN: real images of the target domain with their color channels
permuted are shown to that domain's discriminator as fakes, unless the permutation leaves them (nearly) unchanged
(white and gray strokes), so the discriminator also learns which colors each digit does *not* wear.

    PYTHONPATH=benchmarks python benchmarks/translation_benchmark.py --data unpaired --models cyclegan \
        --batches 1000 --tag nda1 -- --model nda_cyclegan.NDACycleGAN --model.negative_weight 1.0
"""

import itertools

import torch

from lightning_models.translation.cyclegan import CycleGAN

PERMS = [p for p in itertools.permutations(range(3)) if p != (0, 1, 2)]


class NDACycleGAN(CycleGAN):
    """CycleGAN plus `negative_weight` * the discriminator loss of (real, channel-permuted real) pairs."""

    def __init__(self, negative_weight: float = 1.0, **kwargs):
        super().__init__(**kwargs)

    def discriminator_loss(self, discriminator, real, fake, source, rng):
        loss = super().discriminator_loss(discriminator, real, fake, source, rng)
        w = self.hparams.negative_weight
        if not w:
            return loss
        idx = torch.randint(len(PERMS), (len(real),), generator=rng, device=real.device)
        perm = torch.tensor(PERMS, device=real.device)[idx]  # (B, 3)
        neg = torch.gather(real, 1, perm[:, :, None, None].expand_as(real))
        changed = (neg - real).abs().flatten(1).amax(1) > 0.5
        if changed.any():
            logits = discriminator(neg[changed])
            loss = loss + w * self.gan_loss.discriminator(discriminator(real[changed]), logits)
        return loss
