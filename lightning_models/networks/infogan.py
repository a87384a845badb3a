"""InfoGAN's discriminator: the DCGAN discriminator plus a Q head on the same body, so one body pass gives both
the real/fake logit and the estimate of the codes a fake was made from (Chen et al. 2016)."""

from __future__ import annotations

import torch.nn as nn
from torch import Tensor

from lightning_models.networks.conv import Norm
from lightning_models.networks.dcgan import Discriminator

#: log-std of a learned Gaussian Q is kept in this range: a collapsing std would make the likelihood explode.
LOG_STD_RANGE = (-4.0, 2.0)


class QHead(nn.Module):
    """Body feature map (B, C', S0, S0) -> (categorical logits [(B, k) per code], mean (B, c), log-std (B, c) or
    None when the std is fixed).

    Args:
        in_features: size of the flattened feature map.
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


class InfoDiscriminator(Discriminator):
    """`Discriminator` (unconditional) with a `QHead` on its body: `forward` is the plain logit, `with_codes`
    gives (logits (B,), Q's output) from one body pass. The Q head is a submodule, so the discriminator's
    optimizer trains it.

    Args:
        image_shape: (C, H, W) of the images.
        categorical_codes: category count of each categorical code.
        continuous_codes: number of continuous codes.
        learn_std: Q predicts a log-std per continuous code.
        width: channels of the first convolution.
        norm: normalisation of the body (see `Discriminator`).
        minibatch_std: see `Discriminator`.
        q_hidden: width of the Q head's hidden layer.
    """

    def __init__(self, image_shape: tuple[int, int, int], categorical_codes: tuple[int, ...],
                 continuous_codes: int, learn_std: bool, width: int = 64, norm: Norm = "spectral",
                 minibatch_std: bool = False, q_hidden: int = 128) -> None:
        super().__init__(image_shape, width, 0, norm, minibatch_std)
        self.q_head = QHead(self.body.out_features, categorical_codes, continuous_codes, learn_std, q_hidden)

    def with_codes(self, images: Tensor) -> tuple[Tensor, tuple[list[Tensor], Tensor, Tensor | None]]:
        h = self.features(images)  # (B, C', S0, S0), shared by both heads
        return self.logits(h), self.q_head(h)
