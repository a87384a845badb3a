"""Clustering accuracy: how well clusters (categories of a code or latent variable) predict classes, from a
confusion matrix of counts. Used by InfoGAN's class accuracy and the VAE's digit clustering."""

from __future__ import annotations

import torch
from torch import Tensor


def greedy_assignment(confusion: Tensor) -> Tensor:
    """The class given to each of the K clusters of `confusion` (K clusters, C classes) of counts, one distinct
    class per cluster, by greedy assignment (the largest remaining count first); -1 for clusters left over when
    K > C."""
    remaining = confusion.double().clone()
    assignment = torch.full((confusion.shape[0],), -1, dtype=torch.long, device=confusion.device)
    for _ in range(min(confusion.shape)):
        row, col = divmod(int(remaining.argmax()), confusion.shape[1])
        assignment[row] = col
        remaining[row, :] = -1
        remaining[:, col] = -1
    return assignment


def cluster_accuracy(confusion: Tensor) -> dict[str, Tensor]:
    """Accuracy of predicting classes from clusters, given `confusion` (K clusters, C classes) of counts.

    - `one_to_one`: each cluster gets a distinct class (`greedy_assignment`). Never above the best assignment
      (Hungarian), and equal to it when each cluster's largest count is also the largest of its class. Clusters
      left over when K > C count as wrong.
    - `majority`: each cluster gets its most frequent class (classes may repeat; cluster purity).
    """
    counts = confusion.double()
    total = counts.sum().clamp_min(1)
    majority = counts.max(dim=1).values.sum() / total
    assignment = greedy_assignment(counts)
    clusters = (assignment >= 0).nonzero().flatten()
    matched = counts[clusters, assignment[clusters]].sum()
    return {"one_to_one": (matched / total).float(), "majority": majority.float()}


def cluster_table(confusion: Tensor, cluster_name: str = "category", class_name: str = "class") -> str:
    """`confusion` (K clusters, C classes) as text: one row per cluster with its counts per class, its size, the
    class `greedy_assignment` gives it and the fraction of the cluster that class is. Shows which classes a code
    merges or splits, which the accuracy alone does not."""
    counts = confusion.long().cpu()
    assignment = greedy_assignment(counts)
    width = max(5, len(str(int(counts.max()))) + 1)
    header = (f"{cluster_name:>9} | " + "".join(f"{c:>{width}}" for c in range(counts.shape[1]))
              + f" |  size -> {class_name} (share)")
    lines = [f"{class_name} counts per {cluster_name} (rows) and the one-to-one mapping", header, "-" * len(header)]
    for k, row in enumerate(counts):
        size = int(row.sum())
        target = int(assignment[k])
        share = f"{target} ({int(row[target]) / size:.2f})" if target >= 0 and size else "-"
        lines.append(f"{k:>9} | " + "".join(f"{int(v):>{width}}" for v in row) + f" | {size:>5} -> {share}")
    return "\n".join(lines)
