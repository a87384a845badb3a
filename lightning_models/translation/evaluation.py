"""Metrics and pictures of the translation models (CycleGAN, pix2pix), for both directions:

- `color_accuracy_ab`: fraction of A->B translations whose dominant foreground color
  (`datamodules.colored_mnist.dominant_color`) is domain B's color of the input's digit, i.e. `palette_b[digit]`
  (only for a target domain colored by digit, `coloring_b: palette`); `color_accuracy_ba` the same towards A;
- `color_accuracy_strict_ab`, `_ba`: the same with a rule that abstains on a stroke of mixed colors
  (`datamodules.colored_mnist.single_color`: more than half of its brightness in the called color);
- `iou_ab`, `iou_ba`: shape preservation, the IoU of the foreground masks of input and translation;
- `cycle_l1_aba`, `cycle_l1_bab`: mean absolute error (images in [0, 1]) of the round trip A->B->A, B->A->B.

Each is a torchmetrics `MeanMetric` over images, so DDP ranks are reduced by torchmetrics. Pictures are
input | translation | cycle strips, per digit.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn as nn
from pytorch_lightning.utilities import rank_zero_only
from torch import Tensor
from torchmetrics.aggregation import MeanMetric
from torchvision.utils import make_grid

from datamodules.colored_mnist import dominant_color, foreground, single_color
from lightning_models.callbacks import SampleGrid, publish_grid

METRICS = ("color_accuracy_ab", "color_accuracy_ba", "color_accuracy_strict_ab", "color_accuracy_strict_ba",
           "iou_ab", "iou_ba", "cycle_l1_aba", "cycle_l1_bab")
STAGES = ("val", "test")


def mask_iou(images: Tensor, others: Tensor) -> Tensor:
    """Per image (B,): IoU of the foreground masks of two batches (1 where both are empty)."""
    a, b = foreground(images), foreground(others)
    inter, union = (a & b).sum((1, 2)).float(), (a | b).sum((1, 2)).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def labels_of(batch: dict[str, Tensor], side: str) -> Tensor | None:
    """Digit labels of domain `side` ("a" or "b"): `label_<side>` (unpaired data) or the shared `label` (paired)."""
    return batch.get(f"label_{side}", batch.get("label"))


def target_palette(datamodule: Any, side: str) -> Tensor | None:
    """`palette_<side>` of the datamodule when that domain colors each digit with its own color, else None."""
    palette = getattr(datamodule, f"palette_{side}", None)
    return palette if getattr(datamodule, f"coloring_{side}", "palette") == "palette" else None


def translation_rows(model: Any, images_a: Tensor, images_b: Tensor) -> dict[str, tuple[Tensor, Tensor, Tensor]]:
    """`{"a_to_b": (inputs, translations, cycles), "b_to_a": ...}`, each (N, C, H, W) in [0, 1]."""
    ab = model.translate(images_a, "AB")
    ba = model.translate(images_b, "BA")
    return {"a_to_b": (images_a, ab, model.translate(ab, "BA")), "b_to_a": (images_b, ba, model.translate(ba, "AB"))}


def strips(model: Any, images_a: Tensor, images_b: Tensor) -> dict[str, Tensor]:
    """`{"a_to_b": (N, C, H, 3W), "b_to_a": ...}`: input | translation | cycle side by side."""
    return {name: torch.cat(rows, -1) for name, rows in translation_rows(model, images_a, images_b).items()}


def sorted_by_label(batch: dict[str, Tensor], side: str) -> Tensor:
    """`image_<side>` of a batch in digit order (as is when the batch has no labels)."""
    images, labels = batch[f"image_{side}"], labels_of(batch, side)
    return images if labels is None else images[labels.argsort(stable=True)]


class TranslationMetrics(nn.Module):
    """The metrics of this module's docstring, one `MeanMetric` per stage (val, test) and name."""

    def __init__(self) -> None:
        super().__init__()
        self.means = nn.ModuleDict({f"{stage}_{name}": MeanMetric() for stage in STAGES for name in METRICS})

    @torch.no_grad()
    def update(self, stage: str, model: Any, batch: dict[str, Tensor], datamodule: Any) -> dict[str, MeanMetric]:
        """Updates with one batch; returns the metrics it updated, by name (color accuracy needs labels and a
        datamodule whose target domain is colored by digit)."""
        values = {}
        for name, (inputs, translated, cycled) in translation_rows(model, batch["image_a"], batch["image_b"]).items():
            src, dst = name[0], name[-1]
            values[f"iou_{src}{dst}"] = mask_iou(inputs, translated)
            values[f"cycle_l1_{src}{dst}{src}"] = (cycled - inputs).abs().mean((1, 2, 3))
            palette, labels = target_palette(datamodule, dst), labels_of(batch, src)
            if palette is not None and labels is not None:
                values[f"color_accuracy_{src}{dst}"] = (dominant_color(translated, palette) == labels).float()
                values[f"color_accuracy_strict_{src}{dst}"] = (single_color(translated, palette) == labels).float()
        updated = {}
        for name, value in values.items():
            metric = self.means[f"{stage}_{name}"]
            metric.update(value)
            updated[name] = metric
        return updated


def first_of_each_class(split: dict[str, Tensor], num_classes: int) -> dict[str, Tensor]:
    """The rows of a raw split holding the first image of each class in each domain (paired splits: the same
    rows for both; unpaired ones pick `*_a` and `*_b` rows by their own labels). Missing classes are skipped."""

    def first_rows(labels: Tensor) -> Tensor:
        n = len(labels)
        first = torch.full((num_classes,), n).scatter_reduce(0, labels.clamp(0, num_classes - 1), torch.arange(n),
                                                              "amin")
        return first[first < n]

    if "label" in split:
        rows = first_rows(split["label"])
        return {key: value[rows] for key, value in split.items()}
    rows = {side: first_rows(split[f"label_{side}"]) for side in "ab"}
    return {key: value[rows[key[-1]]] for key, value in split.items()}


class TranslationStrips(SampleGrid):
    """Pictures during training: every `every_n_steps` optimizer steps (and at the end), for each direction a
    grid whose columns are the digits (the first validation image of each) and whose rows are input,
    translation and cycle reconstruction. Logged under `samples/a_to_b` and `samples/b_to_a` to every logger
    that takes images, and written as `<run>/samples/<direction>_step_XXXXXXX.png`. (SampleGrid's schedule,
    with translations instead of samples.)

    Args:
        every_n_steps: interval in optimizer steps (Lightning's `global_step`; a batch is 2 steps).
    """

    def __init__(self, every_n_steps: int = 500) -> None:
        super().__init__(every_n_steps=every_n_steps)
        self._examples: tuple[Tensor, Tensor] | None = None

    def examples(self, trainer: pl.Trainer, pl_module: Any) -> tuple[Tensor, Tensor]:
        """The first validation image of each digit, per domain, on the module's device (read once)."""
        if self._examples is None:
            datamodule = trainer.datamodule
            rows = first_of_each_class(datamodule.split("val"), pl_module.hparams.num_classes)
            batch = datamodule.on_after_batch_transfer({k: v.to(pl_module.device) for k, v in rows.items()}, 0)
            self._examples = batch["image_a"], batch["image_b"]
        return self._examples

    @rank_zero_only
    def log_grid(self, trainer: pl.Trainer, pl_module: Any) -> None:
        for name, rows in translation_rows(pl_module, *self.examples(trainer, pl_module)).items():
            grid = make_grid(torch.cat(rows), nrow=len(rows[0]), padding=2, pad_value=1.0)
            publish_grid(trainer, name, grid, file_prefix=f"{name}_")
