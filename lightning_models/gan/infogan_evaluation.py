"""What InfoGAN's codes are checked with: traversal grids (one per code), the unsupervised class accuracy of a
categorical code, and the callback that logs the traversals during training."""

from __future__ import annotations

from typing import Any, Callable

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_only
from torch import Tensor
from torchvision.utils import make_grid

from lightning_models.callbacks import SampleGrid, publish_grid


def code_traversal(decode: Callable[[Tensor], Tensor], latents: Tensor, columns: slice, values: Tensor) -> Tensor:
    """A grid (3, H', W'): one row per row of `values` (R, width), one column per latent of `latents` (M, L);
    each image is its column's latent with `latents[:, columns]` set to its row's values, decoded to [0, 1].

    Categorical code: `values` = the one-hot rows (eye(k)); continuous code: a column of evenly spaced values.
    Everything but the code is fixed along a column, so a column shows what the code alone does.
    """
    rows, m = len(values), len(latents)
    grid_latents = latents.repeat(rows, 1)  # row r = rows r*m .. r*m + m - 1
    grid_latents[:, columns] = values.to(latents).repeat_interleave(m, dim=0)
    return make_grid(decode(grid_latents), nrow=m, padding=2, pad_value=1.0)


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


class CodeTraversals(SampleGrid):
    """InfoGAN pictures during training: every `every_n_steps` optimizer steps (and at the end), one traversal
    grid per code (`InfoGAN.traversals`; rows = categories or values, columns = fixed noise), logged under
    `samples/<name>` to every logger that takes images and written as `<run>/samples/<name>_step_XXXXXXX.png`.
    (SampleGrid's schedule, with traversals instead of samples.)

    Args:
        every_n_steps: interval in optimizer steps (Lightning's `global_step`; a batch is 2 steps).
        columns: fixed latents (columns) per grid.
        steps: values per continuous code (rows), evenly spaced in [-2, 2].
        seed: seed of the fixed latents.
    """

    def __init__(self, every_n_steps: int = 500, columns: int = 8, steps: int = 7, seed: int = 0) -> None:
        super().__init__(every_n_steps=every_n_steps, seed=seed)
        self.columns, self.steps = columns, steps

    @rank_zero_only
    def log_grid(self, trainer: pl.Trainer, pl_module: Any) -> None:
        rng = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        for name, grid in pl_module.traversals(self.columns, self.steps, generator=rng).items():
            publish_grid(trainer, name, grid, file_prefix=f"{name}_")
