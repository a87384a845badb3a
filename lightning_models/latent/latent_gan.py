"""GAN and conditional GAN in a trained autoencoder's latent space (stage 2 of the two-stage workflow).

The foundation's GAN step, unchanged: only its hooks differ. The discriminator's real inputs are the frozen
encoder's codes of the training images (standardised by the encoder's last BatchNorm), the generator and the
discriminator are MLPs on those vectors (the label enters both as a one-hot vector when `conditional`), and
`sample` decodes the generated codes with the autoencoder's decoder.

The encoder is frozen and the images of a plain datamodule (MNIST, Fashion-MNIST) reach the model as stored, so
with `cache_codes` the whole training split is encoded once when `fit` starts and each batch looks its codes up by
the images' fingerprints (`lightning_models.latent.split_rows`) instead of running the encoder again every epoch.

The autoencoder is a frozen submodule, so its weights are in this model's checkpoint, and its hyperparameters are
stored in this model's (`autoencoder_hparams`): `LatentGAN.load_from_checkpoint(path)` needs no autoencoder file.

`predict` adds interpolation strips to the sample grids: between generator inputs (noise space) and between the
codes of pairs of test images (autoencoder space), linear and spherical, one row per pair. `test` adds the mean
classifier confidence along each of those four kinds of path (`test/interpolation_confidence_<space>_<kind>`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lightning_models.gan.gan import GAN
from lightning_models.latent.autoencoder import load_autoencoder, stored_hparams
from lightning_models.latent.interpolation import KINDS, interpolate
from lightning_models.latent.split_rows import SplitRows, serves_split_images_unchanged
from lightning_models.networks.mlp import MLP


class LatentGAN(GAN):
    """(Conditional) GAN on autoencoder codes; see the module doc. Options not listed are `GAN`'s (`conditional`,
    `loss`, `n_critic`, learning rates, `ema_decay`, `classifier_path`, ...); its image-network options
    (`generator_norm`, `minibatch_std`) do not apply.

    Args:
        autoencoder_path: checkpoint (or run root) of a trained `Autoencoder` (`configs/ae_mnist.yaml`).
        latent_dim: size of the generator's noise.
        generator_width: width of the generator's hidden layers.
        discriminator_width: width of the discriminator's hidden layers.
        hidden_layers: hidden layers of each MLP.
        discriminator_norm: "none" (default) or "spectral" (spectral norm on every discriminator layer, which
            keeps an MLP critic on standardised codes too weak to tell real from fake).
        discriminator_condition: how a conditional discriminator sees the label: "projection" (default; logit
            += <embed(y), h>) or "concat" (a one-hot vector next to the code, the source report's cGAN).
        interpolation_steps: points per interpolation strip (endpoints included).
        num_interpolation_pairs: pairs per kind of path scored by `cli.py test`.
        cache_codes: encode the training split once at the start of `fit` and look each batch's codes up (about
            40% of a CPU training step is the encoder pass otherwise); used only when the datamodule serves its
            images unchanged, else (and for batches not in the split) every batch is encoded.
        autoencoder_hparams: filled in from the autoencoder checkpoint and saved with this model; leave it null.
    """

    output_range = (0.0, 1.0)  # generate() returns decoded images

    def __init__(
        self,
        autoencoder_path: str | None = None,
        latent_dim: int = 32,
        generator_width: int = 256,
        discriminator_width: int = 256,
        hidden_layers: int = 2,
        discriminator_norm: str = "none",
        discriminator_condition: str = "projection",
        interpolation_steps: int = 8,
        num_interpolation_pairs: int = 128,
        cache_codes: bool = True,
        autoencoder_hparams: dict | None = None,
        **kwargs,
    ) -> None:
        autoencoder = load_autoencoder(autoencoder_path, autoencoder_hparams)
        # build_networks (called inside GAN.__init__) needs the code size; a plain attribute may be set before
        # nn.Module.__init__, a submodule may not
        self.code_dim = autoencoder.latent_dim
        if discriminator_norm not in ("spectral", "none"):
            raise ValueError(f"--model.discriminator_norm must be 'spectral' or 'none' for LatentGAN, got "
                             f"{discriminator_norm!r}")
        if discriminator_condition not in ("projection", "concat"):
            raise ValueError(f"--model.discriminator_condition must be 'projection' or 'concat', got "
                             f"{discriminator_condition!r}")
        image_shape = tuple(kwargs.get("image_shape", autoencoder.image_shape))
        if image_shape != autoencoder.image_shape:
            raise ValueError(f"the autoencoder {autoencoder_path!r} makes images {autoencoder.image_shape}, the data "
                             f"has {image_shape}: train one on this data")
        if interpolation_steps < 2 or num_interpolation_pairs < 1:
            raise ValueError("--model.interpolation_steps must be >= 2 and --model.num_interpolation_pairs >= 1")
        super().__init__(latent_dim=latent_dim, generator_width=generator_width,
                         discriminator_width=discriminator_width, discriminator_norm=discriminator_norm, **kwargs)
        self.autoencoder = autoencoder  # frozen (load_autoencoder); its weights travel in the checkpoint
        self.hparams["autoencoder_hparams"] = stored_hparams(autoencoder)  # so loading rebuilds it without the file

    # --- GAN hooks --------------------------------------------------------------------------------------------
    def build_networks(self) -> tuple[torch.nn.Module, torch.nn.Module]:
        h = self.hparams
        cond = self.num_classes if self.conditional else 0
        generator = MLP(h.latent_dim, self.code_dim, [h.generator_width] * h.hidden_layers, cond)
        discriminator = MLP(self.code_dim, 1, [h.discriminator_width] * h.hidden_layers, cond, activation="leaky_relu",
                            spectral=h.discriminator_norm == "spectral", condition=h.discriminator_condition)
        return generator, discriminator

    def real_inputs(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor | None]:
        images = batch["image"]
        cache = self.__dict__.get("_code_cache")
        rows = cache[0].find(images) if cache is not None and cache[0].device == images.device else None
        if rows is not None:
            codes = cache[1][rows]
        else:
            # the frozen encoder directly (always in eval mode, see `train`): `encode` would also check every
            # batch's value range, a host sync per step, for images the datamodule already gives in [0, 1]
            with torch.no_grad():
                codes = self.autoencoder.encoder(images)
        return codes, (batch["label"] if self.conditional else None)

    def cache_training_codes(self, images: Tensor, chunk: int = 1024) -> None:
        """Encodes `images` (uint8 (N, C, H, W), the training split) once, on this module's device, for
        `real_inputs` to look up (`cache_codes`)."""
        with torch.no_grad():
            codes = torch.cat([self.autoencoder.encoder(part.to(self.device).float() / 255)
                               for part in images.split(chunk)])
        self.__dict__["_code_cache"] = (SplitRows(images).to(self.device), codes)  # not a buffer: no checkpoint

    def on_fit_start(self) -> None:
        super().on_fit_start()
        self.__dict__.pop("_code_cache", None)
        datamodule = getattr(self.trainer, "datamodule", None)
        if self.hparams.cache_codes and serves_split_images_unchanged(datamodule):
            self.cache_training_codes(datamodule.split("train")["image"])

    def on_fit_end(self) -> None:
        super().on_fit_end()
        self.__dict__.pop("_code_cache", None)  # the split's codes: memory a finished fit no longer needs

    def train(self, mode: bool = True):
        super().train(mode)
        self.autoencoder.eval()  # frozen, BatchNorm statistics included
        return self

    def generate(self, n: int, labels: Tensor | None, generator: torch.Generator | None) -> Tensor:
        return self.autoencoder.decode(super().generate(n, labels, generator))

    # --- interpolation ------------------------------------------------------------------------------------------
    def interpolation_paths(self, space: str, kind: str, pairs: int, images: Tensor | None = None,
                            generator: torch.Generator | None = None) -> Tensor:
        """Decoded paths (pairs * steps, C, H, W) in [0, 1], pair by pair. `space="noise"`: between two generator
        inputs (conditional models keep one label per pair, labels cycling over the classes); `space="latent"`:
        between the codes of `images[:pairs]` and `images[pairs:2 * pairs]` (test images in [0, 1])."""
        steps = self.hparams.interpolation_steps
        with torch.no_grad():
            if space == "latent":
                codes = self.autoencoder.encode(images[: 2 * pairs])
                return self.autoencoder.decode(interpolate(codes[:pairs], codes[pairs:], steps, kind).flatten(0, 1))
            if space != "noise":
                raise ValueError(f"interpolation space must be 'noise' or 'latent', got {space!r}")
            z = self.draw_latent(2 * pairs, generator)
            path = interpolate(z[:pairs], z[pairs:], steps, kind).flatten(0, 1)
            labels = None
            if self.conditional:
                labels = (torch.arange(pairs, device=self.device) % self.num_classes).repeat_interleave(steps)
            with self.eval_mode():
                return self.autoencoder.decode(self.sampling_generator()(path, labels))

    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, Tensor]:
        """Sample grids (see `GenerativeModule.predict_step`) and `interpolate_<noise|latent>_<linear|slerp>`
        grids: one strip of `interpolation_steps` images per row."""
        out = super().predict_step(batch, batch_idx)
        pairs = max(1, min(self.hparams.predict_grid_size // self.hparams.interpolation_steps,
                           len(batch["image"]) // 2))
        for kind in KINDS:
            rng = torch.Generator(device=self.device).manual_seed(batch_idx)
            out[f"interpolate_noise_{kind}"] = self.interpolation_paths("noise", kind, pairs, generator=rng)
            if len(batch["image"]) >= 2:
                out[f"interpolate_latent_{kind}"] = self.interpolation_paths("latent", kind, pairs, batch["image"])
        return out

    # --- cli.py test: the GAN's metrics plus the confidence along interpolation paths ---------------------------
    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self.interpolation_images: list[Tensor] = []

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        super().test_step(batch, batch_idx)
        have = sum(len(x) for x in self.interpolation_images)
        if have < 2 * self.hparams.num_interpolation_pairs:
            self.interpolation_images.append(batch["image"][: 2 * self.hparams.num_interpolation_pairs - have])

    def on_test_epoch_end(self) -> None:
        images = torch.cat(self.interpolation_images)
        pairs = min(self.hparams.num_interpolation_pairs, len(images) // 2)
        extractor = self.evaluator.extractor
        rng = torch.Generator(device=self.device).manual_seed(54321)
        scores = {}
        for space in ("noise", "latent"):
            for kind in KINDS:
                paths = self.interpolation_paths(space, kind, pairs, images, rng)
                confidence = extractor.logits(extractor(paths)).softmax(1).amax(1)
                scores[f"test/interpolation_confidence_{space}_{kind}"] = confidence.mean()
        self.log_dict(scores)
        del self.interpolation_images
        super().on_test_epoch_end()
