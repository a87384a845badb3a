"""Shared mechanics as callbacks that work with any logger: sample grids during training, image writing for
`predict`, and checkpoints in one folder per run."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from typing import Any
from weakref import proxy

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.callbacks import BasePredictionWriter, ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_only
from torch import Tensor
from torchvision.utils import make_grid, save_image


def image_pixels(grid: Tensor) -> np.ndarray:
    """The 8-bit pixels (H, W, C) of an image grid (C, H, W) (or (H, W)) in [0, 1], exactly as torchvision's
    `save_image` writes them: values rounded to the nearest of 0..255, a 1-channel grid made RGB.

    Loggers get these pixels, not the float grid: `wandb.Image` of a float tensor in [0, 1] writes an all-black
    PNG (wandb 0.31), and a PNG holds 8-bit pixels anyway, so W&B, TensorBoard and `<run>/samples/` show the
    same image."""
    grid = grid.detach().float().cpu()
    if grid.dim() == 2:
        grid = grid.unsqueeze(0)
    if grid.shape[0] == 1:
        grid = grid.expand(3, -1, -1)  # as make_grid does inside save_image
    return grid.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def save_pixels(pixels: np.ndarray, path: str) -> None:
    """Writes `image_pixels` as a PNG (the same file `save_image` writes for the grid)."""
    Image.fromarray(pixels).save(path)


def log_images(trainer: pl.Trainer, key: str, grid: Tensor | np.ndarray, step: int) -> None:
    """Sends one image to every logger that takes images (W&B, TensorBoard): a grid (C, H, W) in [0, 1], or its
    `image_pixels` (H, W, C) uint8. Both loggers receive the 8-bit pixels that `publish_grid` writes to disk."""
    loggers = [lg for lg in trainer.loggers if type(lg).__name__ in ("WandbLogger", "TensorBoardLogger")]
    if not loggers:
        return
    pixels = grid if isinstance(grid, np.ndarray) else image_pixels(grid)
    for logger in loggers:
        if type(logger).__name__ == "WandbLogger":
            logger.log_image(key=key, images=[pixels], step=step)
        else:
            logger.experiment.add_image(key, pixels, global_step=step, dataformats="HWC")


def publish_grid(trainer: pl.Trainer, name: str, grid: Tensor, file_prefix: str = "") -> None:
    """Writes a training-time grid as `<run>/samples/<file_prefix>step_XXXXXXX.png` and logs the same pixels as
    `samples/<name>` to every logger that takes images."""
    folder = os.path.join(run_dir(trainer) or trainer.default_root_dir, "samples")
    os.makedirs(folder, exist_ok=True)
    pixels = image_pixels(grid)
    save_pixels(pixels, os.path.join(folder, f"{file_prefix}step_{trainer.global_step:07d}.png"))
    log_images(trainer, f"samples/{name}", pixels, trainer.global_step)


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
    batch: `<folder>/<name>/batch_XXXX.png`, and prints the folder at the end.

    Args:
        output_dir: folder for the images. Default: a new folder per call, `<run>/predictions/<time>/` for a
            checkpoint of a run (`<run>/checkpoints/*.ckpt`), else `<default_root_dir>/predictions/<time>/`, so
            a second `predict` never mixes its files into the first one's.
        nrow: images per grid row.
    """

    def __init__(self, output_dir: str | None = None, nrow: int = 8) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = output_dir
        self.nrow = nrow
        self._folder: str | None = None

    def folder(self, trainer: pl.Trainer) -> str:
        """Where this `predict` writes (chosen in `on_predict_start`)."""
        return self._folder or self.output_dir or os.path.join(trainer.default_root_dir, "predictions")

    def on_predict_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        folder = self.output_dir
        if folder is None:
            base = os.path.join(run_dir(trainer) or checkpoint_run_dir(trainer.ckpt_path) or trainer.default_root_dir,
                                "predictions")
            folder = new_folder(base) if trainer.is_global_zero else None
            folder = trainer.strategy.broadcast(folder)
        ensure_writable(folder, "predictions", "pass a writable folder as the ImageWriter callback's "
                        "output_dir (--trainer.callbacks.output_dir) or fix its permissions")
        self._folder = folder

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        tag = f"batch_{batch_idx:04d}_rank{trainer.global_rank}" if trainer.world_size > 1 else f"batch_{batch_idx:04d}"
        for name, images in prediction.items():
            folder = os.path.join(self.folder(trainer), name)
            os.makedirs(folder, exist_ok=True)
            save_image(images.float(), os.path.join(folder, f"{tag}.png"), nrow=self.nrow, padding=2, pad_value=1.0)

    def on_predict_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if trainer.is_global_zero:
            print(f"predict: images written to {os.path.abspath(self.folder(trainer))}", file=sys.stderr)


def new_folder(base: str) -> str:
    """Creates and returns `<base>/<time>` (`-1`, `-2`, ... appended when that exists: two calls in a second)."""
    folder = os.path.join(base, time.strftime("%Y%m%d-%H%M%S"))
    try:
        os.makedirs(base, exist_ok=True)
    except OSError:
        return folder  # ensure_writable names the folder and the reason
    candidate, i = folder, 1
    while True:
        try:
            os.mkdir(candidate)
            return candidate
        except FileExistsError:
            candidate, i = f"{folder}-{i}", i + 1
        except OSError:
            return candidate


# `predict_step` returns images, not per-sample outputs: the writer never needs the batch indices that Lightning
# warns it cannot find in our BatchLoader.
warnings.filterwarnings("ignore", message="Couldn't infer the batch indices fetched from your dataloader")

# Lightning warns that a mid-epoch checkpoint of a manual-optimization model holds the weights after the batch's
# optimizer steps. That is exactly the state a resume needs (tests/test_training.py checks the resume is exact).
warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization and every_n_train_steps")

# --- one folder per run -------------------------------------------------------------------------------------------
RUN_DIR_ATTR = "_generative_run_dir"
#: Key of the W&B run (id, name, group, project) in checkpoints: later commands on the checkpoint join its group.
WANDB_RUN_KEY = "wandb_run"


def run_dir(trainer: pl.Trainer) -> str | None:
    """The current run's folder `<default_root_dir>/<run>` (set by `RunCheckpoint`; for test/predict, the folder of
    the run whose checkpoint is used), or None."""
    return getattr(trainer, RUN_DIR_ATTR, None)


def find_last_checkpoint(root: str) -> str | None:
    """The newest `<root>/<run>/checkpoints/last.ckpt`, by modification time."""
    found = glob.glob(os.path.join(root, "*", "checkpoints", "last.ckpt"))
    return max(found, key=os.path.getmtime) if found else None


def checkpoint_run_dir(ckpt_path: str | None) -> str | None:
    """`<run>` when `ckpt_path` is `<run>/checkpoints/<file>`, else None."""
    if not ckpt_path:
        return None
    folder = os.path.dirname(os.path.abspath(ckpt_path))
    return os.path.dirname(folder) if os.path.basename(folder) == "checkpoints" else None


def run_dir_of_checkpoint(root: str, ckpt_path: str | None) -> str | None:
    """`<root>/<run>` when `ckpt_path` is a checkpoint of a run under `root`, so resuming continues that run."""
    folder = checkpoint_run_dir(ckpt_path)
    return folder if folder and os.path.dirname(folder) == os.path.abspath(root) else None


class RunInterrupted(Exception):
    """Ends `fit` after a stop signal (Ctrl-C, SIGTERM, SLURM's requeue signal), once the batch it arrived in is
    done and `last.ckpt` saved. `cli.py` prints `message` and how to resume, and exits with 128 + the signal."""

    def __init__(self, signum: int, step: int, checkpoint: str | None, requeued: str = "",
                 rank_zero: bool = True) -> None:
        self.signum, self.step, self.checkpoint, self.rank_zero = signum, step, checkpoint, rank_zero
        saved = f"saved {checkpoint}" if checkpoint else "no checkpoint saved (save_last is off)"
        self.message = f"{signal.Signals(signum).name}: stopped at global step {step}, {saved}{requeued}"
        super().__init__(self.message)


def requeue_slurm_job() -> str:
    """Requeues this SLURM job, as Lightning's own SIGUSR1 handler does; returns what happened, for the message."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = f"{array_job}_{os.environ.get('SLURM_ARRAY_TASK_ID')}" if array_job else os.environ.get("SLURM_JOB_ID")
    try:
        result = subprocess.run(["scontrol", "requeue", str(job)], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"; requeueing SLURM job {job} failed ({err}): resubmit it"
    if result.returncode != 0:
        return f"; `scontrol requeue {job}` failed ({result.stderr.strip()}): resubmit it"
    return f"; SLURM job {job} requeued"


class RunCheckpoint(ModelCheckpoint):
    """`ModelCheckpoint` that saves `last.ckpt` (always) into `<default_root_dir>/<run>/checkpoints/`, one folder
    per run (`run` = start time), so a new run never overwrites a finished one and `--ckpt_path last` finds the
    newest run. Resuming from a run's checkpoint keeps writing into that run's folder, replacing its `last.ckpt`
    (no `last-v1.ckpt` versions: the folder belongs to this run). All ModelCheckpoint options apply
    (`monitor`, `every_n_train_steps`, ...).

    Every file is written beside its final name and renamed (`os.replace`), so a run killed while saving keeps the
    previous file whole. A stop signal during training (Ctrl-C, SIGTERM, or SLURM's requeue signal under
    Lightning's `SLURMEnvironment(auto_requeue=True)`) finishes the current batch, saves `last.ckpt` and ends fit
    with `RunInterrupted`; `--ckpt_path last` then resumes exactly. A second Ctrl-C stops at once, without saving.
    """

    def __init__(self, *args: Any, save_last: bool = True, enable_version_counter: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(*args, save_last=save_last, enable_version_counter=enable_version_counter, **kwargs)
        self.resume_from: str | None = None  # set by the CLI before fit
        self.received_signal: int | None = None  # the first stop signal this process received during training
        self._stop_signal: int | None = None  # the stop all ranks agreed on
        self._requeue_signal: int | None = None
        self._previous_handlers: dict[int, Any] = {}
        self._announce = False  # rank 0 says what it does with a signal
        self._stage = ""

    def setup(self, trainer: pl.Trainer, pl_module: Any, stage: str) -> None:
        self._stage = stage
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
                for stale in glob.glob(os.path.join(folder, "checkpoints", ".*.ckpt.*.tmp")):
                    os.remove(stale)  # left by a process killed while saving
            folder = trainer.strategy.broadcast(folder)
            setattr(trainer, RUN_DIR_ATTR, folder)
            self.dirpath = os.path.join(folder, "checkpoints")
        elif stage != "fit" and checkpoint_run_dir(self.resume_from):  # test/predict a run's checkpoint: its folder
            setattr(trainer, RUN_DIR_ATTR, checkpoint_run_dir(self.resume_from))
        with warnings.catch_warnings():
            if run_dir_of_checkpoint(trainer.default_root_dir, self.resume_from):  # resuming into its own folder
                warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
            super().setup(trainer, pl_module, stage)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # test/predict/validate save nothing: the fit's bookkeeping (best scores, paths) is of no use there, and
        # restoring it only warns that the dirpath changed.
        if self._stage == "fit":
            super().load_state_dict(state_dict)

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        """Records the run's W&B identity, so `test`/`predict`/a resumed fit on this checkpoint join its group."""
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        for logger in trainer.loggers if trainer.is_global_zero else []:
            if type(logger).__name__ == "WandbLogger" and not getattr(logger.experiment, "disabled", False):
                run = logger.experiment
                checkpoint[WANDB_RUN_KEY] = {"id": run.id, "name": run.name, "group": run.group,
                                             "project": run.project}

    # --- atomic writes ---------------------------------------------------------------------------------------------
    # Lightning's own save (fsspec `_atomic_save`) writes the file in the system's temporary folder and moves it
    # into place: a rename when that folder is on the checkpoint's file system, otherwise a copy (a cluster's
    # node-local /tmp and its shared run folders), which a kill can cut short, leaving a truncated last.ckpt. So
    # each file is saved under a temporary name beside its final one, flushed to disk, and renamed. (This mirrors
    # ModelCheckpoint._save_checkpoint of pytorch-lightning 2.6.)
    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        if "://" in str(filepath) and not str(filepath).startswith("file://"):
            return super()._save_checkpoint(trainer, filepath)  # remote storage: its own semantics
        folder, name = os.path.split(filepath)
        temporary = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
        try:
            trainer.save_checkpoint(temporary, self.save_weights_only)
            if trainer.is_global_zero:
                with open(temporary, "rb+") as f:
                    os.fsync(f.fileno())
                os.replace(temporary, filepath)
        finally:
            if trainer.is_global_zero and os.path.exists(temporary):
                os.remove(temporary)
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))

    # --- the final weights -------------------------------------------------------------------------------------
    # `last.ckpt` holds the final weights of a finished or interrupted run. ModelCheckpoint saves only at its
    # intervals (`every_n_train_steps`, ...) and, at the very end, only when it never saved before, so a run whose
    # `max_steps` falls between two saves would leave `last.ckpt` at the previous save (and `test --ckpt_path last`
    # would score older weights). The final save is made where Lightning itself saves, so it resumes exactly:
    # after the last batch when the run stops mid-epoch, at the epoch's end when it stops there. (A checkpoint
    # written in `on_train_end` after an epoch's end resumes one epoch too far: Lightning finds that epoch's
    # batches done and skips it.) Runs stopped by an error get no final save, so a NaN never reaches it.
    def _stopping(self, trainer: pl.Trainer) -> bool:
        fit = trainer.fit_loop
        return (self._interrupted(trainer) or trainer.should_stop or 0 <= trainer.max_steps <= trainer.global_step
                or fit.max_epochs not in (None, -1) and fit.epoch_progress.current.processed >= fit.max_epochs)

    def _save_final(self, trainer: pl.Trainer) -> None:
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        if self._stop_signal is not None:
            requeued = ""
            if self._stop_signal == self._requeue_signal and trainer.is_global_zero:
                requeued = requeue_slurm_job()  # the requeued job resumes from last.ckpt (configs/slurm)
            raise RunInterrupted(self._stop_signal, trainer.global_step, self.last_model_path or None, requeued,
                                 trainer.is_global_zero)

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
        self._restore_signal_handlers()
        self._save_final(trainer)  # any other way out (a time limit during validation, ...)
        super().on_train_end(trainer, pl_module)

    # --- stop signals ------------------------------------------------------------------------------------------
    # Lightning 2.6 on its own: SIGTERM sets `trainer.received_sigterm` and the loops raise `SIGTERMException` after
    # the batch, saving nothing; Ctrl-C raises KeyboardInterrupt wherever it lands (between the D and the G step, or
    # inside a save); under SLURM with auto_requeue, SIGUSR1 saves `hpc_ckpt_<n>.ckpt` from inside the signal
    # handler (in the middle of a batch, so not an exact resume) and requeues the job. During training these
    # handlers replace Lightning's (which come back at the end): a signal is only noted, and the batch end acts on
    # it. Lightning installs its handlers just before training, so ours go in at `on_train_start`.
    def on_train_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        super().on_train_start(trainer, pl_module)
        self.received_signal = self._stop_signal = None
        signals = [signal.SIGINT, signal.SIGTERM]
        environment = getattr(trainer._accelerator_connector, "cluster_environment", None)  # as Lightning reads it
        if type(environment).__name__ == "SLURMEnvironment" and environment.auto_requeue:
            self._requeue_signal = environment.requeue_signal or signal.SIGUSR1
            signals.append(self._requeue_signal)
        if threading.current_thread() is threading.main_thread():
            self._announce = trainer.is_global_zero
            for signum in signals:
                self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.received_signal is None:
            self.received_signal = signum
            if self._announce:  # os.write: print() may not be re-entered from a signal handler
                again = " (Ctrl-C again stops at once, without saving)" if signum == signal.SIGINT else ""
                os.write(2, f"\n{signal.Signals(signum).name}: finishing this batch, then saving last.ckpt and "
                            f"stopping{again}\n".encode())
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: Lightning's own shutdown (exit code 1), last.ckpt untouched

    def _interrupted(self, trainer: pl.Trainer) -> bool:
        """Whether a stop signal arrived, on any rank (checked at each batch end, on every rank alike)."""
        if self._stop_signal is None:
            if trainer.strategy.reduce_boolean_decision(self.received_signal is not None, all=False):
                self._stop_signal = self.received_signal or signal.SIGTERM  # (another rank received it)
        return self._stop_signal is not None

    def _restore_signal_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers = {}

    def on_exception(self, trainer: pl.Trainer, pl_module: Any, exception: BaseException) -> None:
        self._restore_signal_handlers()
        super().on_exception(trainer, pl_module, exception)

    def teardown(self, trainer: pl.Trainer, pl_module: Any, stage: str) -> None:
        self._restore_signal_handlers()
        super().teardown(trainer, pl_module, stage)
