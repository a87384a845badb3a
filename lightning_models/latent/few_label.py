"""Few-label classification on a trained autoencoder's encoder: `num_labels` labelled training images (drawn
class-balanced with `label_seed`), every other training image used without its label.

What gets it past the source report's 0.745 (a sigmoid MLP on frozen codes of 50 labelled images):
1. a shift-invariant, denoising autoencoder (`lightning_models.latent.autoencoder`), whose codes cluster by digit;
2. label propagation in the code space (label spreading, Zhou et al. 2004, on a k-nearest-neighbour graph, as
   in Iscen et al. 2019): the 50 labels spread along the data's own clusters to every training image, giving each
   a pseudo-label and a certainty weight (1 - normalised entropy); repeated every epoch on the head's own hidden
   features (`propagate_on: head`) once the head has learned something, so the graph sharpens as it trains;
3. training on the labelled images plus the pseudo-labelled batches, all shifted by up to `augment_shift`
   pixels on the device.

The training batches of the datamodule are the unlabelled images (their labels are never read). Their
pseudo-labels are found by an exact fingerprint of the pixels (a fixed random projection of the uint8 values,
looked up with `searchsorted`), so lookup is one vectorised call whatever the order, shard or device. Validation
and test use the true labels; `cli.py test` reports `test/accuracy` on the whole test split.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy

from lightning_models.base import TrainingModule
from lightning_models.latent.autoencoder import load_autoencoder, stored_hparams
from lightning_models.latent.split_rows import SplitRows
from lightning_models.metrics.classifier import Classifier, random_translate
from lightning_models.networks.mlp import MLP


def balanced_label_draw(labels: Tensor, num_labels: int, num_classes: int, seed: int) -> Tensor:
    """Indices of `num_labels` items, `num_labels // num_classes` per class (the remainder goes to classes chosen
    with `seed`), each class's items drawn at random with `seed`. Raises ValueError if a class has too few."""
    gen = torch.Generator().manual_seed(seed)
    per_class = torch.full((num_classes,), num_labels // num_classes)
    per_class[torch.randperm(num_classes, generator=gen)[: num_labels % num_classes]] += 1
    order = torch.randperm(len(labels), generator=gen)  # one shuffle; each class keeps its first items
    shuffled = labels[order]
    # position of each item among the items of its class, in shuffled order (vectorised cumulative count)
    one_hot = F.one_hot(shuffled, num_classes)
    rank_in_class = (one_hot.cumsum(0) * one_hot).sum(1) - 1
    available = one_hot.sum(0)
    if (available < per_class).any():
        c = int((available < per_class).nonzero()[0])
        raise ValueError(f"--model.num_labels {num_labels}: class {c} has only {int(available[c])} training images, "
                         f"{int(per_class[c])} needed; lower num_labels")
    chosen = order[rank_in_class < per_class[shuffled]]
    return chosen.sort().values


def label_spreading(features: Tensor, labelled: Tensor, labels: Tensor, num_classes: int, neighbors: int,
                    alpha: float, iterations: int, chunk: int = 2048) -> tuple[Tensor, Tensor]:
    """(pseudo-labels (N,), certainty weights (N,) in [0, 1]) of every row of `features` (N, D) from the labels
    of rows `labelled`: label spreading over the symmetric, normalised k-nearest-neighbour graph (cosine
    similarity cubed), with class-balanced scores."""
    n = len(features)
    f = F.normalize(features.float(), dim=1)
    k = min(neighbors, n - 1)
    sims, idx = [], []
    for part in f.split(chunk):  # (c, N) similarities per chunk: memory stays O(chunk * N)
        s, i = (part @ f.T).topk(k + 1, dim=1)
        sims.append(s[:, 1:])  # drop the point itself
        idx.append(i[:, 1:])
    sims, idx = torch.cat(sims).clamp_min(0).pow(3), torch.cat(idx)
    rows = torch.arange(n, device=f.device).repeat_interleave(k)
    w = torch.sparse_coo_tensor(torch.stack([rows, idx.flatten()]), sims.flatten(), (n, n), check_invariants=False)
    w = (w + w.t()).coalesce()
    degree = torch.sparse.sum(w, 1).to_dense().clamp_min(1e-12)
    i, j = w.indices()
    s = torch.sparse_coo_tensor(w.indices(), w.values() / (degree[i] * degree[j]).sqrt(), (n, n),
                                check_invariants=False).coalesce()
    y = torch.zeros(n, num_classes, device=f.device)
    y[labelled, labels] = 1.0
    scores = y.clone()
    for _ in range(iterations):
        scores = alpha * torch.sparse.mm(s, scores) + (1 - alpha) * y
    scores = scores / scores.sum(0, keepdim=True).clamp_min(1e-12)  # balance the classes' total mass
    probs = scores / scores.sum(1, keepdim=True).clamp_min(1e-12)
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(1)
    certainty = 1 - entropy / math.log(num_classes)
    certainty[scores.sum(1) == 0] = 0  # not reached by any label
    return probs.argmax(1), certainty.clamp(0, 1)


class FewLabelClassifier(TrainingModule):
    """An MLP head on a trained autoencoder's encoder, trained with `num_labels` labels (see the module doc).

    Args:
        autoencoder_path: checkpoint (or run root) of a trained `Autoencoder` (`configs/ae_mnist.yaml`).
        image_shape: (C, H, W), linked from the datamodule by the CLI.
        num_classes: classes, linked from the datamodule.
        num_labels: labelled training images, drawn class-balanced.
        label_seed: seed of the label draw (the same seed gives the same images).
        freeze_encoder: keep the encoder's weights (and BatchNorm statistics) fixed; false fine-tunes it.
        hidden: widths of the head's hidden layers.
        dropout: dropout in the head.
        lr: AdamW learning rate of the head.
        encoder_lr: learning rate of the encoder when it is fine-tuned.
        weight_decay: AdamW weight decay.
        augment_shift: shift every training image by up to this many pixels (0 = off).
        unlabeled_weight: weight of the pseudo-labelled images' loss (0 = labelled images only).
        propagation_neighbors: k of the nearest-neighbour graph.
        propagation_alpha: label spreading's alpha (how far labels travel).
        propagation_iterations: label spreading iterations.
        propagate_on: features of the graph after the first epoch: "head" (the head's last hidden layer) or
            "latent" (always the encoder's codes).
        autoencoder_hparams: filled in from the autoencoder checkpoint and saved with this model, so that
            loading this model needs no autoencoder file; leave it null.
    """

    def __init__(
        self,
        autoencoder_path: str | None = None,
        image_shape: tuple[int, int, int] = (1, 28, 28),
        num_classes: int = 10,
        num_labels: int = 50,
        label_seed: int = 0,
        freeze_encoder: bool = True,
        hidden: Sequence[int] = (512,),
        dropout: float = 0.2,
        lr: float = 1e-3,
        encoder_lr: float = 1e-4,
        weight_decay: float = 1e-4,
        augment_shift: int = 2,
        unlabeled_weight: float = 1.0,
        propagation_neighbors: int = 10,
        propagation_alpha: float = 0.99,
        propagation_iterations: int = 20,
        propagate_on: str = "head",
        autoencoder_hparams: dict | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        autoencoder = load_autoencoder(autoencoder_path, autoencoder_hparams)
        self.hparams["autoencoder_hparams"] = stored_hparams(autoencoder)  # loading rebuilds the encoder from these
        if num_labels < num_classes:
            raise ValueError(f"--model.num_labels must be >= num_classes ({num_classes}) to label every class, got "
                             f"{num_labels}")
        if propagate_on not in ("head", "latent"):
            raise ValueError(f"--model.propagate_on must be 'head' or 'latent', got {propagate_on!r}")
        if tuple(image_shape) != autoencoder.image_shape:
            raise ValueError(f"the autoencoder {autoencoder_path!r} takes images {autoencoder.image_shape}, the data "
                             f"has {tuple(image_shape)}: train one on this data")
        self.num_classes = num_classes
        self.encoder = autoencoder.encoder
        self.encoder.requires_grad_(not freeze_encoder)
        self.head = MLP(autoencoder.latent_dim, num_classes, hidden, dropout=dropout)
        self.register_buffer("labelled_indices", torch.zeros(num_labels, dtype=torch.long))  # in the checkpoint
        self.val_accuracy = MulticlassAccuracy(num_classes, average="micro")
        self.test_accuracy = MulticlassAccuracy(num_classes, average="micro")

    def train(self, mode: bool = True):
        super().train(mode)
        if self.hparams.freeze_encoder:
            self.encoder.eval()  # a frozen encoder keeps its BatchNorm statistics too
        return self

    def forward(self, images: Tensor) -> Tensor:
        """Class logits (B, num_classes) of images (B, C, H, W) in [0, 1]."""
        return self.head(self.encoder(images))

    # --- labelled subset and pseudo-labels ------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if stage != "fit":
            return
        train = self.trainer.datamodule.split("train")
        h = self.hparams
        drawn = balanced_label_draw(train["label"], h.num_labels, self.num_classes, h.label_seed)
        self.labelled_indices = drawn.to(self.labelled_indices.device)  # a buffer: saved in the checkpoint
        self.train_images = train["image"]  # uint8 (N, C, H, W), kept on the CPU; moved in chunks
        self.labelled_images = train["image"][drawn].float() / 255
        self.labelled_labels = train["label"][drawn]
        self.train_rows = SplitRows(train["image"])

    def on_fit_start(self) -> None:
        for name in ("labelled_images", "labelled_labels"):
            setattr(self, name, getattr(self, name).to(self.device))
        self.train_rows.to(self.device)

    @torch.no_grad()
    def propagation_features(self) -> Tensor:
        with self.eval_mode():
            feats = []
            for part in self.train_images.split(1024):
                codes = self.encoder(part.to(self.device).float() / 255)
                use_head = self.hparams.propagate_on == "head" and self.current_epoch > 0
                feats.append(self.head.features(codes) if use_head else codes)
            return torch.cat(feats)

    def on_train_epoch_start(self) -> None:
        h = self.hparams
        if not h.unlabeled_weight:
            return
        pseudo, certainty = label_spreading(self.propagation_features(), self.labelled_indices, self.labelled_labels,
                                            self.num_classes, h.propagation_neighbors, h.propagation_alpha,
                                            h.propagation_iterations)
        self.pseudo_labels, self.pseudo_certainty, self.pseudo_epoch = pseudo, certainty, self.current_epoch
        self.log("train/pseudo_certainty", certainty.mean())

    # The epoch's pseudo-labels travel in checkpoints with their epoch: a run resumed mid-epoch (where Lightning
    # does not call on_train_epoch_start) uses the labels the interrupted epoch started with, so resuming is exact.
    # Resumed from a save after an epoch's last batch, Lightning goes on with the next epoch without calling
    # on_train_epoch_start either: the first step sees labels of an older epoch and computes this epoch's.
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if getattr(self, "pseudo_labels", None) is not None:
            checkpoint["pseudo_labels"] = {"labels": self.pseudo_labels.cpu(), "certainty": self.pseudo_certainty.cpu(),
                                           "epoch": self.pseudo_epoch}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        saved = checkpoint.get("pseudo_labels")
        if saved is not None:
            self.pseudo_labels, self.pseudo_certainty = saved["labels"], saved["certainty"]
            self.pseudo_epoch = saved.get("epoch")

    def lookup(self, images: Tensor) -> Tensor:
        """Rows of the training split holding `images` (found by fingerprint)."""
        rows = self.train_rows.find(images)
        if rows is None:
            raise RuntimeError("FewLabelClassifier: a training batch holds images that are not in the datamodule's "
                               "train split; the pseudo-labels are defined for that split only")
        return rows

    # --- training -------------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        h = self.hparams
        logits = self(random_translate(self.labelled_images, h.augment_shift))
        loss_labelled = F.cross_entropy(logits, self.labelled_labels)
        loss = loss_labelled
        if h.unlabeled_weight:
            if getattr(self, "pseudo_epoch", None) != self.current_epoch:  # resumed (see on_save_checkpoint)
                self.on_train_epoch_start()
            self.pseudo_labels = self.pseudo_labels.to(self.device)
            self.pseudo_certainty = self.pseudo_certainty.to(self.device)
            rows = self.lookup(batch["image"])  # the batch's labels are not read
            logits = self(random_translate(batch["image"], h.augment_shift))
            per_image = F.cross_entropy(logits, self.pseudo_labels[rows], reduction="none")
            loss_unlabelled = (per_image * self.pseudo_certainty[rows]).mean()
            loss = loss + h.unlabeled_weight * loss_unlabelled
            self.log_train({"train/loss_unlabelled": loss_unlabelled})
        self.log_train({"train/loss": loss, "train/loss_labelled": loss_labelled},
                       prog_bar=("train/loss", "train/loss_labelled"))
        return loss

    # evaluation and prediction exactly as the supervised classifier's: true labels, micro accuracy, val/test loss
    _evaluate = Classifier._evaluate
    validation_step = Classifier.validation_step
    test_step = Classifier.test_step
    predict_step = Classifier.predict_step

    def configure_optimizers(self):
        h = self.hparams
        groups = [{"params": self.head.parameters(), "lr": h.lr}]
        if not h.freeze_encoder:
            groups.append({"params": self.encoder.parameters(), "lr": h.encoder_lr})
        return torch.optim.AdamW(groups, weight_decay=h.weight_decay)
