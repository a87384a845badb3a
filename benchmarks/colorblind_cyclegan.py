"""An experiment of the pairing study (RESULTS.md, issue 6, section 7), kept so it can be rerun; not part of the
library. Color-blind generators for CycleGAN: each generator sees only each pixel's largest channel (the stroke
without its color), so it cannot map input colors to output colors and has to paint from the digit's shape. With
`stroke_cycle` the cycle term compares strokes too (a full-color cycle asks the generators for colors they cannot
see). `color_blind: false` keeps the usual generators (to try `minibatch_std` alone). `minibatch_std` appends the
batch's feature spread to the PatchGAN discriminators before their last layer, so they can see a batch that has
only one color.

    PYTHONPATH=benchmarks python benchmarks/translation_benchmark.py --data unpaired --models cyclegan \
        --batches 1000 --tag colorblind_resnet2 -- --model colorblind_cyclegan.ColorBlindCycleGAN \
        --model.generator resnet --model.generator_blocks 2
"""

import torch
import torch.nn as nn
from torch import Tensor

from lightning_models.networks.dcgan import batch_spread
from lightning_models.translation.cyclegan import CycleGAN


def strokes(images: Tensor) -> Tensor:
    """Each pixel's largest channel (B, 1, H, W): the stroke without its color."""
    return images.amax(1, keepdim=True)


class ColorBlind(nn.Module):
    """Shows `net` only the strokes of its input, repeated over the channels."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(strokes(x).expand_as(x))


class MinibatchStdHead(nn.Module):
    """The PatchGAN's last convolution, reading one more channel: the batch's feature spread (`batch_spread`)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = nn.Conv2d(conv.in_channels + 1, conv.out_channels, conv.kernel_size, conv.stride, conv.padding)

    def forward(self, h: Tensor) -> Tensor:
        return self.conv(torch.cat([h, batch_spread(h).expand(h.shape[0], 1, *h.shape[2:])], 1))


class ColorBlindCycleGAN(CycleGAN):
    def __init__(self, color_blind: bool = True, stroke_cycle: bool = True, minibatch_std: bool = False,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if color_blind:
            self.generator_ab, self.generator_ba = ColorBlind(self.generator_ab), ColorBlind(self.generator_ba)
        if minibatch_std:
            for d in (self.discriminator_a, self.discriminator_b):
                d.layers[-1] = MinibatchStdHead(d.layers[-1])

    def cycle_distance(self, reconstructed: Tensor, real: Tensor) -> Tensor:
        if self.hparams.color_blind and self.hparams.stroke_cycle:
            reconstructed, real = strokes(reconstructed), strokes(real)
        return super().cycle_distance(reconstructed, real)
