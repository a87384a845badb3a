"""InfoGAN's networks: the DCGAN discriminator plus a Q head on the same body, so one body pass gives both the
real/fake logit and the estimate of the codes a fake was made from (Chen et al. 2016), and the DCGAN generator;
both optionally with the fully connected hidden layer of the paper's MNIST networks (`fc_width`)."""

from __future__ import annotations

import torch.nn as nn
from torch import Tensor

from lightning_models.networks.conv import Norm, _maybe_sn
from lightning_models.networks.dcgan import Discriminator, Generator

#: log-std of a learned Gaussian Q is kept in this range: a collapsing std would make the likelihood explode.
LOG_STD_RANGE = (-4.0, 2.0)


class QHead(nn.Module):
    """Body features (B, C', S0, S0) or (B, F) -> (categorical logits [(B, k) per code], mean (B, c), log-std (B, c) or
    None when the std is fixed).

    Args:
        in_features: size of the flattened features.
        categorical_codes: category count of each categorical code.
        continuous_codes: number of continuous codes.
        learn_std: also predict a log-std per continuous code (Gaussian log-likelihood with learned variance).
        hidden: width of the hidden layer.
    """

    def __init__(self, in_features: int, categorical_codes: tuple[int, ...], continuous_codes: int,
                 learn_std: bool, hidden: int = 128) -> None:
        super().__init__()
        self.categorical_codes = tuple(categorical_codes)
        self.continuous_codes = continuous_codes
        self.learn_std = learn_std
        outputs = sum(self.categorical_codes) + continuous_codes * (2 if learn_std else 1)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.LeakyReLU(0.2, inplace=True),
                                 nn.Linear(hidden, outputs))

    def forward(self, h: Tensor) -> tuple[list[Tensor], Tensor, Tensor | None]:
        out = self.net(h)
        logits = list(out[:, : sum(self.categorical_codes)].split(self.categorical_codes, dim=1))
        rest = out[:, sum(self.categorical_codes) :]
        mean = rest[:, : self.continuous_codes]
        log_std = rest[:, self.continuous_codes :].clamp(*LOG_STD_RANGE) if self.learn_std else None
        return logits, mean, log_std


def fully_connected(in_features: int, out_features: int, norm: Norm, activation: nn.Module) -> nn.Sequential:
    """Linear -> normalisation -> activation, the hidden layer of InfoGAN's MNIST networks. `norm` follows the
    convolutional layers' choice: "batch" is BatchNorm1d, "spectral" wraps the linear layer, "instance" and "none"
    add nothing (instance norm has no meaning for a vector)."""
    return nn.Sequential(nn.Flatten(), _maybe_sn(nn.Linear(in_features, out_features, bias=norm != "batch"), norm),
                         nn.BatchNorm1d(out_features) if norm == "batch" else nn.Identity(), activation)


class InfoGenerator(Generator):
    """`Generator` (unconditional) with an optional fully connected hidden layer before its projection to the
    first feature map, as in InfoGAN's MNIST generator (FC 1024 - FC 7x7x128 - upconv 64 - upconv 1).

    Args:
        latent_dim: size of the generator's input (codes and noise).
        image_shape: (C, H, W) of the images.
        width: channels of the last hidden layer.
        norm: hidden-layer normalisation.
        fc_width: width of the fully connected layer (batch norm and ReLU after it, like the other hidden
            layers); 0 = none (the DCGAN generator).
    """

    def __init__(self, latent_dim: int, image_shape: tuple[int, int, int], width: int = 64, norm: Norm = "batch",
                 fc_width: int = 0) -> None:
        super().__init__(fc_width or latent_dim, image_shape, width, 0, norm)
        self.latent_dim = latent_dim
        self.fc = fully_connected(latent_dim, fc_width, norm, nn.ReLU(inplace=True)) if fc_width else None

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.decoder(self.fc(z) if self.fc is not None else z)


class InfoDiscriminator(Discriminator):
    """`Discriminator` (unconditional) with a `QHead` on its body: `forward` is the plain logit, `with_codes`
    gives (logits (B,), Q's output) from one body pass. The Q head is a submodule, so the discriminator's
    optimizer trains it. With `fc_width`, a fully connected layer follows the convolutions and both heads read
    its output (InfoGAN's MNIST discriminator: conv 64 - conv 128 - FC 1024, then the D and Q heads).

    Args:
        image_shape: (C, H, W) of the images.
        categorical_codes: category count of each categorical code.
        continuous_codes: number of continuous codes.
        learn_std: Q predicts a log-std per continuous code.
        width: channels of the first convolution.
        norm: normalisation of the body (see `Discriminator`).
        minibatch_std: see `Discriminator`.
        q_hidden: width of the Q head's hidden layer.
        fc_width: width of the fully connected layer after the convolutions (normalised as they are, LeakyReLU
            0.2); 0 = none. Not combinable with `minibatch_std` (which needs the feature map).
    """

    def __init__(self, image_shape: tuple[int, int, int], categorical_codes: tuple[int, ...],
                 continuous_codes: int, learn_std: bool, width: int = 64, norm: Norm = "spectral",
                 minibatch_std: bool = False, q_hidden: int = 128, fc_width: int = 0) -> None:
        if fc_width and minibatch_std:
            raise ValueError("--model.fc_width and --model.minibatch_std cannot be combined: the batch spread is "
                             "computed on the feature map that the fully connected layer replaces; set one of them off")
        super().__init__(image_shape, width, 0, norm, minibatch_std)
        features = self.body.out_features
        self.fc = None
        if fc_width:
            self.fc = fully_connected(features, fc_width, norm, nn.LeakyReLU(0.2, inplace=True))
            self.head = _maybe_sn(nn.Linear(fc_width, 1), norm)
            features = fc_width
        self.q_head = QHead(features, categorical_codes, continuous_codes, learn_std, q_hidden)

    def features(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        """The body's feature map (B, C', S0, S0), or the fully connected layer's output (B, fc_width) (unconditional:
        `labels` is unused)."""
        h = self.body(images)
        return self.fc(h) if self.fc is not None else h

    def with_codes(self, images: Tensor, q_detached: bool = False
                   ) -> tuple[Tensor, tuple[list[Tensor], Tensor, Tensor | None]]:
        """(logits (B,), Q's output) from one body pass; `q_detached`: Q reads the features detached, so a loss on
        its output trains the Q head but not the shared body (nor anything before it)."""
        h = self.features(images)  # (B, C', S0, S0), or (B, fc_width) with the fc layer; shared by both heads
        return self.logits(h), self.q_head(h.detach() if q_detached else h)
