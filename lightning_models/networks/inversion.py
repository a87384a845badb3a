"""The inversion encoder: image -> a generator's latent vector (the discriminator's convolutional body, then a
linear head)."""

from __future__ import annotations

import torch.nn as nn
from torch import Tensor

from lightning_models.networks.conv import ConvEncoder, Norm


class LatentEncoder(nn.Module):
    """Images (B, C, H, W) in [-1, 1] -> latents (B, latent_dim).

    Args:
        image_shape: (C, H, W) of the images.
        latent_dim: size of the generator's latent vector.
        width: channels of the first convolution, doubling each layer.
        norm: normalisation of the convolutions ("batch" trains fastest; the generator is frozen, so no
            adversarial game needs spectral norm here).
    """

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int, width: int = 64,
                 norm: Norm = "batch") -> None:
        super().__init__()
        self.body = ConvEncoder(image_shape, width, norm)
        self.head = nn.Linear(self.body.out_features, latent_dim)

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.body(images).flatten(1))
