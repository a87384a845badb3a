"""Tiny translation models, hand-made networks and a fit helper shared by the CycleGAN / pix2pix tests."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn as nn
from torch import Tensor

from datamodules import PairedColoredMNISTDataModule, UnpairedColoredMNISTDataModule
from lightning_models.translation.cyclegan import CycleGAN
from lightning_models.translation.pix2pix import Pix2Pix


TINY = dict(generator_width=4, generator_blocks=1, discriminator_width=4)


def tiny(cls: type, **kwargs):
    """A CycleGAN or Pix2Pix with 4-channel networks."""
    if cls is CycleGAN:
        kwargs.setdefault("pool_size", 4)
    return cls(**{**TINY, **kwargs})


class Shift(nn.Module):
    """A hand-made "generator": x + offset."""

    def __init__(self, offset: float) -> None:
        super().__init__()
        self.offset = offset

    def forward(self, x: Tensor) -> Tensor:
        return x + self.offset


def datamodule(paired: bool, **kwargs):
    cls = PairedColoredMNISTDataModule if paired else UnpairedColoredMNISTDataModule
    return cls(**{"batch_size": 8, "val_size": 8, **kwargs})


def fit(model, data_dir: str, max_steps: int, paired: bool | None = None, callbacks=(), **trainer_kwargs):
    """Fits on the tiny colored MNIST fixture (paired data for Pix2Pix unless told) and returns the trainer."""
    paired = isinstance(model, Pix2Pix) if paired is None else paired
    trainer = pl.Trainer(max_steps=max_steps, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0,
                         callbacks=list(callbacks), **trainer_kwargs)
    trainer.fit(model, datamodule(paired, data_dir=data_dir))
    return trainer
