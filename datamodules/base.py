"""The one base class of every datamodule: splits decoded once into uint8 tensors, batches by index.

A subclass only says how to read its splits (`load_split`) and, if it needs to, what to do to a batch on the
training device (`transform_batch`: coloring, pairing). Everything per batch is vectorised.
"""

from __future__ import annotations

from typing import Any, Literal

import pytorch_lightning as pl
import torch
from torch import Tensor

from datamodules.loader import BatchLoader


class ImageDataModule(pl.LightningDataModule):
    """Serves `{"image": float (B, C, H, W) in [0, 1], "label": int64 (B,), ...}` batches on the training device.

    Args:
        data_dir: root folder of the datasets (torchvision layout).
        batch_size: images per batch on each device.
        eval_batch_size: batch size for validation/test/predict (default: `batch_size`).
        download: fetch missing files with torchvision. Each datamodule sets its default: on for MNIST and
            Fashion-MNIST (fetched on first use), off for CelebA (its host refuses often) and folders.
        seed: seed of the training order and of any random split/coloring, so runs are reproducible.
        test_split: the split `test` scores against: "test", or "val" to choose settings (checkpoints, options)
            on the validation split and report the test split once, for the chosen setting.
    """

    #: (channels, height, width) of the images this module serves; set by subclasses in `__init__`.
    image_shape: tuple[int, int, int]
    #: number of label classes (0 when the data has none).
    num_classes: int = 0

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        download: bool = False,
        seed: int = 0,
        test_split: Literal["test", "val"] = "test",
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"--data.batch_size must be >= 1, got {batch_size}")
        if test_split not in ("test", "val"):
            raise ValueError(f"--data.test_split must be 'test' or 'val', got {test_split!r}")
        self.test_split = test_split
        self.data_dir = data_dir
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.download = download
        self.seed = seed
        self._splits: dict[str, dict[str, Tensor]] = {}

    # --- what a subclass provides -------------------------------------------------------------------------
    def load_split(self, split: str) -> dict[str, Tensor]:
        """Returns the split ("train", "val" or "test") as `{"image": uint8 (N, C, H, W), ...}` tensors."""
        raise NotImplementedError

    def transform_batch(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Per-batch work on the training device, after `image` became float in [0, 1]. Default: none."""
        return batch

    # --- shared mechanics -----------------------------------------------------------------------------------
    def split(self, name: str) -> dict[str, Tensor]:
        """The decoded split, read once and kept."""
        if name not in self._splits:
            self._splits[name] = self.load_split(name)
        return self._splits[name]

    def setup(self, stage: str | None = None) -> None:
        needed = {"fit": ["train", "val"], "validate": ["val"], "test": [self.test_split], "predict": ["test"]}
        for name in needed.get(stage or "", ["train", "val", "test"]):
            self.split(name)

    def _loader(self, split: str, train: bool) -> BatchLoader:
        trainer = self.trainer
        rank = trainer.global_rank if trainer is not None else 0
        world = trainer.world_size if trainer is not None else 1
        epoch_fn = progress_fn = None
        if train and trainer is not None:
            epoch_fn = lambda: trainer.current_epoch  # noqa: E731
            progress_fn = lambda: trainer.fit_loop.epoch_loop.batch_progress.current.processed  # noqa: E731
        return BatchLoader(
            self.split(split),
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            drop_last=train,
            seed=self.seed,
            epoch_fn=epoch_fn,
            progress_fn=progress_fn,
            rank=rank,
            world_size=world,
        )

    def train_dataloader(self) -> BatchLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> BatchLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> BatchLoader:
        return self._loader(self.test_split, train=False)

    def predict_dataloader(self) -> BatchLoader:
        return self._loader("test", train=False)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        batch = dict(batch)
        for key, value in batch.items():
            if value.dtype == torch.uint8 and value.dim() == 4:
                batch[key] = value.float().div_(255)
        return self.transform_batch(batch)
