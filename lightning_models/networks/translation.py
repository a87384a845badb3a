"""Image-to-image networks: the ResNet generator of CycleGAN, the U-Net generator and the PatchGAN discriminator of
pix2pix, and a recoloring generator for domains that differ only in an object's color, sized for small images
(28x28: two stride-2 levels down to 7x7, where the published 256x256 networks go much deeper).

Generators map (B, C, H, W) in [-1, 1] to the same shape in [-1, 1]; the discriminator maps (B, C_in, H, W) to
a map of patch logits (B, 1, h, w), each judging one receptive field rather than the whole image.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn
from torch import Tensor

from lightning_models.augment import random_affine
from lightning_models.networks.conv import Norm, _maybe_sn, _norm

GeneratorKind = Literal["resnet", "unet", "recolor"]
GeneratorOutput = Literal["tanh", "clamp"]


class _ClampPullingIn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return x.clamp(-1.0, 1.0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        outward = ((x < -1) & (grad > 0)) | ((x > 1) & (grad < 0))  # descent would push it further out
        return grad.masked_fill(outward, 0)


class InwardClamp(nn.Module):
    """Clamps to [-1, 1]. Gradient: inside the range, the loss's own; outside, only the part that pulls the
    value back in (none that pushes it further out).

    An output layer for generators trained with a pixel loss on images whose background sits at a bound (black
    colored MNIST: -1). The background drives the last layer towards large negative pre-activations; under tanh,
    a stroke pixel caught there gets a gradient of tanh' ~ 1e-4 and keeps the background's value for good (a
    whole digit class painted black or with one channel off: benchmarks/RESULTS.md, issue 6 section 14). Here
    it gets the full gradient towards its target. Passing every gradient through (a plain straight-through
    clamp) instead lets the discriminator's gradient push the clamped background ever further out (to -300
    within 3,000 batches), which blurred the strokes' colors and edges in the same runs.
    """

    def forward(self, x: Tensor) -> Tensor:
        return _ClampPullingIn.apply(x)


OUTPUTS = {"tanh": nn.Tanh, "clamp": InwardClamp}


def _check_output(kind: GeneratorOutput) -> None:
    if kind not in OUTPUTS:
        raise ValueError(f"--model.generator_output must be 'tanh' or 'clamp', got {kind!r}")


def _check_warp(warp: float) -> None:
    if not warp >= 0:
        raise ValueError(f"--model.generator_warp must be >= 0 (0 = off), got {warp}")


def _output(kind: GeneratorOutput) -> nn.Module:
    _check_output(kind)
    return OUTPUTS[kind]()


def _check_size(size: int, downsamplings: int) -> None:
    if downsamplings < 1 or size % 2**downsamplings:
        raise ValueError(f"image size {size} is not divisible by 2**downsamplings = {2 ** downsamplings}: lower "
                         "--model.downsamplings (2 suits 28x28: 28 -> 14 -> 7) or resize with --data.image_size")


class ResidualBlock(nn.Module):
    """x + conv-norm-relu-conv-norm(x), with reflection padding (no zero border for the generator to paint)."""

    def __init__(self, channels: int, norm: Norm) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=norm != "batch"), _norm(norm, channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=norm != "batch"), _norm(norm, channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """CycleGAN's generator (Johnson et al.): 7x7 convolution, `downsamplings` stride-2 convolutions (channels
    doubling from `width`), `num_blocks` residual blocks, as many stride-2 transposed convolutions back, 7x7
    convolution to C channels, `output` (tanh).

    Args:
        image_shape: (C, H, W) of input and output; H must be divisible by 2**downsamplings.
        width: channels at full resolution.
        num_blocks: residual blocks at the lowest resolution.
        downsamplings: stride-2 levels (2 for 28x28).
        norm: normalisation ("instance" as in CycleGAN; "batch"; "none").
        output: "tanh" (CycleGAN's) or "clamp" (`InwardClamp`): what bounds the output to [-1, 1].
    """

    def __init__(self, image_shape: tuple[int, int, int], width: int = 32, num_blocks: int = 6,
                 downsamplings: int = 2, norm: Norm = "instance", output: GeneratorOutput = "tanh") -> None:
        super().__init__()
        channels = image_shape[0]
        _check_size(image_shape[-1], downsamplings)
        bias = norm != "batch"
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(channels, width, 7, bias=bias),
                                   _norm(norm, width), nn.ReLU(inplace=True)]
        for i in range(downsamplings):
            c = width * 2**i
            layers += [nn.Conv2d(c, 2 * c, 3, 2, 1, bias=bias), _norm(norm, 2 * c), nn.ReLU(inplace=True)]
        layers += [ResidualBlock(width * 2**downsamplings, norm) for _ in range(num_blocks)]
        for i in reversed(range(downsamplings)):
            c = width * 2**i
            layers += [nn.ConvTranspose2d(2 * c, c, 3, 2, 1, output_padding=1, bias=bias), _norm(norm, c),
                       nn.ReLU(inplace=True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(width, channels, 7), _output(output)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class UNetGenerator(nn.Module):
    """pix2pix's U-Net: `downsamplings` stride-2 4x4 convolutions (LeakyReLU), a 3x3 bottleneck, and stride-2
    transposed convolutions back up, each taking the encoder map of its resolution as a skip connection, so
    fine detail (the digit's stroke) reaches the output without passing through the bottleneck.

    Args:
        image_shape: (C, H, W) of input and output; H must be divisible by 2**downsamplings.
        width: channels of the first encoder level, doubling per level.
        downsamplings: encoder levels (2 for 28x28).
        norm: normalisation of all but the outermost layers.
        output: "tanh" (pix2pix's) or "clamp" (`InwardClamp`): what bounds the output to [-1, 1].
    """

    def __init__(self, image_shape: tuple[int, int, int], width: int = 32, downsamplings: int = 2,
                 norm: Norm = "instance", output: GeneratorOutput = "tanh") -> None:
        super().__init__()
        channels = image_shape[0]
        _check_size(image_shape[-1], downsamplings)
        bias = norm != "batch"
        widths = [channels] + [width * 2**i for i in range(downsamplings)]  # channels at each resolution
        self.down = nn.ModuleList(
            nn.Sequential(nn.Conv2d(widths[i], widths[i + 1], 4, 2, 1, bias=bias or i == 0),
                          _norm(norm, widths[i + 1]) if i > 0 else nn.Identity(), nn.LeakyReLU(0.2, inplace=True))
            for i in range(downsamplings)
        )
        self.bottleneck = nn.Sequential(nn.Conv2d(widths[-1], widths[-1], 3, 1, 1, bias=bias),
                                        _norm(norm, widths[-1]), nn.ReLU(inplace=True))
        self.up = nn.ModuleList(
            nn.Sequential(nn.ConvTranspose2d(2 * widths[i + 1], widths[i], 4, 2, 1, bias=bias), _norm(norm, widths[i]),
                          nn.ReLU(inplace=True))
            if i > 0 else nn.Sequential(nn.ConvTranspose2d(2 * widths[1], channels, 4, 2, 1), _output(output))
            for i in range(downsamplings)
        )

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        x = self.bottleneck(x)
        for layer, skip in zip(reversed(self.up), reversed(skips)):
            x = layer(torch.cat([x, skip], 1))
        return x


class RecolorGenerator(nn.Module):
    """Keeps the input's stroke and paints it in one color chosen from the stroke's shape alone.

    stroke = each pixel's largest channel (in [0, 1]); color = a small CNN on the stroke (stride-2 4x4
    convolutions, channels doubling from `width`, then a hidden layer of `8 * width` units, linear, sigmoid),
    scaled so its largest channel is 1; output = stroke x color. For domains that differ only in the color of a
    single-colored object (colored MNIST): the shape is kept exactly (the output's largest channel is the input's
    stroke), and the color cannot be a function of the input's color, only of its shape. In CycleGAN the cycle term
    then teaches each generator its own domain's colors: G_BA sees only the stroke of G_AB(a), which is the stroke
    of a, and must give back a's color from it; the identity term does the same with target-domain images.

    The hidden layer is for colors with a channel between 0 and 1 (orange, violet): read linearly off the
    convolutions' features, that channel spread by about +-0.25 between images of one digit, and a quarter to a
    third of them came out nearer a neighbouring color (benchmarks/RESULTS.md, issue 6 section 11).

    Args:
        image_shape: (C, H, W) of input and output; H must be divisible by 2**downsamplings.
        width: channels of the first convolution, doubling per stride-2 level.
        downsamplings: stride-2 levels before the head.
        norm: normalisation of the stride-2 levels.
        warp: in training mode, the CNN chooses the color from a randomly warped copy of the stroke
            (`random_affine` with its rotation, zoom and shift scaled by `warp`; 0 = off), so that the shape-to-color
            rule generalises from few images; the output keeps the stroke itself. The copy is detached: the
            stroke of a recolored image is its input's stroke, so no gradient flows through it anyway.
    """

    def __init__(self, image_shape: tuple[int, int, int], width: int = 32, downsamplings: int = 2,
                 norm: Norm = "instance", warp: float = 0.0) -> None:
        super().__init__()
        _check_warp(warp)
        self.warp = warp
        channels = image_shape[0]
        _check_size(image_shape[-1], downsamplings)
        layers: list[nn.Module] = [nn.Conv2d(1, width, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True)]
        for i in range(downsamplings):
            c = width * 2**i
            layers += [nn.Conv2d(c, 2 * c, 4, 2, 1, bias=norm != "batch"), _norm(norm, 2 * c),
                       nn.LeakyReLU(0.2, inplace=True)]
        side, hidden = image_shape[-1] // 2**downsamplings, 8 * width
        layers += [nn.Flatten()]
        head = [nn.Linear(width * 2**downsamplings * side * side, hidden), nn.LeakyReLU(0.2, inplace=True),
                nn.Linear(hidden, channels)]
        self.head_layers = len(head)  # the last layers of `color`, each generator's own under share_shape_features
        self.color = nn.Sequential(*layers, *head)

    def share_shape_features(self, other: "RecolorGenerator") -> None:
        """Uses `other`'s convolutions (everything before the hidden layer) instead of its own, keeping its own
        head: two generators that paint the same digits in different palettes then learn the shapes from both
        domains' images. The shared modules appear under both generators in the state dict."""
        if not isinstance(other, RecolorGenerator) or len(other.color) != len(self.color):
            raise ValueError("share_shape_features needs another RecolorGenerator of the same architecture")
        self.color = nn.Sequential(*other.color[:-other.head_layers], *self.color[-self.head_layers:])

    def forward(self, x: Tensor) -> Tensor:
        stroke = x.amax(1, keepdim=True)  # (B, 1, H, W) in [-1, 1]
        seen = stroke
        if self.training and self.warp:  # drawn from torch's global RNG, which the modules seed per step
            w = self.warp
            seen = random_affine(stroke.detach(), None, 15.0 * w, 0.15 * w, 0.1 * w, background=-1.0)
        color = torch.sigmoid(self.color(seen))  # (B, C)
        color = color / color.amax(1, keepdim=True)  # largest channel 1: no brightness left to hide a color in
        return (stroke + 1) * color[:, :, None, None] - 1  # stroke in [0, 1] x color, back to [-1, 1]


class PatchDiscriminator(nn.Module):
    """PatchGAN (Isola et al.): `num_layers` stride-2 4x4 convolutions (channels doubling from `width`), a
    stride-1 4x4 convolution and a 1-channel 4x4 convolution, giving one logit per overlapping patch
    (28x28 with 2 layers: a 5x5 map of logits with 34-pixel receptive fields, i.e. the whole digit, judged at
    25 offsets).

    Args:
        in_channels: channels of what it judges (pix2pix stacks input and output: twice the image channels).
        width: channels of the first layer.
        num_layers: stride-2 layers.
        norm: normalisation of all layers but the first ("spectral" wraps every convolution instead).
    """

    def __init__(self, in_channels: int, width: int = 32, num_layers: int = 2, norm: Norm = "instance") -> None:
        super().__init__()
        bias = norm != "batch"
        layers: list[nn.Module] = []
        c_in = in_channels
        for i in range(num_layers + 1):
            c_out = width * 2**i
            stride = 2 if i < num_layers else 1
            layers.append(_maybe_sn(nn.Conv2d(c_in, c_out, 4, stride, 1, bias=bias or i == 0), norm))
            if i > 0:
                layers.append(_norm(norm, c_out))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            c_in = c_out
        layers.append(_maybe_sn(nn.Conv2d(c_in, 1, 4, 1, 1), norm))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


def make_generator(kind: GeneratorKind, image_shape: tuple[int, int, int], width: int, num_blocks: int,
                   downsamplings: int, norm: Norm, warp: float = 0.0, output: GeneratorOutput = "tanh") -> nn.Module:
    """The generator called `kind` ("resnet", "unet" or "recolor"; `num_blocks` only applies to "resnet", `warp`
    only to "recolor", `output` only to "resnet" and "unet": the others ignore them, but a bad value is an error
    whichever the kind)."""
    _check_output(output)
    _check_warp(warp)
    if kind == "resnet":
        return ResnetGenerator(image_shape, width, num_blocks, downsamplings, norm, output)
    if kind == "unet":
        return UNetGenerator(image_shape, width, downsamplings, norm, output)
    if kind == "recolor":
        return RecolorGenerator(image_shape, width, downsamplings, norm, warp)
    raise ValueError(f"--model.generator must be 'resnet', 'unet' or 'recolor', got {kind!r}")
