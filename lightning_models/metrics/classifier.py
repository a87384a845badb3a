"""Training scheme of the evaluation classifier: plain supervised cross-entropy on the datamodule's labels.

Its checkpoint is what `lightning_models.metrics.evaluation` loads to score every generative model (Fréchet distance
in its feature space, class coverage, conditional accuracy), so train one per dataset before testing generators:
`python cli.py fit --config configs/classifier_mnist.yaml`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy

from lightning_models.base import TrainingModule
from lightning_models.networks.classifier import ClassifierNet


def random_translate(images: Tensor, max_shift: int) -> Tensor:
    """Shifts each image (B, C, H, W) by its own random integer offset in [-max_shift, max_shift] along both axes,
    filling with zeros (the background of MNIST-like data). One gather on the device, no per-sample loop."""
    if max_shift <= 0:
        return images
    b, c, h, w = images.shape
    padded = F.pad(images, (max_shift,) * 4)
    dy = torch.randint(0, 2 * max_shift + 1, (b,), device=images.device)
    dx = torch.randint(0, 2 * max_shift + 1, (b,), device=images.device)
    rows = (dy[:, None] + torch.arange(h, device=images.device))[:, None, :, None]  # (B, 1, H, 1)
    cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, None, :]  # (B, 1, 1, W)
    batch = torch.arange(b, device=images.device)[:, None, None, None]
    channel = torch.arange(c, device=images.device)[None, :, None, None]
    return padded[batch, channel, rows, cols]


class Classifier(TrainingModule):
    """Image classifier used as the feature extractor and judge of generated samples.

    Args:
        image_shape: (channels, height, width) of the images; linked from the datamodule by the CLI.
        num_classes: number of label classes; linked from the datamodule by the CLI.
        width: channels of the first convolution stage (32 reaches > 99% on MNIST in a few epochs).
        lr: peak learning rate of AdamW, decayed to 0 along a cosine over the run when its length is known.
        weight_decay: AdamW weight decay.
        augment: shift training images by up to 2 pixels (random, per image, on the device).
        seed: seed of the augmentation and dropout draws (combined with rank and step, see `TrainingModule`).
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (1, 28, 28),
        num_classes: int = 10,
        width: int = 32,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        augment: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.image_shape = tuple(int(s) for s in image_shape)  # the CLI may pass a list
        if len(self.image_shape) != 3:
            raise ValueError(f"--model.image_shape must be (C, H, W), got {image_shape}")
        self.num_classes = num_classes
        self.net = ClassifierNet(self.image_shape[0], num_classes, min(self.image_shape[1:]), width)
        # micro average = the fraction of correct predictions, what "accuracy" means in every report
        self.val_accuracy = MulticlassAccuracy(num_classes, average="micro")
        self.test_accuracy = MulticlassAccuracy(num_classes, average="micro")

    @property
    def num_features(self) -> int:
        """Size of the vectors returned by `features`."""
        return self.net.num_features

    def features(self, images: Tensor) -> Tensor:
        """Penultimate activations (B, num_features) of images (B, C, H, W) in [0, 1]."""
        return self.net.features(images)

    def forward(self, images: Tensor) -> Tensor:
        """Class logits (B, num_classes) of images (B, C, H, W) in [0, 1]."""
        return self.net(images)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        images = random_translate(batch["image"], 2) if self.hparams.augment else batch["image"]
        logits = self(images)
        loss = F.cross_entropy(logits, batch["label"])
        accuracy = (logits.detach().argmax(1) == batch["label"]).float().mean()
        self.log_train({"train/loss": loss, "train/accuracy": accuracy}, prog_bar=("train/loss",))
        return loss

    def _evaluate(self, batch: dict[str, Tensor], stage: str, accuracy: MulticlassAccuracy) -> None:
        logits = self(batch["image"])
        loss = F.cross_entropy(logits, batch["label"])
        accuracy(logits, batch["label"])
        self.log(f"{stage}/loss", loss, sync_dist=True)  # a plain tensor is averaged across ranks only if asked
        self.log(f"{stage}/accuracy", accuracy, prog_bar=True)  # metric objects sync themselves

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_accuracy)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_accuracy)

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        """Predicted labels (B,) of the batch's images."""
        return self(batch["image"]).argmax(dim=1)

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        total = self.trainer.estimated_stepping_batches if self._trainer is not None else math.inf
        if not math.isfinite(total) or total < 1:  # unbounded run: keep the learning rate constant
            return optimizer
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=int(total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
