"""What every generative model of the collection shares: the `sample()` contract, label checks, the noise
source that makes runs (and resumed runs) reproducible, the non-finite-loss guard, and `cli.py predict`'s grids
(`cli.py test`'s classifier scores are `lightning_models.metrics.SampleScores`).

Subclasses implement `generate(n, labels, generator)` (images in [-1, 1] or [0, 1], see `output_range`) and
their training scheme; everything here is what truly every subclass uses.
"""

from __future__ import annotations

import math
import os
import zlib
from contextlib import contextmanager
from typing import Any, Collection, Iterator, Mapping

import pytorch_lightning as pl
import torch
from torch import Tensor


def linear_decay(epoch: int, start: int, length: int) -> float:
    """Learning-rate factor of `epoch` (0-based; or of a batch): 1 until `start`, then linearly down to 0 at
    `start + length` (CycleGAN's schedule); `length` <= 0 keeps it at 1."""
    if length <= 0:
        return 1.0
    return max(0.0, 1.0 - max(0, epoch - start) / length)


def _mean(values: list[Tensor | float]) -> Tensor | float:
    """The mean of one logged key's values (all tensors, or all Python numbers), as float32."""
    if isinstance(values[0], Tensor):
        return torch.stack([v.float() for v in values]).mean()
    return sum(values) / len(values)


class NonFiniteLossError(RuntimeError):
    """Raised before an optimizer step would apply a NaN/inf loss, so no checkpoint ever holds such weights."""


class TrainingModule(pl.LightningModule):
    """What every training scheme of the collection uses, generative or not: step-keyed noise (exact resume,
    per-rank draws) and the non-finite-loss guard."""

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets `_current_fx_name` (a string) around every hook call, about 40 times per training step;
        # nn.Module.__setattr__ would look it up among parameters, buffers and submodules each time (~5 us).
        if name == "_current_fx_name":
            self.__dict__[name] = value
        else:
            super().__setattr__(name, value)

    @contextmanager
    def eval_mode(self) -> Iterator[None]:
        """Eval mode inside the block (sampling, encoding), the previous mode restored after it."""
        was_training = self.training
        if was_training:  # already in eval mode: nothing to switch (a switch walks every submodule)
            self.eval()
        try:
            yield
        finally:
            if was_training:
                self.train()

    # --- reproducible noise -----------------------------------------------------------------------------------
    def noise_generator(self, seed: int, stream: str = "noise") -> torch.Generator:
        """A generator on this device seeded from (seed, rank, global_step).

        The training noise is a pure function of the step, so a resumed run draws exactly what the uninterrupted
        one drew, and DDP ranks draw different noise, with no RNG state to save in checkpoints. Each `stream`
        is its own generator object, so drawing from one (e.g. augmentation) in the middle of a step does not
        re-seed another (the step's latents)."""
        generators = self.__dict__.setdefault("_noise_generators", {})
        gen = generators.get(stream)
        if gen is None or gen.device != self.device:
            gen = generators[stream] = torch.Generator(device=self.device)
        step_seed = self._step_seed(seed)
        if stream != "noise":  # other streams draw other numbers (the "noise" seed is the one runs were made with)
            step_seed = (step_seed + zlib.crc32(stream.encode()) * 7_919) % 2**63
        gen.manual_seed(step_seed)
        return gen

    def _step_seed(self, seed: int) -> int:
        rank = self.trainer.global_rank if self._trainer is not None else 0
        return (seed * 1_000_003 + rank) * 998_244_353 + self.global_step

    def on_train_start(self) -> None:
        """Resumes the training loader's position even when `configure_optimizers` used
        `trainer.estimated_stepping_batches` (LR schedules): that builds the train loader before the checkpoint is
        restored, and Lightning 2.6 then never hands the loader its saved state, so a resumed run would restart the
        epoch's batch order. Loading the pending state here, before the first batch is drawn, fixes it. Subclasses
        overriding this hook call `super()` first."""
        self.__dict__.pop("_train_log_values", None)  # nothing left over from an earlier, interrupted fit
        loop = self.trainer.fit_loop
        if getattr(loop, "_combined_loader_states_to_load", None) and loop._combined_loader is not None:
            loop._load_combined_loader_states()

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Seeds torch's global RNG from (hparams.seed, rank, step) before each training batch, so randomness that
        is not drawn from `noise_generator` (dropout, augmentation) is also a function of the step: resumed runs
        repeat it exactly and ranks differ. Subclasses overriding this hook call `super()` first."""
        seed = self._step_seed(int(self.hparams.get("seed", 0))) % 2**63
        # Only the generators this module draws from: `torch.manual_seed` also queues lazy seeding (with a stack
        # trace each) for every uninitialised accelerator of a CUDA build, about 0.1-0.4 ms per step on a CPU.
        torch.default_generator.manual_seed(seed)
        if self.device.type == "cuda":
            torch.cuda.manual_seed(seed)
        elif self.device.type != "cpu":
            torch.manual_seed(seed)

    # --- training logs -----------------------------------------------------------------------------------------
    def log_train(self, metrics: Mapping[str, Tensor | float], prog_bar: Collection[str] = ()) -> None:
        """Records this training step's scalars; they reach Lightning as their mean over the steps since the last
        logger write (see `on_train_batch_end`), and the keys in `prog_bar` also go to the progress bar.

        Each `self.log` call walks Lightning's result collection, about 0.3 ms on a CPU: 5-10% of a small model's
        whole step with five logged values. Loggers only receive values every `trainer.log_every_n_steps` batches,
        so the values are only kept here (detached, on their device, no host sync, no arithmetic) and averaged
        and handed to `self.log` once per logger write. Nothing is lost: each logged point is the mean of every
        step since the previous one, which is a smoother curve than Lightning's single-step sample."""
        kept = self.__dict__.setdefault("_train_log_values", {})
        for name, value in metrics.items():
            values, bar = kept.setdefault(name, ([], False))
            values.append(value.detach() if isinstance(value, Tensor) else float(value))
            if not bar and name in prog_bar:
                kept[name] = (values, True)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Hands the means recorded by `log_train` to `self.log` when Lightning writes to its loggers after this
        batch (every `log_every_n_steps` batches), at the end of an epoch and of the run (`max_steps`), so the
        progress bar and `trainer.callback_metrics` also hold them after short runs. Subclasses overriding this
        hook call `super()`."""
        kept = self.__dict__.get("_train_log_values")
        if not kept:
            return
        trainer = self.trainer
        loop = trainer.fit_loop
        if not (trainer._logger_connector.should_update_logs or trainer.fast_dev_run
                or loop.epoch_loop.batch_progress.is_last_batch
                or 0 <= trainer.max_steps <= trainer.global_step):
            return
        for bar in (True, False):
            means = {name: _mean(values) for name, (values, on_bar) in kept.items() if on_bar == bar}
            if means:
                self.log_dict(means, prog_bar=bar)
        kept.clear()

    def on_before_backward(self, loss: Tensor) -> None:
        """Every automatic-optimization backward first checks its loss is finite. Manual-optimization schemes (the
        GAN and translation steps) check each named loss themselves before `manual_backward`, so a second check
        here would only add a device sync per step."""
        if self.automatic_optimization:
            self.check_finite(loss=loss)

    # --- checkpoints that say what they hold ------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Records the model class, so loading a checkpoint into another class fails with a clear message.
        Subclasses overriding this hook call `super()`."""
        from lightning_models.checkpoints import class_path

        checkpoint["model_class"] = class_path(type(self))

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: str | os.PathLike, map_location: Any = None,
                             hparams_file: str | None = None, strict: bool | None = None,
                             weights_only: bool | None = None, **kwargs: Any) -> Any:
        """Lightning's `load_from_checkpoint` (same arguments), taking a checkpoint file or a run root (its newest
        last.ckpt). Always `weights_only` (`weights_only=False` is ignored: checkpoints of this project hold
        tensors and plain data only). A file that is not a checkpoint of this class (empty, text, truncated,
        another model, an older layout, pickled code) is a one-line error naming it (`lightning_models.checkpoints`)."""
        from lightning_models.checkpoints import load_module

        return load_module(cls, checkpoint_path, map_location=map_location, hparams_file=hparams_file, strict=strict,
                           **kwargs)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """`nn.Module.load_state_dict`; with `strict`, weights that do not fit this model's (another model, or an
        older layout of this one) are a ValueError that says so, instead of torch's pages of key names."""
        if strict:
            from lightning_models.checkpoints import check_weight_names

            check_weight_names(self, state_dict)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def check_inputs(self, stage: str) -> None:
        """Reads and checks the files `stage` ("fit", "test", ...) will need besides the data and `--ckpt_path`
        (e.g. the classifier of `test`). `cli.py` calls it before any logger, W&B run or folder is created, so a
        wrong path is refused with nothing written. Subclasses that read files override it and call `super()`."""

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuses, before any weight is loaded, a checkpoint of another model class, of another image shape or
        with other network sizes (`lightning_models.checkpoints.check_fits`). Subclasses overriding this hook
        call `super()` first."""
        from lightning_models.checkpoints import check_fits

        check_fits(self, checkpoint)

    def check_finite(self, **losses: Tensor) -> None:
        """Stops training (before any optimizer step) when a loss is NaN/inf, naming the step and the loss."""
        for name, value in losses.items():
            # a scalar loss (every scheme's) through one host read: isfinite().all() costs ~20x more on a CPU;
            # on a GPU both are the same single sync
            finite = math.isfinite(value.detach().item()) if value.numel() == 1 else bool(torch.isfinite(value).all())
            if not finite:
                raise NonFiniteLossError(
                    f"non-finite {name} ({value.item()}) at global step {self.global_step} (epoch "
                    f"{self.current_epoch}); training stopped before the optimizer step, so no checkpoint holds "
                    "these weights. Lower the learning rate, enable --model.gradient_clip_val, or try another "
                    "--model.loss, then resume from last.ckpt."
                )


class GenerativeModule(TrainingModule):
    """Base of the generative models: `sample(n, labels)` -> (n, C, H, W) in [0, 1], and `cli.py predict`'s grids.

    Subclasses set `self.conditional` and `self.num_classes` and implement `generate`. Their `cli.py test` (samples
    scored against the test split in a classifier's feature space) is `lightning_models.metrics.SampleScores`,
    which the models mix in before this class.
    """

    #: range of `generate`'s output; `sample` maps it to [0, 1].
    output_range: tuple[float, float] = (-1.0, 1.0)
    conditional: bool = False
    num_classes: int = 0

    # --- the sampling contract --------------------------------------------------------------------------------
    def generate(self, n: int, labels: Tensor | None, generator: torch.Generator | None) -> Tensor:
        raise NotImplementedError

    def check_labels(self, n: int, labels: Tensor | None) -> Tensor | None:
        """Validates `labels` for `sample`; conditional models without labels get a balanced 0,1,2,... cycle."""
        if not self.conditional:
            if labels is not None:
                raise ValueError(f"{type(self).__name__} is unconditional: call sample(n) without labels")
            return None
        if labels is None:
            return torch.arange(n, device=self.device) % self.num_classes
        labels = torch.as_tensor(labels, device=self.device)
        if labels.shape != (n,) or labels.dtype.is_floating_point:
            raise ValueError(f"labels must be {n} integer class ids (shape ({n},)), got {tuple(labels.shape)} "
                             f"{labels.dtype}")
        if n and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f"labels must be in [0, {self.num_classes - 1}], got values in "
                             f"[{int(labels.min())}, {int(labels.max())}]")
        return labels.long()

    @torch.no_grad()
    def sample(self, n: int, labels: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """`n` images (n, C, H, W) in [0, 1] on the module's device, drawn in eval mode without gradients.

        Conditional models take `labels` (int class ids, shape (n,)); unconditional ones reject them.
        `generator` (a `torch.Generator` on the module's device) makes the draw repeatable.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        labels = self.check_labels(n, labels)
        with self.eval_mode():
            images = self.generate(n, labels, generator)
        low, high = self.output_range
        return ((images.float() - low) / (high - low)).clamp_(0, 1)

    # --- cli.py predict -------------------------------------------------------------------------------------
    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, Tensor]:
        """Sample grids: one of `predict_grid_size` samples, or for conditional models one per class."""
        n = self.hparams.get("predict_grid_size", 64)
        rng = torch.Generator(device=self.device).manual_seed(batch_idx)
        if not self.conditional:
            return {"samples": self.sample(n, generator=rng)}
        return {f"class_{c}": self.sample(n, torch.full((n,), c, device=self.device), generator=rng)
                for c in range(self.num_classes)}
