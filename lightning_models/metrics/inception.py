"""FID and KID in Inception-v3's 2048-d pool features (torchmetrics), when the Inception weights can be had.

torchmetrics' Inception is torch-fidelity's port of the TF-slim graph that published FIDs use. It needs the
`torch-fidelity` package and its weights file, which it downloads on first use into torch's hub cache
(`~/.cache/torch/hub/checkpoints/`). Offline, or without the package, `make_inception_metrics` returns no metric
and one line saying why and how to get them (`INCEPTION_HELP`), so the metrics that need no download still run.

One Inception pass per image serves both scores: FID and KID share an extractor that passes computed features
through unchanged.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

WEIGHTS_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
               "weights-inception-2015-12-05-6726825d.pth")
INCEPTION_HELP = ("to get them: `pip install torch-fidelity` (in requirements.txt) and run once with network access "
                  "(the weights go to ~/.cache/torch/hub/checkpoints/), or download " + WEIGHTS_URL + " and pass "
                  "--model.inception_weights PATH")


class InceptionFeatures(nn.Module):
    """Images (B, C, H, W) in [0, 1] (1 or 3 channels, any size) -> Inception pool features (B, 2048) in float32.

    A (B, num_features) input is taken as features computed already, so FID and KID share one pass.

    Args:
        weights_path: torch-fidelity's Inception weights file (None: its hub cache, downloading if missing).
        network: a replacement feature network taking uint8 (B, 3, H, W) (tests use a tiny one).
    """

    def __init__(self, weights_path: str | None = None, network: nn.Module | None = None,
                 num_features: int = 2048) -> None:
        super().__init__()
        if network is None:
            from torchmetrics.image.fid import NoTrainInceptionV3

            network = NoTrainInceptionV3(name="inception-v3-compat", features_list=[str(num_features)],
                                         feature_extractor_weights_path=weights_path)
        self.network = network
        self.num_features = num_features

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        if images.dim() == 2 and images.shape[1] == self.num_features:
            return images.float()
        images = (images.float().clamp(0, 1) * 255).round().to(torch.uint8)  # what the TF graph was fed
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        with torch.autocast(images.device.type, enabled=False):
            return self.network(images).reshape(len(images), -1).float()


class InceptionScores(nn.Module):
    """FID and KID (mean and std over subsets) between real images and samples, in Inception features.

    `update(images, real)` with images in [0, 1]; `compute()` -> {"fid_inception", "kid_inception",
    "kid_inception_std"}. KID's subsets take `min(subset_size, samples on each side)` images.
    """

    def __init__(self, extractor: InceptionFeatures, subset_size: int = 1000) -> None:
        super().__init__()
        self.extractor = extractor
        self.subset_size = subset_size
        self.fid = FrechetInceptionDistance(feature=extractor)
        self.kid = KernelInceptionDistance(feature=extractor, subset_size=subset_size)

    def update(self, images: Tensor, real: bool) -> None:
        features = self.extractor(images)
        self.fid.update(features, real=real)
        self.kid.update(features, real=real)

    def compute(self) -> dict[str, Tensor]:
        sizes = [int(self.fid.real_features_num_samples), int(self.fid.fake_features_num_samples)]
        if min(sizes) < 2:
            raise RuntimeError(f"Inception FID/KID need at least 2 real and 2 generated images, got {sizes}")
        self.kid.subset_size = min(self.subset_size, *sizes)
        kid_mean, kid_std = self.kid.compute()
        return {"fid_inception": self.fid.compute().float(), "kid_inception": kid_mean.float(),
                "kid_inception_std": kid_std.float()}


def make_inception_metrics(weights_path: str | None = None) -> tuple[InceptionScores | None, str | None]:
    """(InceptionScores, None) when the Inception network loads, else (None, a one-line reason with the fix)."""
    try:
        extractor = InceptionFeatures(weights_path)
    except Exception as err:  # no torch-fidelity, no network, a bad weights file: all mean "not available"
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        return None, (f"test/fid_inception and test/kid_inception skipped: torchmetrics' Inception unavailable "
                      f"({type(err).__name__}: {reason}); {INCEPTION_HELP}.")
    return InceptionScores(extractor), None
