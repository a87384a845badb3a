"""DCGAN-style convolutional building blocks, sized from the image: the generator/decoder and the
discriminator/encoder of every model share these.

An image side S is S0 * 2**k with S0 in 4..7 (28 = 7 * 4, 32 = 4 * 8, 64 = 4 * 16): the decoder projects to an
S0 x S0 map and doubles k times; the encoder halves k times back to S0 x S0.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn
from torch import Tensor
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

Norm = Literal["batch", "instance", "spectral", "none"]
WeightInit = Literal["default", "dcgan"]


@torch.no_grad()
def init_weights(module: nn.Module, scheme: WeightInit) -> None:
    """Re-initialises `module`'s layers: "default" keeps PyTorch's initialisation; "dcgan" draws convolution and
    linear weights from N(0, 0.02) and normalisation scales from N(1, 0.02), with zero biases and shifts (Radford
    et al. 2016, used by DCGAN and InfoGAN). A spectrally normalised layer gets its unnormalised weight drawn.
    Label embeddings keep PyTorch's N(0, 1), the scale of the noise beside them: at N(0, 0.02) a conditional
    generator starts with a label code 50 times weaker than its noise and learned to ignore the label."""
    if scheme == "default":
        return
    if scheme != "dcgan":
        raise ValueError(f"--model.weight_init must be 'default' or 'dcgan', got {scheme!r}")
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            normalised = parametrize.is_parametrized(layer, "weight")
            weight = layer.parametrizations.weight.original if normalised else layer.weight
            weight.normal_(0.0, 0.02)
            if normalised:  # re-estimate the largest singular value of the new weight (15 iterations, as at wrapping)
                sn = layer.parametrizations.weight[0]
                sn._power_method(sn._reshape_weight_to_matrix(weight), 15)
        elif isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d, nn.InstanceNorm2d)) and layer.affine:
            layer.weight.normal_(1.0, 0.02)
        else:
            continue
        if getattr(layer, "bias", None) is not None:
            layer.bias.zero_()


def spatial_plan(size: int) -> tuple[int, int]:
    """(S0, k) with size == S0 * 2**k and 4 <= S0 <= 7; sizes that have none raise ValueError."""
    base, k = size, 0
    while base > 7 and base % 2 == 0:
        base, k = base // 2, k + 1
    if not 4 <= base <= 7 or k < 1:
        raise ValueError(f"image size {size} is not supported: it must be S0 * 2**k with S0 in 4..7 and k >= 1 "
                         "(e.g. 28, 32, 64, 128); resize the data with --data.image_size")
    return base, k


def _norm(kind: Norm, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.Identity()


def _maybe_sn(layer: nn.Module, kind: Norm) -> nn.Module:
    return spectral_norm(layer) if kind == "spectral" else layer


class ConvDecoder(nn.Module):
    """Vector (B, in_features) -> image (B, C, H, W): linear projection to S0 x S0, then k stride-2 transposed
    convolutions, channels halving from `width * 2**(k-1)` to `width`, then to C.

    Args:
        in_features: size of the input vector (latent, plus any condition).
        image_shape: (C, H, W) of the output; H == W.
        width: channels of the last hidden layer.
        norm: normalisation of hidden layers ("batch" as in DCGAN).
        output: "tanh" (images in [-1, 1]), "sigmoid" ([0, 1]) or "none" (logits).
    """

    def __init__(self, in_features: int, image_shape: tuple[int, int, int], width: int = 64, norm: Norm = "batch",
                 output: Literal["tanh", "sigmoid", "none"] = "tanh") -> None:
        super().__init__()
        channels, size = image_shape[0], image_shape[-1]
        base, k = spatial_plan(size)
        hidden = [width * 2 ** (k - 1 - i) for i in range(k)]  # channels at S0, 2*S0, ...
        self.start = (hidden[0], base, base)
        self.project = nn.Sequential(nn.Linear(in_features, hidden[0] * base * base, bias=norm != "batch"),
                                     nn.Unflatten(1, self.start), _norm(norm, hidden[0]), nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        for i in range(k):
            out = hidden[i + 1] if i + 1 < k else channels
            last = i + 1 == k
            layers.append(nn.ConvTranspose2d(hidden[i], out, 4, 2, 1, bias=last or norm != "batch"))
            if not last:
                layers += [_norm(norm, out), nn.ReLU(inplace=True)]
        layers.append({"tanh": nn.Tanh(), "sigmoid": nn.Sigmoid(), "none": nn.Identity()}[output])
        self.upsample = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.upsample(self.project(x))


class ConvEncoder(nn.Module):
    """Image (B, C, H, W) -> feature map (B, width * 2**(k-1), S0, S0) by k stride-2 convolutions with LeakyReLU.

    Args:
        image_shape: (C, H, W) of the input.
        width: channels of the first layer, doubling each layer.
        norm: normalisation of every layer but the first ("spectral" wraps every convolution instead).
    """

    def __init__(self, image_shape: tuple[int, int, int], width: int = 64, norm: Norm = "batch") -> None:
        super().__init__()
        channels, size = image_shape[0], image_shape[-1]
        base, k = spatial_plan(size)
        layers: list[nn.Module] = []
        in_ch = channels
        for i in range(k):
            out = width * 2**i
            layers.append(_maybe_sn(nn.Conv2d(in_ch, out, 4, 2, 1, bias=i == 0 or norm != "batch"), norm))
            if i > 0:
                layers.append(_norm(norm, out))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            in_ch = out
        self.layers = nn.Sequential(*layers)
        self.out_shape = (in_ch, base, base)
        self.out_features = in_ch * base * base

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)
