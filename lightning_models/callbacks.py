"""Shared mechanics as callbacks that work with any logger: sample grids during training, image writing for
`predict`, and checkpoints in one folder per run."""

from __future__ import annotations

import glob
import os
import time
import warnings
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter, ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_only
from torch import Tensor
from torchvision.utils import make_grid, save_image


def log_images(trainer: pl.Trainer, key: str, grid: Tensor, step: int) -> None:
    """Sends one image grid (C, H, W) in [0, 1] to every logger that takes images (W&B, TensorBoard)."""
    for logger in trainer.loggers:
        name = type(logger).__name__
        if name == "WandbLogger":
            logger.log_image(key=key, images=[grid.float().cpu()], step=step)
        elif name == "TensorBoardLogger":
            logger.experiment.add_image(key, grid.float().cpu(), global_step=step)


def publish_grid(trainer: pl.Trainer, name: str, grid: Tensor, file_prefix: str = "") -> None:
    """Writes a training-time grid as `<run>/samples/<file_prefix>step_XXXXXXX.png` and logs it as
    `samples/<name>` to every logger that takes images."""
    folder = os.path.join(run_dir(trainer) or trainer.default_root_dir, "samples")
    os.makedirs(folder, exist_ok=True)
    save_image(grid, os.path.join(folder, f"{file_prefix}step_{trainer.global_step:07d}.png"))
    log_images(trainer, f"samples/{name}", grid, trainer.global_step)


def ensure_writable(folder: str, what: str, fix: str) -> None:
    """Creates `folder` and checks a file can be written there; otherwise one PermissionError naming it and `fix`."""
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, f".write_test_{os.getpid()}")
        open(probe, "w").close()
        os.remove(probe)
    except OSError as err:
        raise PermissionError(f"cannot write {what} to {folder!r} ({err.strerror}): {fix}") from err


class SampleGrid(pl.Callback):
    """Logs a grid of samples under `samples/grid` every `every_n_steps` optimizer steps, and writes it as
    `<run>/samples/step_XXXXXXX.png`. The noise is fixed (from `seed`) so grids show progress, not noise;
    conditional models get one row per class.

    Args:
        every_n_steps: interval in optimizer steps (Lightning's `global_step`).
        num_samples: images per grid (for conditional models, rounded to a multiple of the classes).
        seed: seed of the fixed noise.
    """

    def __init__(self, every_n_steps: int = 500, num_samples: int = 64, seed: int = 0) -> None:
        self.every_n_steps = every_n_steps
        self.num_samples = num_samples
        self.seed = seed
        self._last = -1

    def _labels(self, pl_module: Any) -> Tensor | None:
        if not getattr(pl_module, "conditional", False):
            return None
        per_class = max(1, self.num_samples // pl_module.num_classes)
        return torch.arange(pl_module.num_classes, device=pl_module.device).repeat_interleave(per_class)

    @rank_zero_only
    def log_grid(self, trainer: pl.Trainer, pl_module: Any) -> None:
        labels = self._labels(pl_module)
        n = len(labels) if labels is not None else self.num_samples
        rng = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        images = pl_module.sample(n, labels, generator=rng)
        nrow = n // pl_module.num_classes if labels is not None else int(n**0.5)
        publish_grid(trainer, "grid", make_grid(images, nrow=nrow, padding=2, pad_value=1.0))

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        bucket = trainer.global_step // self.every_n_steps
        if bucket != self._last:
            self._last = bucket
            self.log_grid(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.log_grid(trainer, pl_module)


class ImageWriter(BasePredictionWriter):
    """Writes what `predict_step` returns, `{name: images (B, C, H, W) in [0, 1]}`, as one grid per name and
    batch: `<output_dir>/<name>/batch_XXXX.png`.

    Args:
        output_dir: folder for the images (default: `<default_root_dir>/predictions`).
        nrow: images per grid row.
    """

    def __init__(self, output_dir: str | None = None, nrow: int = 8) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = output_dir
        self.nrow = nrow

    def folder(self, trainer: pl.Trainer) -> str:
        return self.output_dir or os.path.join(trainer.default_root_dir, "predictions")

    def on_predict_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        ensure_writable(self.folder(trainer), "predictions", "pass a writable folder as the ImageWriter callback's "
                        "output_dir (--trainer.callbacks.output_dir) or fix its permissions")

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        tag = f"batch_{batch_idx:04d}_rank{trainer.global_rank}" if trainer.world_size > 1 else f"batch_{batch_idx:04d}"
        for name, images in prediction.items():
            folder = os.path.join(self.folder(trainer), name)
            os.makedirs(folder, exist_ok=True)
            save_image(images.float(), os.path.join(folder, f"{tag}.png"), nrow=self.nrow, padding=2, pad_value=1.0)


# Lightning warns that a mid-epoch checkpoint of a manual-optimization model holds the weights after the batch's
# optimizer steps. That is exactly the state a resume needs (tests/test_training.py checks the resume is exact).
warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization and every_n_train_steps")

# --- one folder per run -------------------------------------------------------------------------------------------
RUN_DIR_ATTR = "_generative_run_dir"


def run_dir(trainer: pl.Trainer) -> str | None:
    """The current run's folder `<default_root_dir>/<run>` (set by `RunCheckpoint`), or None before fit."""
    return getattr(trainer, RUN_DIR_ATTR, None)


def find_last_checkpoint(root: str) -> str | None:
    """The newest `<root>/<run>/checkpoints/last.ckpt`, by modification time."""
    found = glob.glob(os.path.join(root, "*", "checkpoints", "last.ckpt"))
    return max(found, key=os.path.getmtime) if found else None


def run_dir_of_checkpoint(root: str, ckpt_path: str | None) -> str | None:
    """`<root>/<run>` when `ckpt_path` is a checkpoint of a run under `root`, so resuming continues that run."""
    if not ckpt_path:
        return None
    folder = os.path.dirname(os.path.abspath(ckpt_path))
    if os.path.basename(folder) == "checkpoints" and os.path.dirname(os.path.dirname(folder)) == os.path.abspath(root):
        return os.path.dirname(folder)
    return None


class RunCheckpoint(ModelCheckpoint):
    """`ModelCheckpoint` that saves `last.ckpt` (always) into `<default_root_dir>/<run>/checkpoints/`, one folder
    per run (`run` = start time), so a new run never overwrites a finished one and `--ckpt_path last` finds the
    newest run. Resuming from a run's checkpoint keeps writing into that run's folder, replacing its `last.ckpt`
    (no `last-v1.ckpt` versions: the folder belongs to this run). All ModelCheckpoint options apply
    (`monitor`, `every_n_train_steps`, ...)."""

    def __init__(self, *args: Any, save_last: bool = True, enable_version_counter: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(*args, save_last=save_last, enable_version_counter=enable_version_counter, **kwargs)
        self.resume_from: str | None = None  # set by the CLI before fit

    def setup(self, trainer: pl.Trainer, pl_module: Any, stage: str) -> None:
        if self.dirpath is None and stage == "fit":
            folder = run_dir_of_checkpoint(trainer.default_root_dir, self.resume_from)
            if folder is None:
                folder = os.path.join(os.path.abspath(trainer.default_root_dir), time.strftime("%Y%m%d-%H%M%S"))
                if trainer.is_global_zero:
                    base, i = folder, 1
                    while os.path.exists(folder):
                        folder, i = f"{base}-{i}", i + 1
            if trainer.is_global_zero:  # fail now, not when the first checkpoint is due
                ensure_writable(os.path.join(folder, "checkpoints"), "the run's checkpoints",
                                "set --trainer.default_root_dir to a writable folder")
            folder = trainer.strategy.broadcast(folder)
            setattr(trainer, RUN_DIR_ATTR, folder)
            self.dirpath = os.path.join(folder, "checkpoints")
        super().setup(trainer, pl_module, stage)

    # --- the final weights -------------------------------------------------------------------------------------
    # `last.ckpt` holds the final weights of a finished run. ModelCheckpoint saves only at its intervals
    # (`every_n_train_steps`, ...) and, at the very end, only when it never saved before, so a run whose
    # `max_steps` falls between two saves would leave `last.ckpt` at the previous save (and `test --ckpt_path last`
    # would score older weights). The final save is made where Lightning itself saves, so it resumes exactly:
    # after the last batch when the run stops mid-epoch, at the epoch's end when it stops there. (A checkpoint
    # written in `on_train_end` after an epoch's end resumes one epoch too far: Lightning finds that epoch's
    # batches done and skips it.) Runs stopped by an error get no final save, so a NaN never reaches it.
    @staticmethod
    def _stopping(trainer: pl.Trainer) -> bool:
        fit = trainer.fit_loop
        return (trainer.should_stop or 0 <= trainer.max_steps <= trainer.global_step
                or fit.max_epochs not in (None, -1) and fit.epoch_progress.current.processed >= fit.max_epochs)

    def _save_final(self, trainer: pl.Trainer) -> None:
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch and self._stopping(trainer):
            self._save_final(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._stopping(trainer):
            self._save_final(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self._save_final(trainer)  # any other way out (a time limit during validation, ...)
        super().on_train_end(trainer, pl_module)
