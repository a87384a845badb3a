"""Speed options that change no result and no checkpoint, as callbacks any config can add:

    --trainer.callbacks+=lightning_models.performance.ChannelsLast
    --trainer.callbacks+=lightning_models.performance.CompileNetworks   # --trainer.callbacks.mode max-autotune ...

`ChannelsLast` runs convolutions in NHWC memory format (what tensor cores run fastest under `bf16-mixed` /
`16-mixed` on recent NVIDIA GPUs); `CompileNetworks` compiles the networks a model trains with `torch.compile`.
Both leave parameter names and values as they are, so checkpoints load with or without them, and a run can be
resumed with or without them.

`skip_failing_nvml_probe` (run when `lightning_models` is imported) removes a cost that every optimizer step pays
on a machine without an NVIDIA driver, see its doc.
"""

from __future__ import annotations

import ctypes
import os
import warnings
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn as nn


def skip_failing_nvml_probe() -> bool:
    """Drops `PYTORCH_NVML_BASED_CUDA_CHECK=1` (set by importing Lightning) when the NVML library cannot be loaded,
    i.e. on machines without an NVIDIA driver; True when it did.

    torch's Adam/AdamW ask `torch.cuda.is_available()` at every `step()`. With that variable, a CUDA build of torch
    answers by loading `libnvidia-ml.so.1` again each time, and on a machine without it the failed load is followed
    by `cudaGetDeviceCount`, the answer it gives without the variable (together about 130 us per Adam step on a
    2-core CPU, 0.26 ms per GAN batch; benchmarks/RESULTS.md). So dropping it there changes no answer and no fork
    behaviour; with a driver present, nothing is changed.
    """
    if os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") != "1" or not torch.backends.cuda.is_built():
        return False
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        del os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"]
        return True
    return False


def _channels_last(batch: Any) -> None:
    """Every 4-D floating-point tensor of a batch dict, in channels-last memory format (in place in the dict)."""
    if isinstance(batch, dict):
        for key, value in batch.items():
            if isinstance(value, torch.Tensor) and value.dim() == 4 and value.is_floating_point():
                batch[key] = value.contiguous(memory_format=torch.channels_last)


class ChannelsLast(pl.Callback):
    """The module's 4-D weights in channels-last format at setup (before the optimizers exist, so their states
    follow), and every 4-D float tensor of each batch before each step (train, validation, test, predict).
    Values are unchanged; only the memory layout differs."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        pl_module.to(memory_format=torch.channels_last)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        _channels_last(batch)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        _channels_last(batch)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        _channels_last(batch)

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        _channels_last(batch)


class CompileNetworks(pl.Callback):
    """`torch.compile` for the networks a model trains, in place (`nn.Module.compile`), so parameter names,
    state dicts and checkpoints stay as they are. The training step around them (optimizer steps, freezing,
    logging) stays eager. The first steps are slow: each network is compiled for each input shape it meets, and
    again for the frozen and unfrozen state of its parameters (GAN steps freeze the other network).

    Args:
        modules: attribute names of the submodules to compile (default: every direct submodule with trainable
            parameters, e.g. `generator` and `discriminator`; frozen ones such as an EMA copy are left eager).
        mode: torch.compile's mode ("default", "reduce-overhead", "max-autotune", ...).
        backend: torch.compile's backend ("inductor"; "aot_eager" or "eager" to check a setup without code
            generation).
        dynamic: torch.compile's `dynamic` (None: decide from the shapes seen).
        fullgraph: torch.compile's `fullgraph`.

    The gradient penalty (`loss: wgan_gp`) differentiates the discriminator twice, which compiled code does not
    support: with it the discriminators stay eager (with a warning).
    """

    def __init__(self, modules: list[str] | None = None, mode: str | None = None, backend: str = "inductor",
                 dynamic: bool | None = None, fullgraph: bool = False) -> None:
        self.modules = modules
        self.options = {"mode": mode, "backend": backend, "dynamic": dynamic, "fullgraph": fullgraph}

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        children = dict(pl_module.named_children())
        names = self.modules
        if names is None:
            names = [n for n, c in children.items() if any(p.requires_grad for p in c.parameters())]
        double_backward = bool(getattr(getattr(pl_module, "gan_loss", None), "gradient_penalty", False))
        for name in names:
            child = children.get(name)
            if not isinstance(child, nn.Module):
                raise ValueError(f"CompileNetworks: {type(pl_module).__name__} has no submodule {name!r}; set "
                                 f"`modules` to some of {sorted(children)}")
            if double_backward and name.startswith("discriminator"):
                warnings.warn(f"CompileNetworks: {name} stays eager: the gradient penalty of this loss "
                              "differentiates it twice, which compiled code does not support", stacklevel=2)
                continue
            if getattr(child, "_compiled_call_impl", None) is None:  # setup runs again for test / predict
                child.compile(**self.options)
