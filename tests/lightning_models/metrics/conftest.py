"""Tiny separable image data and a classifier trained on it, shared by the classifier and evaluation tests.

Class c of the "quadrant" data is a bright square in quadrant c of a 16x16 image, over noise: a classifier that
learns anything at all gets it right, so tests can assert on real learned behaviour in a few CPU seconds.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from torch import Tensor

from datamodules import ImageDataModule
from lightning_models.metrics.classifier import Classifier

QUADRANT_SIZE = 16
QUADRANT_CLASSES = 4


def quadrant_images(n: int, seed: int, labels: Tensor | None = None) -> dict[str, Tensor]:
    """`{"image": uint8 (n, 1, 16, 16), "label": int64 (n,)}`, balanced labels unless `labels` is given."""
    gen = torch.Generator().manual_seed(seed)
    if labels is None:
        labels = torch.arange(n) % QUADRANT_CLASSES
    images = torch.randint(0, 60, (n, 1, QUADRANT_SIZE, QUADRANT_SIZE), generator=gen, dtype=torch.uint8)
    half = QUADRANT_SIZE // 2
    jitter = torch.randint(0, 3, (n, 2), generator=gen)  # the square moves a little inside its quadrant
    for i, label in enumerate(labels.tolist()):
        top = (label // 2) * half + 1 + int(jitter[i, 0])
        left = (label % 2) * half + 1 + int(jitter[i, 1])
        images[i, :, top : top + 4, left : left + 4] = 255
    return {"image": images, "label": labels.long()}


class QuadrantData(ImageDataModule):
    """The quadrant data as a datamodule of the collection (train 512, val 128, test 256 images)."""

    image_shape = (1, QUADRANT_SIZE, QUADRANT_SIZE)
    num_classes = QUADRANT_CLASSES

    def load_split(self, split: str) -> dict[str, Tensor]:
        n, seed = {"train": (512, 1), "val": (128, 2), "test": (256, 3)}[split]
        return quadrant_images(n, seed)


@pytest.fixture(scope="session")
def trained_classifier(tmp_path_factory) -> SimpleNamespace:
    """A small Classifier fitted on QuadrantData: `.model`, `.path` (its checkpoint), `.fit_metrics`,
    `.test_metrics`, `.trainer`, `.data`."""
    pl.seed_everything(0)
    data = QuadrantData(batch_size=32)
    model = Classifier(image_shape=data.image_shape, num_classes=data.num_classes, width=8, lr=3e-3)
    trainer = pl.Trainer(max_steps=60, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(model, data)
    fit_metrics = dict(trainer.callback_metrics)
    test_metrics = trainer.test(model, data, verbose=False)[0]
    path = tmp_path_factory.mktemp("classifier") / "classifier.ckpt"
    trainer.save_checkpoint(path)
    model.eval()
    return SimpleNamespace(model=model, path=str(path), fit_metrics=fit_metrics, test_metrics=test_metrics,
                           trainer=trainer, data=data)
