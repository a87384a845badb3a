"""GAN inversion: an encoder trained against a frozen pretrained generator, latent optimisation on top of it, and
restoration (denoising, inpainting) by inverting corrupted images.

Training (`fit`) updates only the encoder E; the generator G comes from a GAN checkpoint (`gan_path`, its EMA
generator when it has one) and never changes. Per batch of real images x and latents z ~ N(0, I):
    reconstruction_weight * |G(E(x)) - x|^2  +  latent_weight * |E(G(z)) - z|^2
  + feature_weight * |phi(G(E(x))) - phi(x)|^2   (phi: the project's classifier features, optional).
The generator's weights and architecture are stored in this module's checkpoint, so `load_from_checkpoint(path)`
needs neither arguments nor the GAN file. `cli.py test` scores encoder-only, optimisation-only and hybrid
inversion, denoising and inpainting (see `lightning_models.inversion.evaluation`); `cli.py predict` restores the
images of the datamodule's predict split (`predict_task`).
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pytorch_lightning.utilities.rank_zero import rank_zero_info
from torch import Tensor
from torchmetrics.image import PeakSignalNoiseRatio
from torchvision.utils import make_grid

from lightning_models.base import TrainingModule
from lightning_models.checkpoints import read_checkpoint, saved_class
from lightning_models.inversion.evaluation import InversionEvaluation
from lightning_models.inversion.restoration import (Combine, Corruption, MaskKind, Prior, center_mask, check_combine,
                                                    combine_restarts, corrupt, load_mask, optimize_restarts,
                                                    random_block_mask, show_holes)
from lightning_models.metrics.evaluation import ClassifierFeatures, load_classifier
from lightning_models.networks.conv import Norm
from lightning_models.networks.dcgan import Generator
from lightning_models.networks.inversion import LatentEncoder
from lightning_models.progress import phase_progress

GAN_HINT = ("Train one with `python cli.py fit --config configs/dcgan_mnist.yaml` and pass its last.ckpt, or the "
            "run root (runs/dcgan_mnist: its newest last.ckpt), as --model.gan_path")
Inversion = Literal["encoder", "optim", "hybrid"]
#: Options of inversion and restoration, not of training: left out of checkpoints, so that `cli.py test` and
#: `predict --ckpt_path ...` take them from the config and command line (LightningCLI otherwise replaces the
#: command line's model options by those saved in the checkpoint).
RUNTIME_OPTIONS = ("optim_steps", "optim_lr", "restarts", "prior", "prior_weight", "predict_task",
                   "predict_inversion", "sigma", "mask", "hole_size", "num_blocks", "block_size", "mask_path",
                   "inpaint_norm", "combine", "combine_temperature", "combine_top_k", "test_sigmas")

# The frozen generator stays in eval mode on purpose (see GANInversion.train); Lightning warns about it at fit start.
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training")


def load_generator_checkpoint(path: str) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """(generator config, generator weights) of the unconditional GAN saved at `path` (a checkpoint or a run
    root); the EMA generator's weights when the GAN kept one that was updated at least once. A bad file is a
    one-line error naming --model.gan_path, the file, what is wrong and how to train a GAN
    (`lightning_models.checkpoints`)."""
    path, checkpoint = read_checkpoint(path, "--model.gan_path", "GAN", GAN_HINT)
    holds = saved_class(checkpoint)
    if holds and holds.rsplit(".", 1)[-1] != "GAN":
        raise ValueError(f"--model.gan_path {path!r} holds a {holds}, not a GAN checkpoint (inversion needs the "
                         f"unconditional DCGAN generator). {GAN_HINT}.")
    hparams, state = dict(checkpoint.get("hyper_parameters") or {}), checkpoint["state_dict"]
    needed = ("latent_dim", "image_shape", "generator_width", "generator_norm")
    missing = [key for key in needed if key not in hparams]
    if missing:
        raise ValueError(f"--model.gan_path {path!r} is not a GAN checkpoint of this version of the code: it lacks "
                         f"the options {', '.join(missing)} (another model's, or an older layout). {GAN_HINT}.")
    config = {"latent_dim": int(hparams["latent_dim"]), "image_shape": [int(s) for s in hparams["image_shape"]],
              "width": int(hparams["generator_width"]), "norm": hparams["generator_norm"]}
    if hparams.get("conditional"):
        raise ValueError(f"--model.gan_path {path!r} is a conditional GAN; inversion needs an unconditional one. "
                         f"{GAN_HINT}.")
    ema_steps = state.get("generator_ema.n_averaged")
    prefix = "generator_ema.module." if ema_steps is not None and int(ema_steps) > 0 else "generator."
    weights = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
    if not weights:
        raise ValueError(f"--model.gan_path {path!r} holds no generator weights. {GAN_HINT}.")
    try:  # the weights must fit the generator the options describe (an older layout of the network would not)
        Generator(config["latent_dim"], tuple(config["image_shape"]), config["width"], 0,
                  config["norm"]).load_state_dict(weights)
    except RuntimeError as err:
        detail = (str(err).strip().splitlines() or [""])[-1].strip()[:200]
        raise ValueError(f"--model.gan_path {path!r}: its generator weights do not fit the current generator network "
                         f"(an older layout of this code? {detail}). {GAN_HINT}.") from err
    return config, weights


class GANInversion(InversionEvaluation, TrainingModule):
    """Inversion encoder for a frozen generator, latent-optimisation inverter and restoration (see module doc).

    Args:
        image_shape: (C, H, W), linked from the datamodule by the CLI; must be the GAN's.
        num_classes: linked from the datamodule (unused: the generator is unconditional).
        gan_path: checkpoint of an unconditional `GAN` (or its run root): the frozen generator.
        generator_config: the generator's architecture, read from `gan_path` and saved with this module; leave
            it null (a checkpoint of this module fills it in, so loading one needs no GAN file).
        encoder_width: channels of the encoder's first convolution.
        encoder_norm: normalisation of the encoder's convolutions.
        lr: Adam learning rate of the encoder.
        reconstruction_weight: weight of |G(E(x)) - x|^2 on real images (images in [-1, 1]).
        latent_weight: weight of |E(G(z)) - z|^2 on sampled latents.
        feature_weight: weight of the classifier-feature loss (0 = off; needs `classifier_path`).
        classifier_path: classifier checkpoint (or run root) for the feature loss.
        optim_steps: Adam steps of latent optimisation per image.
        optim_lr: Adam learning rate on z (decayed along a cosine to 0).
        restarts: starts per image, all optimised as one batch (hybrid: the encoder's guess plus `restarts - 1`
            random ones); the best is kept, or restoration combines them (`combine`).
        prior: penalty on z: `norm` ((|z|^2/d - 1)^2, stay on the N(0, I) shell) or `gaussian` (mean z^2).
        prior_weight: weight of that penalty against the per-pixel data loss.
        predict_task: what `cli.py predict` does: `reconstruct`, `denoise` (noise of std `sigma`) or `inpaint`.
        predict_inversion: how predict inverts: `encoder`, `optim` (random starts) or `hybrid` (encoder start).
        sigma: noise std of `denoise`, images in [0, 1].
        mask: hole of `inpaint`: `center` (a `hole_size` square), `blocks` (`num_blocks` random
            `block_size` squares per image) or `file` (`mask_path`: white = known, black = hole).
        hole_size: side of the centre hole (also the hole of `cli.py test`'s inpainting score).
        num_blocks: random blocks per image (`mask: blocks`).
        block_size: side of each random block.
        mask_path: mask image of the data's size (`mask: file`).
        inpaint_norm: data term of inpainting on the known pixels, `l2` or `l1` (denoising always uses l2).
        combine: how restoration (denoise, inpaint; test and predict) turns the restarts into one image: `best`
            (the restart of lowest data + prior loss) or `mean` (their weighted mean: the MSE-optimal answer when
            several completions fit, e.g. a hole that more than one digit fits). Reconstruction keeps the best.
        combine_temperature: `mean` weights softmax(-loss / temperature) over the restarts; null: equal weights.
        combine_top_k: `mean` over the `combine_top_k` restarts of lowest loss only; null: all of them.
        test_sigmas: noise levels scored by `cli.py test`.
        seed: seed of the training latents and of the restarts, noise and masks of test/predict.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (1, 28, 28),
        num_classes: int = 10,
        gan_path: str | None = None,
        generator_config: dict[str, Any] | None = None,
        encoder_width: int = 64,
        encoder_norm: Norm = "batch",
        lr: float = 1e-3,
        reconstruction_weight: float = 1.0,
        latent_weight: float = 1.0,
        feature_weight: float = 0.0,
        classifier_path: str | None = None,
        optim_steps: int = 200,
        optim_lr: float = 0.1,
        restarts: int = 4,
        prior: Prior = "norm",
        prior_weight: float = 0.01,
        predict_task: Corruption = "reconstruct",
        predict_inversion: Inversion = "hybrid",
        sigma: float = 0.3,
        mask: MaskKind = "center",
        hole_size: int = 10,
        num_blocks: int = 3,
        block_size: int = 6,
        mask_path: str | None = None,
        inpaint_norm: Literal["l1", "l2"] = "l2",
        combine: Combine = "best",
        combine_temperature: float | None = None,
        combine_top_k: int | None = None,
        test_sigmas: tuple[float, ...] = (0.3, 0.5),
        seed: int = 0,
    ) -> None:
        super().__init__()
        weights = None
        if generator_config is None:
            generator_config, weights = load_generator_checkpoint(gan_path)
        self.save_hyperparameters()
        self.hparams.generator_config = generator_config  # saved in checkpoints: loading needs no GAN file
        if tuple(generator_config["image_shape"]) != tuple(image_shape):
            raise ValueError(f"--model.gan_path {gan_path!r} generates {tuple(generator_config['image_shape'])} "
                             f"images but the data serves {tuple(image_shape)}: use a GAN trained on this data "
                             "(same --data.image_size)")
        if feature_weight > 0 and not classifier_path:
            raise ValueError("--model.feature_weight > 0 needs --model.classifier_path (train a classifier with "
                             "`python cli.py fit --config configs/classifier_mnist.yaml`)")
        check_combine(combine, combine_temperature, combine_top_k)
        if mask == "file" and not mask_path:
            raise ValueError("--model.mask file needs --model.mask_path (white = known, black = hole)")
        self.latent_dim = generator_config["latent_dim"]
        self.generator = Generator(self.latent_dim, tuple(generator_config["image_shape"]),
                                   generator_config["width"], 0, generator_config["norm"])
        if weights is not None:
            self.generator.load_state_dict(weights)
        self.generator.requires_grad_(False).eval()
        self.encoder = LatentEncoder(tuple(image_shape), self.latent_dim, encoder_width, encoder_norm)
        self.val_psnr = PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3))
        self.build_test_metrics()
        self.file_mask = load_mask(mask_path, tuple(image_shape)) if mask == "file" else None

    def train(self, mode: bool = True) -> GANInversion:
        """Lightning switches the module to train mode for fit; the frozen generator stays in eval mode (its
        BatchNorm uses the GAN's running statistics, so each output depends on its own latent only)."""
        super().train(mode)
        self.generator.eval()
        return self

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        for name in RUNTIME_OPTIONS:
            checkpoint["hyper_parameters"].pop(name, None)

    def configure_optimizers(self):
        return torch.optim.Adam(self.encoder.parameters(), lr=self.hparams.lr)

    # --- images in [0, 1] <-> latents -----------------------------------------------------------------------------
    def encode(self, images: Tensor) -> Tensor:
        """The encoder's latents (B, latent_dim) of images (B, C, H, W) in [0, 1]."""
        return self.encoder(images * 2 - 1)

    def decode(self, latents: Tensor) -> Tensor:
        """Generator images (B, C, H, W) in [0, 1] of latents (B, latent_dim)."""
        return ((self.generator(latents) + 1) / 2).clamp(0, 1)

    def invert(self, observed: Tensor, how: Inversion, mask: Tensor | None = None, norm: Literal["l1", "l2"] = "l2",
               generator: torch.Generator | None = None, combine: Combine = "best") -> tuple[Tensor, Tensor]:
        """(latents, generator images in [0, 1]) fitting `observed` (B, C, H, W) in [0, 1] on its known pixels
        (`mask`: 1 = known): by the encoder alone, by latent optimisation from random starts, or from the
        encoder's guess (hybrid). The encoder sees holes as mid-gray, "unknown", not as black background, which
        would read as "no stroke here" (measured: +0.9 dB in a 10x10 centre hole of MNIST digits).
        `combine` (optimisation only): `best` keeps the image of the restart of lowest loss, `mean` the weighted
        mean of the restarts' images (`combine_restarts` with `combine_temperature`, `combine_top_k`); the latents
        are the best restart's either way."""
        if how == "encoder":
            with torch.no_grad():
                latents = self.encode(show_holes(observed, mask))
                return latents, self.decode(latents)
        latents, images, losses = self.invert_restarts(observed, how, mask, norm, generator)
        h = self.hparams
        best = losses.argmin(0), torch.arange(len(observed), device=observed.device)
        return latents[best], combine_restarts(images, losses, combine, h.combine_temperature, h.combine_top_k)

    def invert_restarts(self, observed: Tensor, how: Literal["optim", "hybrid"], mask: Tensor | None = None,
                        norm: Literal["l1", "l2"] = "l2", generator: torch.Generator | None = None
                        ) -> tuple[Tensor, Tensor, Tensor]:
        """Every restart of latent optimisation (see `invert`): latents (R, B, latent_dim), their generator images
        (R, B, C, H, W) in [0, 1] and losses (R, B), data + prior (`optimize_restarts`), R = `restarts`."""
        h = self.hparams
        with torch.no_grad():
            init = self.encode(show_holes(observed, mask)) if how == "hybrid" else None
        phase = (f"{self.__dict__.get('_batch_label', 'inversion')}: latent optimisation ({how}"
                 f"{', masked' if mask is not None else ''}, {h.restarts} restarts x {len(observed)} images)")
        with phase_progress(self._trainer, phase, h.optim_steps + 1, "steps") as progress:
            def generate(z: Tensor) -> Tensor:  # called once per Adam step (and once at the end)
                progress(1)
                return self.generator(z)

            latents, losses = optimize_restarts(
                generate, observed * 2 - 1, self.latent_dim, steps=h.optim_steps, lr=h.optim_lr,
                restarts=h.restarts, prior_weight=h.prior_weight, prior=h.prior, norm=norm, mask=mask, init=init,
                generator=generator)
        with torch.no_grad():
            images = self.decode(latents.flatten(0, 1)).view(*latents.shape[:2], *observed.shape[1:])
        return latents, images, losses

    # --- progress of test and predict (latent optimisation is slow on a CPU) ----------------------------------------
    def on_test_epoch_start(self) -> None:
        h = self.hparams
        phases = ["optim", "hybrid", *(f"denoise sigma {s:g}" for s in h.test_sigmas), "inpaint"]
        rank_zero_info(f"test: per batch, {len(phases)} latent optimisations ({', '.join(phases)}) of {h.optim_steps} "
                       f"Adam steps on {h.restarts} restarts per image (--model.optim_steps, --model.restarts)")

    def on_test_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.__dict__["_batch_label"] = f"test batch {batch_idx + 1}/{self.trainer.num_test_batches[dataloader_idx]}"

    def on_predict_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        total = self.trainer.num_predict_batches[dataloader_idx]
        self.__dict__["_batch_label"] = f"predict batch {batch_idx + 1}/{total}"

    # --- training ---------------------------------------------------------------------------------------------------
    def check_inputs(self, stage: str) -> None:
        """The feature loss's classifier is read when `fit` starts: checked before anything is written."""
        super().check_inputs(stage)
        if stage == "fit" and self.hparams.feature_weight > 0:
            load_classifier(self.hparams.classifier_path)

    def on_fit_start(self) -> None:
        if self.hparams.feature_weight > 0:  # held outside the module tree: not saved, never in train mode
            self.__dict__["_features"] = ClassifierFeatures(load_classifier(self.hparams.classifier_path))

    def feature_loss(self, fakes: Tensor, reals: Tensor) -> Tensor:
        """Mean squared distance of classifier features, images in [0, 1]; gradients flow into `fakes`."""
        extractor = self.__dict__["_features"]
        reals_features = extractor(reals)  # no grad
        fakes_features = extractor.classifier.features(extractor._prepare(fakes))
        return F.mse_loss(fakes_features, reals_features)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        h = self.hparams
        real = batch["image"] * 2 - 1  # generator range [-1, 1]
        z = torch.randn(len(real), self.latent_dim, device=self.device, generator=self.noise_generator(h.seed))
        with torch.no_grad():
            fake = self.generator(z)
        codes = self.encoder(torch.cat([real, fake]))  # one pass: one set of BatchNorm statistics
        real_codes, fake_codes = codes.split(len(real))
        reconstruction = self.generator(real_codes)
        loss_rec = F.mse_loss(reconstruction, real)
        loss_latent = F.mse_loss(fake_codes, z)
        loss = h.reconstruction_weight * loss_rec + h.latent_weight * loss_latent
        logs = {"train/loss_reconstruction": loss_rec, "train/loss_latent": loss_latent}
        if h.feature_weight > 0:
            loss_feature = self.feature_loss((reconstruction + 1) / 2, batch["image"])
            loss = loss + h.feature_weight * loss_feature
            logs["train/loss_feature"] = loss_feature
        logs["train/loss"] = loss  # checked finite in on_before_backward
        self.log_train(logs, prog_bar=("train/loss",))
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        images = batch["image"]
        self.val_psnr.update(self.decode(self.encode(images)), images)
        self.log("val/psnr_encoder", self.val_psnr, prog_bar=True)

    # --- restoration (cli.py predict) -------------------------------------------------------------------------------
    def make_mask(self, n: int, generator: torch.Generator | None) -> Tensor:
        """The inpainting mask of `n` images for predict ((1 or n, 1, H, W), 1 = known)."""
        h, shape = self.hparams, tuple(self.hparams.image_shape)
        if h.mask == "center":
            return center_mask(shape, h.hole_size, self.device)
        if h.mask == "blocks":
            return random_block_mask(n, shape, h.num_blocks, h.block_size, generator, self.device)
        return self.file_mask.to(self.device)

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """`strips`: one picture per batch, a row per image: original | corrupted (holes in gray) | encoder only |
        restored; and `restored`: the restored images (inpainting keeps the known pixels and fills the hole)."""
        h, images = self.hparams, batch["image"]
        rng = torch.Generator(device=self.device).manual_seed(h.seed * 1_000_003 + batch_idx)
        mask = self.make_mask(len(images), rng) if h.predict_task == "inpaint" else None
        observed = corrupt(images, h.predict_task, h.sigma, mask, rng)
        norm = h.inpaint_norm if mask is not None else "l2"
        _, encoder_only = self.invert(observed, "encoder", mask)
        combine = h.combine if h.predict_task != "reconstruct" else "best"
        _, restored = self.invert(observed, h.predict_inversion, mask, norm, rng, combine)
        if mask is not None:
            restored = observed * mask + restored * (1 - mask)
        rows = torch.cat([images, show_holes(observed.clamp(0, 1), mask), encoder_only, restored], dim=-1)
        return {"strips": make_grid(rows, nrow=1, padding=2, pad_value=1.0)[None], "restored": restored}
