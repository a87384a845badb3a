"""The autoencoder scheme, and how the latent models (few-label classifier, latent GAN) load a trained one.

A convolutional encoder (`networks.conv` blocks, then a linear layer to `latent_dim`) and the mirrored decoder.
The latent ends in a BatchNorm without affine parameters, so codes come out standardised (about zero mean and
unit variance per dimension): the scale a GAN on the codes expects, and no latent-scale hyperparameter.

Training is denoising and shift-invariant: the encoder sees each image shifted by up to `augment_shift` pixels
with a fraction `input_dropout` of its pixels zeroed, and the decoder must reproduce the clean, unshifted image.
Codes then say which digit and which style rather than where the strokes sit, which is what the few-label
classifier needs (see `lightning_models.latent.few_label`).
"""

from __future__ import annotations

import contextvars
import inspect
import warnings
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from lightning_models.base import TrainingModule
from lightning_models.metrics.classifier import random_translate
from lightning_models.networks.conv import ConvDecoder, ConvEncoder

TRAIN_HINT = "Train one with `python cli.py fit --config configs/ae_mnist.yaml`"
# Latent models hold the autoencoder (or its encoder) frozen in eval mode on purpose, BatchNorm statistics
# included; Lightning's warning about modules in eval mode at the start of training says nothing new there.
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training")


class Autoencoder(TrainingModule):
    """Convolutional (denoising) autoencoder: `encode(images in [0, 1]) -> (B, latent_dim)`,
    `decode(codes) -> images in [0, 1]`.

    Args:
        image_shape: (C, H, W), linked from the datamodule by the CLI.
        num_classes: linked from the datamodule; unused by the autoencoder (its latent models read it).
        latent_dim: size of the code.
        width: channels of the encoder's first convolution (and the decoder's last hidden layer).
        augment_shift: training inputs are shifted by up to this many pixels (the target is not).
        input_dropout: fraction of input pixels zeroed during training (denoising).
        lr: Adam learning rate.
        seed: seed of the corruption noise (combined with rank and step).
        predict_grid_size: test images per reconstruction grid written by `cli.py predict`.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (1, 28, 28),
        num_classes: int = 10,
        latent_dim: int = 32,
        width: int = 32,
        augment_shift: int = 2,
        input_dropout: float = 0.2,
        lr: float = 1e-3,
        seed: int = 0,
        predict_grid_size: int = 32,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if latent_dim < 1:
            raise ValueError(f"--model.latent_dim must be >= 1, got {latent_dim}")
        if not 0.0 <= input_dropout < 1.0 or augment_shift < 0:
            raise ValueError("--model.input_dropout must be in [0, 1) and --model.augment_shift >= 0, got "
                             f"{input_dropout} and {augment_shift}")
        self.image_shape = tuple(int(s) for s in image_shape)
        self.latent_dim = latent_dim
        conv = ConvEncoder(self.image_shape, width, norm="batch")
        self.encoder = nn.Sequential(conv, nn.Flatten(), nn.Linear(conv.out_features, latent_dim),
                                     nn.BatchNorm1d(latent_dim, affine=False))  # standardised codes
        self.decoder = ConvDecoder(latent_dim, self.image_shape, width, norm="batch", output="none")  # logits

    # --- the contract ---------------------------------------------------------------------------------------
    def check_images(self, images: Tensor) -> None:
        if images.dim() != 4 or tuple(images.shape[1:]) != self.image_shape:
            raise ValueError(f"encode takes images of shape (B, {', '.join(map(str, self.image_shape))}), got "
                             f"{tuple(images.shape)}")
        if images.numel() and (images.min() < 0 or images.max() > 1):
            raise ValueError("encode takes images in [0, 1]; got values in "
                             f"[{images.min().item():.3g}, {images.max().item():.3g}] (map [-1, 1] with (x + 1) / 2)")

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """Codes (B, latent_dim) of images (B, C, H, W) in [0, 1], in eval mode, without gradients."""
        self.check_images(images)
        with self.eval_mode():
            return self.encoder(images.to(self.device))

    @torch.no_grad()
    def decode(self, codes: Tensor) -> Tensor:
        """Images (B, C, H, W) in [0, 1] of codes (B, latent_dim), in eval mode, without gradients."""
        if codes.dim() != 2 or codes.shape[1] != self.latent_dim:
            raise ValueError(f"decode takes codes of shape (B, {self.latent_dim}), got {tuple(codes.shape)}")
        with self.eval_mode():
            return torch.sigmoid(self.decoder(codes.to(self.device)))

    # --- training -------------------------------------------------------------------------------------------
    def corrupt(self, images: Tensor) -> Tensor:
        """The training input: shifted, with a random fraction of pixels zeroed (drawn from step-keyed noise)."""
        h = self.hparams
        images = random_translate(images, h.augment_shift)
        if h.input_dropout:
            rng = self.noise_generator(h.seed)
            keep = torch.rand(images.shape, device=images.device, generator=rng) >= h.input_dropout
            images = images * keep
        return images

    def reconstruction_loss(self, inputs: Tensor, targets: Tensor) -> Tensor:
        """Bernoulli negative log-likelihood (BCE summed over pixels), averaged over the batch."""
        logits = self.decoder(self.encoder(inputs))
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").flatten(1).sum(1).mean()

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        images = batch["image"]
        loss = self.reconstruction_loss(self.corrupt(images), images)  # checked finite in on_before_backward
        self.log_train({"train/reconstruction": loss}, prog_bar=("train/reconstruction",))
        return loss

    def _evaluate(self, batch: dict[str, Tensor], stage: str) -> None:
        images = batch["image"]
        self.log(f"{stage}/reconstruction", self.reconstruction_loss(images, images), prog_bar=True, sync_dist=True)
        self.log(f"{stage}/mse", F.mse_loss(self.decode(self.encode(images)), images), sync_dist=True)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, Tensor]:
        """`reconstructions`: rows alternating test images and their reconstructions."""
        images = batch["image"][: self.hparams.predict_grid_size]
        recon = self.decode(self.encode(images))
        rows = torch.stack([images.unflatten(0, (-1, 8)), recon.unflatten(0, (-1, 8))], 1) if len(images) % 8 == 0 \
            else torch.stack([images, recon], 1)
        return {"reconstructions": rows.flatten(0, -4)}

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def load_autoencoder(path: str | None, hparams: dict | None = None, option: str = "--model.autoencoder_path",
                     ) -> Autoencoder:
    """The frozen Autoencoder (eval mode, no gradients) a latent model builds on.

    With `hparams` (what the latent model stored in its own checkpoint), the autoencoder is rebuilt from them and
    the file is not read: the latent model's checkpoint carries the weights. Otherwise it is loaded from `path`,
    a checkpoint file or a run root such as `runs/ae_mnist` (its newest last.ckpt). A missing or wrong file is a
    FileNotFoundError / ValueError naming `option`, the path and how to train one.
    """
    # A fresh context: LightningCLI instantiates the latent model inside a context variable holding *its* init
    # arguments, which `save_hyperparameters` would otherwise record as the autoencoder's too.
    model = contextvars.Context().run(_build_autoencoder, path, hparams, option)
    model.eval()
    model.requires_grad_(False)
    return model


def stored_hparams(model: Autoencoder) -> dict:
    """What a latent model stores to rebuild `model` without its file: its init arguments, tuples as lists (what
    YAML and the CLI give back, so the stored value round-trips)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in model.hparams.items() if not k.startswith("_")}


def _build_autoencoder(path: str | None, hparams: dict | None, option: str) -> Autoencoder:
    if hparams:
        accepted = inspect.signature(Autoencoder).parameters  # drops what the CLI adds, such as `_class_path`
        return Autoencoder(**{k: v for k, v in hparams.items() if k in accepted})
    if not path:
        raise ValueError(f"{option} is required: the checkpoint of a trained autoencoder (a last.ckpt, or a run "
                         f"root such as runs/ae_mnist). {TRAIN_HINT} first.")
    from lightning_models.checkpoints import load_module

    return load_module(Autoencoder, path, option, f"{TRAIN_HINT}, then pass its checkpoints/last.ckpt or its run "
                       "root (runs/ae_mnist)", map_location="cpu")
