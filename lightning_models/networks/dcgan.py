"""DCGAN generator and discriminator, optionally conditioned on a class label.

The generator takes the label as a learned embedding concatenated to the noise. The discriminator takes it in
one or both of two ways (`condition`): a projection head (Miyato & Koyama 2018), logit = w . h + <embed(y), h>,
and a learned H x W label map as an extra input channel (the conditional GAN of Mirza & Osindero as the common
tutorials write it), which conditions every layer from the first one.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor
from torch.nn.utils.parametrizations import spectral_norm

from typing import Literal

from lightning_models.networks.conv import ConvDecoder, ConvEncoder, Norm

Condition = Literal["projection", "concat", "both"]


class Generator(nn.Module):
    """z (B, latent_dim) [+ labels (B,)] -> images (B, C, H, W) in [-1, 1].

    Args:
        latent_dim: size of the noise vector.
        image_shape: (C, H, W) of the images.
        width: channels of the last hidden layer (DCGAN's 64).
        num_classes: classes of the label condition; 0 = unconditional.
        norm: hidden-layer normalisation.
        label_dim: size of the learned label code concatenated to the noise (None = latent_dim).
    """

    def __init__(self, latent_dim: int, image_shape: tuple[int, int, int], width: int = 64,
                 num_classes: int = 0, norm: Norm = "batch", label_dim: int | None = None) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        embed_dim = (label_dim or latent_dim) if num_classes else 0
        self.embed = nn.Embedding(num_classes, embed_dim) if num_classes else None
        self.decoder = ConvDecoder(latent_dim + embed_dim, image_shape, width, norm, output="tanh")

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(labels)], dim=1)
        return self.decoder(z)


def batch_spread(h: Tensor) -> Tensor:
    """The minibatch-std map (S0, S0) of a feature map h (B, C', S0, S0): the mean over channels of each feature's
    std across the batch (Karras et al. 2018)."""
    return h.float().std(dim=0, unbiased=False).mean(dim=0).to(h.dtype)


class Discriminator(nn.Module):
    """images (B, C, H, W) in [-1, 1] [+ labels (B,)] -> logits (B,).

    Args:
        image_shape: (C, H, W) of the images.
        width: channels of the first convolution.
        num_classes: classes of the label condition (projection head); 0 = unconditional.
        norm: "spectral" (default; stable with every loss, including wgan_gp), "batch" (DCGAN), "instance", "none".
        minibatch_std: append the batch's feature standard deviation as one more channel before the head
            (Karras et al. 2018), so D can see a batch that lacks variety: the cheap cure for the generator
            ignoring its noise (mode collapse), which D judging images one by one cannot detect.
        condition: how the label enters (with num_classes): "projection" head, "concat": a label map as an extra input channel, "both".
        class_head: also a linear head on the last feature map that predicts the class (AC-GAN's auxiliary
            classifier, `classify`); needs num_classes.
    """

    def __init__(self, image_shape: tuple[int, int, int], width: int = 64, num_classes: int = 0,
                 norm: Norm = "spectral", minibatch_std: bool = False, condition: Condition = "projection",
                 class_head: bool = False) -> None:
        super().__init__()
        if condition not in ("projection", "concat", "both"):
            raise ValueError(f"--model.discriminator_condition must be projection, concat or both, got {condition!r}")
        channels, height, width_px = image_shape
        self.label_map = None
        if num_classes and condition in ("concat", "both"):
            self.label_map = nn.Embedding(num_classes, height * width_px)
            image_shape = (channels + 1, height, width_px)
        self.body = ConvEncoder(image_shape, width, norm)
        self.minibatch_std = minibatch_std
        channels = self.body.out_shape[0]
        base = self.body.out_shape[1]
        head = nn.Linear(self.body.out_features + (base * base if minibatch_std else 0), 1)
        self.head = spectral_norm(head) if norm == "spectral" else head
        embed = nn.Embedding(num_classes, channels) if num_classes and condition != "concat" else None
        self.embed = spectral_norm(embed) if embed is not None and norm == "spectral" else embed
        self.class_head = None
        if class_head:
            if not num_classes:
                raise ValueError("an auxiliary class head (--model.class_weight > 0) needs a conditional GAN "
                                 "(--model.conditional true) on labelled data")
            classifier = nn.Linear(self.body.out_features, num_classes)
            self.class_head = spectral_norm(classifier) if norm == "spectral" else classifier

    def features(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        """Last feature map (B, C', S0, S0); InfoGAN-style heads can share it."""
        if self.label_map is not None:
            images = torch.cat([images, self.label_map(labels).view(-1, 1, *images.shape[2:])], dim=1)
        return self.body(images)

    def forward(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.logits(self.features(images, labels), labels)

    def classify(self, h: Tensor) -> Tensor:
        """Class logits (B, num_classes) of the auxiliary class head from `features`' map h."""
        return self.class_head(h.flatten(1))

    def logits(self, h: Tensor, labels: Tensor | None = None) -> Tensor:
        """Logits (B,) from `features`' map h (B, C', S0, S0); a head sharing the body calls both parts."""
        flat = h.flatten(1)
        if self.minibatch_std:
            flat = torch.cat([flat, batch_spread(h).flatten().expand(h.shape[0], -1)], dim=1)  # same for every row
        logits = self.head(flat).squeeze(1)
        if self.embed is not None:
            logits = logits + (self.embed(labels) * h.sum(dim=(2, 3))).sum(dim=1)
        return logits
