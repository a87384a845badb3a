"""Small fully connected networks on vectors: the latent GAN's generator and discriminator and the few-label
classifier's head. A label condition is a one-hot vector concatenated to the input (the source report's cGAN),
or, for a critic, a projection (Miyato & Koyama 2018): logit = w . h + <embed(y), h> on the last hidden layer h."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.nn.utils.parametrizations import spectral_norm


class MLP(nn.Module):
    """x (B, in_features) [+ labels (B,) as one-hot] -> (B, out_features).

    Args:
        in_features: size of the input vector.
        out_features: size of the output (1 for a discriminator: the output is then squeezed to (B,)).
        hidden: widths of the hidden layers.
        num_classes: classes of the one-hot label condition; 0 = unconditional.
        activation: "relu" or "leaky_relu" (0.2, for discriminators).
        spectral: spectral normalisation of every linear layer (stable discriminators).
        dropout: dropout after every hidden layer.
        condition: "concat" (one-hot label concatenated to the input) or "projection" (critics only:
            out_features == 1; a far stronger condition than concatenation).
    """

    def __init__(self, in_features: int, out_features: int, hidden: Sequence[int] = (256, 256), num_classes: int = 0,
                 activation: str = "relu", spectral: bool = False, dropout: float = 0.0,
                 condition: str = "concat") -> None:
        super().__init__()
        if condition not in ("concat", "projection") or (condition == "projection" and out_features != 1):
            raise ValueError(f"MLP condition must be 'concat', or 'projection' with out_features 1; got {condition!r}")
        self.num_classes = num_classes
        self.concat_classes = num_classes if condition == "concat" else 0
        self.out_features = out_features
        act = {"relu": lambda: nn.ReLU(inplace=True), "leaky_relu": lambda: nn.LeakyReLU(0.2, inplace=True)}[activation]
        wrap = spectral_norm if spectral else (lambda layer: layer)
        layers: list[nn.Module] = []
        width = in_features + self.concat_classes
        for h in hidden:
            layers += [wrap(nn.Linear(width, h)), act()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        self.body = nn.Sequential(*layers)
        self.out = wrap(nn.Linear(width, out_features))
        self.embed = wrap(nn.Embedding(num_classes, width)) if num_classes and condition == "projection" else None

    def features(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """The last hidden layer's activations (B, hidden[-1])."""
        if self.concat_classes:
            x = torch.cat([x, F.one_hot(labels, self.num_classes).to(x)], dim=1)
        return self.body(x)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        hidden = self.features(x, labels)
        out = self.out(hidden)
        if self.embed is not None:
            out = out + (self.embed(labels) * hidden).sum(1, keepdim=True)
        return out.squeeze(1) if self.out_features == 1 else out
