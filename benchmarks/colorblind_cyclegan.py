"""An experiment of the pairing study (RESULTS.md, issue 6, section 7), kept so it can be rerun; not part of the
library. Color-blind generators for CycleGAN: each generator sees only each pixel's largest channel (the stroke
without its color), so it cannot map input colors to output colors and has to paint from the digit's shape. With
`stroke_cycle` the cycle term compares strokes too (a full-color cycle asks the generators for colors they cannot
see). `color_blind: false` keeps the usual generators (to try `minibatch_std` alone). `minibatch_std` appends the batch's feature spread to the PatchGAN discriminators before their last layer,
so they can see a batch that has only one color.

    PYTHONPATH=benchmarks python benchmarks/translation_benchmark.py --data unpaired --models cyclegan \
        --batches 1000 --tag colorblind_resnet2 -- --model colorblind_cyclegan.ColorBlindCycleGAN \
        --model.generator resnet --model.generator_blocks 2
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from lightning_models.cyclegan import CycleGAN


def strokes(images: Tensor) -> Tensor:
    """Each pixel's largest channel (B, 1, H, W): the stroke without its color."""
    return images.amax(1, keepdim=True)


class ColorBlind(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(strokes(x).expand_as(x))


class MinibatchStdHead(nn.Module):
    """The PatchGAN's last convolution, reading one more channel: the mean over channels of each feature's std
    across the batch."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = nn.Conv2d(conv.in_channels + 1, conv.out_channels, conv.kernel_size, conv.stride, conv.padding)

    def forward(self, h: Tensor) -> Tensor:
        std = h.float().std(dim=0, unbiased=False).mean(dim=0, keepdim=True).to(h.dtype)  # (1, H, W)
        return self.conv(torch.cat([h, std.expand(h.shape[0], 1, *h.shape[2:])], 1))


class ColorBlindCycleGAN(CycleGAN):
    def __init__(self, color_blind: bool = True, stroke_cycle: bool = True, minibatch_std: bool = False,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if color_blind:
            self.generator_ab, self.generator_ba = ColorBlind(self.generator_ab), ColorBlind(self.generator_ba)
        if minibatch_std:
            for d in (self.discriminator_a, self.discriminator_b):
                d.layers[-1] = MinibatchStdHead(d.layers[-1])

    def reconstruction_losses(self, real_a, real_b, fake_a, fake_b) -> dict:
        h = self.hparams
        if not (h.color_blind and h.stroke_cycle and h.cycle_weight):
            return super().reconstruction_losses(real_a, real_b, fake_a, fake_b)
        terms = {"cycle": h.cycle_weight * (F.l1_loss(strokes(self.generator_ba(fake_b)), strokes(real_a))
                                            + F.l1_loss(strokes(self.generator_ab(fake_a)), strokes(real_b)))}
        if h.identity_weight:
            terms["identity"] = super().reconstruction_losses(real_a, real_b, fake_a, fake_b)["identity"]
        return terms
