"""Encoders and decoders of the VAE family (plain `nn.Module`s): an MLP pair (the source report's) and a
convolutional pair built from `networks.conv` plus one fully connected layer on each side (as JointVAE's).

Encoders map images (B, C, H, W) in [0, 1] to a flat vector of posterior parameters (B, out_features); the
VAE splits it into means, log-variances and categorical logits. Decoders map a latent vector (B, in_features)
to per-pixel Bernoulli logits (B, C, H, W) (the VAE applies the sigmoid, and its loss uses the logits for
numerical stability).
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import torch.nn as nn
from torch import Tensor

from lightning_models.networks.conv import ConvDecoder, ConvEncoder, Norm

Architecture = Literal["mlp", "conv"]
MLPNorm = Literal["batch", "none"]


def _hidden_layers(sizes: Sequence[int], batch_norm: bool) -> list[nn.Module]:
    """Fully connected ReLU layers of the given sizes (first = input), with BatchNorm before each ReLU if asked."""
    layers: list[nn.Module] = []
    for a, b in zip(sizes, sizes[1:]):
        layers.append(nn.Linear(a, b, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm1d(b))
        layers.append(nn.ReLU(inplace=True))
    return layers


class MLPEncoder(nn.Module):
    """Flattened image -> hidden ReLU layers -> `out_features` (the report's 2352 -> 512 -> 256 -> heads).

    Args:
        image_shape: (C, H, W) of the input.
        out_features: size of the output vector.
        hidden: widths of the hidden layers, first to last.
        norm: "none" (the report's) or "batch" (BatchNorm after each hidden layer: it keeps categorical
            posteriors from collapsing onto one category early in training).
    """

    def __init__(self, image_shape: tuple[int, int, int], out_features: int, hidden: Sequence[int] = (512, 256),
                 norm: MLPNorm = "none"):
        super().__init__()
        sizes = [math.prod(image_shape), *hidden]
        layers: list[nn.Module] = [nn.Flatten(), *_hidden_layers(sizes, norm == "batch")]
        layers.append(nn.Linear(sizes[-1], out_features))
        self.layers = nn.Sequential(*layers)

    def forward(self, images: Tensor) -> Tensor:
        return self.layers(images)


class MLPDecoder(nn.Module):
    """Latent vector -> hidden ReLU layers -> pixel logits (the report's 3 -> 256 -> 512 -> 2352).

    Args:
        in_features: size of the latent vector.
        image_shape: (C, H, W) of the output.
        hidden: widths of the hidden layers, first to last.
        norm: "none" (the report's) or "batch" (BatchNorm after each hidden layer).
    """

    def __init__(self, in_features: int, image_shape: tuple[int, int, int], hidden: Sequence[int] = (256, 512),
                 norm: MLPNorm = "none"):
        super().__init__()
        sizes = [in_features, *hidden]
        layers = _hidden_layers(sizes, norm == "batch")
        layers += [nn.Linear(sizes[-1], math.prod(image_shape)), nn.Unflatten(1, tuple(image_shape))]
        self.layers = nn.Sequential(*layers)

    def forward(self, latents: Tensor) -> Tensor:
        return self.layers(latents)


class ConvVAEEncoder(nn.Module):
    """`ConvEncoder` (stride-2 convolutions down to S0 x S0), then a hidden fully connected ReLU layer and a linear
    layer to `out_features`, as JointVAE's encoder.

    Args:
        image_shape: (C, H, W) of the input.
        out_features: size of the output vector.
        width: channels of the first convolution (doubling per layer).
        norm: normalisation of the convolutions (see `networks.conv.Norm`).
        hidden: width of the fully connected layer.
    """

    def __init__(self, image_shape: tuple[int, int, int], out_features: int, width: int = 32, norm: Norm = "batch",
                 hidden: int = 256):
        super().__init__()
        self.features = ConvEncoder(tuple(image_shape), width, norm)
        self.head = nn.Sequential(nn.Flatten(), *_hidden_layers([self.features.out_features, hidden], norm == "batch"),
                                  nn.Linear(hidden, out_features))

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.features(images))


class ConvVAEDecoder(nn.Module):
    """A hidden fully connected ReLU layer, then `ConvDecoder` (projection to S0 x S0, stride-2 transposed
    convolutions) emitting pixel logits. Without the hidden layer the first feature map is a ReLU of a *linear*
    function of the code, and a 3-d code learned color far more slowly (benchmarks/RESULTS.md, VAE section).

    Args:
        in_features: size of the latent vector.
        image_shape: (C, H, W) of the output.
        width: channels of the last transposed convolution's input.
        norm: normalisation of the hidden layers (see `networks.conv.Norm`).
        hidden: width of the fully connected layer.
    """

    def __init__(self, in_features: int, image_shape: tuple[int, int, int], width: int = 32, norm: Norm = "batch",
                 hidden: int = 256):
        super().__init__()
        self.fc = nn.Sequential(*_hidden_layers([in_features, hidden], norm == "batch"))
        self.upsample = ConvDecoder(hidden, tuple(image_shape), width, norm, output="none")

    def forward(self, latents: Tensor) -> Tensor:
        return self.upsample(self.fc(latents))


def build_encoder(architecture: Architecture, image_shape: tuple[int, int, int], out_features: int,
                  mlp_hidden: Sequence[int], conv_width: int, norm: Norm) -> nn.Module:
    """The encoder of `architecture` ("mlp" or "conv"); the MLP uses `mlp_hidden`, the conv net `conv_width`."""
    if architecture == "mlp":
        if norm not in ("batch", "none"):
            raise ValueError(f"--model.norm {norm!r} is not available for --model.architecture mlp: use batch or none")
        return MLPEncoder(image_shape, out_features, mlp_hidden, norm)
    if architecture == "conv":
        return ConvVAEEncoder(image_shape, out_features, conv_width, norm)
    raise ValueError(f"--model.architecture must be 'mlp' or 'conv', got {architecture!r}")


def build_decoder(architecture: Architecture, in_features: int, image_shape: tuple[int, int, int],
                  mlp_hidden: Sequence[int], conv_width: int, norm: Norm) -> nn.Module:
    """The decoder mirroring `build_encoder`'s (MLP hidden widths reversed), emitting pixel logits."""
    if architecture == "mlp":
        return MLPDecoder(in_features, image_shape, tuple(reversed(list(mlp_hidden))), norm)
    if architecture == "conv":
        return ConvVAEDecoder(in_features, image_shape, conv_width, norm)
    raise ValueError(f"--model.architecture must be 'mlp' or 'conv', got {architecture!r}")
