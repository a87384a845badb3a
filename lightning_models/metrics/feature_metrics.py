"""Fidelity and diversity of a sample set against a real set, both given as feature vectors (B, D).

- `precision_recall`: improved precision and recall (Kynkäänniemi et al. 2019). Each set's manifold is the union
  of balls around its points, each ball reaching the point's k-th nearest neighbour in its own set (k = 3 as in
  the paper). Precision is the fraction of samples inside the real manifold (fidelity), recall the fraction of
  real points inside the samples' manifold (diversity: a generator that repeats one image has recall near 0).
- `mean_pairwise_distance`: the mean distance between two different points of a set, the spread of the set. A
  sample set's spread over the real set's is the diversity ratio: 1 for a set like the data, 0 for one image.
- `kernel_distance`: KID (Bińkowski et al. 2018), torchmetrics' polynomial-kernel MMD averaged over subsets, on
  features computed already and with seeded subsets, so the score is repeatable.
- `frechet_distance`: torchmetrics' Fréchet distance of two feature sets.
- `LabelledFeatures`: a torchmetrics state of feature rows and their labels, gathered across DDP ranks.

Everything is chunked so 10,000 x 10,000 distance matrices never exist at once.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import poly_mmd
from torchmetrics.utilities import dim_zero_cat

CHUNK = 1024  # rows of a distance matrix computed at once (1024 x 10,000 float32 = 40 MB)


def _pairwise_chunks(a: Tensor, b: Tensor):
    """(start, distances (chunk, len(b))) for consecutive row chunks of a, in float32."""
    a, b = a.float(), b.float()
    for start in range(0, len(a), CHUNK):
        yield start, torch.cdist(a[start : start + CHUNK], b)


def knn_radii(features: Tensor, k: int = 3) -> Tensor:
    """(N,) distance of each row to its k-th nearest other row of the same set."""
    if len(features) <= k:
        raise ValueError(f"k-NN radii with k={k} need more than {k} points, got {len(features)}")
    radii = torch.empty(len(features), device=features.device)
    for start, dist in _pairwise_chunks(features, features):
        # the k+1 smallest include the point itself at distance 0
        radii[start : start + len(dist)] = dist.topk(k + 1, dim=1, largest=False).values[:, k]
    return radii


def _inside(points: Tensor, centres: Tensor, radii: Tensor) -> Tensor:
    """(len(points),) bool: the point lies in at least one ball (centre, radius)."""
    inside = torch.empty(len(points), dtype=torch.bool, device=points.device)
    for start, dist in _pairwise_chunks(points, centres):
        inside[start : start + len(dist)] = (dist <= radii[None, :]).any(dim=1)
    return inside


def precision_recall(real: Tensor, fake: Tensor, k: int = 3) -> tuple[Tensor, Tensor]:
    """(precision, recall) of samples `fake` (M, D) against `real` (N, D), improved k-NN version."""
    precision = _inside(fake, real, knn_radii(real, k)).float().mean()
    recall = _inside(real, fake, knn_radii(fake, k)).float().mean()
    return precision, recall


def mean_pairwise_distance(features: Tensor, max_points: int = 2000, seed: int = 0) -> Tensor:
    """Mean Euclidean distance between two different rows (of at most `max_points` rows, a seeded subset)."""
    n = len(features)
    if n < 2:
        raise ValueError(f"the mean pairwise distance needs at least 2 points, got {n}")
    if n > max_points:
        pick = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_points]
        features, n = features[pick.to(features.device)], max_points
    total = sum(float(dist.double().sum()) for _, dist in _pairwise_chunks(features, features))
    return torch.tensor(total / (n * (n - 1)))  # the diagonal adds 0


def kernel_distance(real: Tensor, fake: Tensor, subsets: int = 100, subset_size: int = 1000,
                    seed: int = 0) -> Tensor:
    """KID: the mean over `subsets` seeded random subsets of torchmetrics' `poly_mmd` (cubic kernel), with
    `subset_size` capped at the smaller set."""
    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise ValueError(f"KID needs at least 2 real and 2 generated points, got {len(real)} and {len(fake)}")
    gen = torch.Generator().manual_seed(seed)
    scores = [poly_mmd(real[torch.randperm(len(real), generator=gen)[:size].to(real.device)].double(),
                       fake[torch.randperm(len(fake), generator=gen)[:size].to(fake.device)].double())
              for _ in range(subsets)]
    return torch.stack(scores).mean().float()


class _Identity(torch.nn.Module):
    """A torchmetrics feature extractor for features computed already."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: Tensor) -> Tensor:
        return features


def frechet_distance(real: Tensor, fake: Tensor) -> Tensor:
    """Fréchet distance between two feature sets (N, D) and (M, D), as torchmetrics' FID computes it."""
    metric = FrechetInceptionDistance(feature=_Identity(real.shape[1])).to(real.device)
    metric.update(real.float(), real=True)
    metric.update(fake.float(), real=False)
    return metric.compute().float()


class LabelledFeatures(Metric):
    """Feature rows (B, D) with one label each (-1 = none), concatenated across updates and DDP ranks."""

    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("features", [], dist_reduce_fx="cat")
        self.add_state("labels", [], dist_reduce_fx="cat")

    def update(self, features: Tensor, labels: Tensor | None = None) -> None:
        if labels is None:
            labels = torch.full((len(features),), -1, dtype=torch.long, device=features.device)
        self.features.append(features.float())
        self.labels.append(labels.long().to(features.device))

    def compute(self) -> tuple[Tensor, Tensor]:
        """(features (N, D), labels (N,)) of everything accumulated on all ranks."""
        if isinstance(self.features, list) and not self.features:  # (after a DDP sync the states are tensors)
            return torch.zeros(0, 0), torch.zeros(0, dtype=torch.long)
        return dim_zero_cat(self.features), dim_zero_cat(self.labels)
