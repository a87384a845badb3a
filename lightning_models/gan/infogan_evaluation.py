"""What InfoGAN's codes are checked with: traversal grids (one per code) and the callback that logs them during
training (the class accuracy of a categorical code is `metrics.clustering`)."""

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
