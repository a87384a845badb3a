"""The VAE training scheme: one model for continuous (Gaussian), discrete (Gumbel-softmax) and joint latents,
with color-controllable sampling.

The latent code is the decoder's input, laid out as `[z (continuous_dim) | one-hot of variable 1 | ...]`.
Training: a reparameterised Gaussian sample and relaxed Gumbel-softmax samples (temperature annealed over
`global_step`, which here counts batches: one optimizer step each), Bernoulli reconstruction (BCE summed over
pixels) plus the KL terms, either weighted by `beta` or held at JointVAE capacities. Evaluation uses exact
categorical samples, so `val/neg_elbo` and `test/neg_elbo` are single-sample estimates of a true bound.

Color control: every training step adds the batch's posteriors, by color, to a moving average kept in buffers
(so every checkpoint has current statistics; with `color_bank`, also the last posterior means of each color): see
`lightning_models.vae.color_latents`. `sample(n, labels=color_ids)`
draws codes from the requested colors' regions; `sample(n)` draws from the prior. With `color_decoder` the color
is instead a one-hot block of the code that the decoder is trained on (a conditional VAE), set by `sample`.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

import lightning_models.vae.latents as L
from lightning_models.augment import check_consistency, random_affine, random_recolor
from lightning_models.base import GenerativeModule
from lightning_models.losses import invariant_information_loss
from lightning_models.metrics.sample_scores import SampleScores
from lightning_models.networks import batch_statistics_frozen
from lightning_models.networks.conv import Norm
from lightning_models.networks.vae import Architecture, build_decoder, build_encoder
from lightning_models.vae.color_latents import ColorLatents
from lightning_models.vae.evaluation import VAEEvaluation


class VAE(VAEEvaluation, SampleScores, GenerativeModule):
    """VAE with a continuous, a categorical or a joint latent (JointVAE, Dupont 2018) and color control.

    `sample(n)` draws from the prior; `sample(n, labels)` takes color ids, which index the datamodule's palette
    (`ColoredMNISTDataModule.palette`, by default 0 red, 1 green, 2 blue, 3 yellow, 4 magenta, 5 cyan,
    6 orange, 7 violet, 8 white, 9 chartreuse), and draws from the latent region learned for each color. So
    `num_classes` (the digits) is kept as `num_digits`, and `self.num_classes` is the number of colors, the
    label space that `sample`, `SampleGrid` and `predict` see. `encode(images)` gives the posterior mode as a
    latent code and `decode(codes)` images in [0, 1].

    Args:
        image_shape: (C, H, W), linked from the datamodule by the CLI.
        num_classes: digit classes, linked from the datamodule (used by the clustering metric and plots).
        num_colors: colors of the datamodule's palette (`--data.palette`); color ids of `sample` are below it.
            0 turns color control off (data without colors): `sample` then takes no labels.
        continuous_dim: size of the Gaussian latent (0 = none).
        categorical_dims: number of categories of each categorical latent variable (empty = none).
        architecture: "mlp" (the source report's 2352-512-256 encoder and mirrored decoder) or "conv"
            (`networks.conv` blocks with a 256-unit fully connected layer on each side, see `networks.vae`).
        mlp_hidden: hidden widths of the MLP encoder (the decoder uses them reversed).
        conv_width: channels of the first convolution of the conv encoder / last of the conv decoder.
        norm: normalisation of the hidden layers: "batch" (default; for the MLP it keeps categorical posteriors
            from all collapsing onto one category early on) or "none" (the report's MLP); conv also takes
            "instance" and "spectral" (see `networks.conv`).
        beta: weight of the KL terms without capacities (1 = the ELBO).
        capacity_continuous: JointVAE capacity (nats) the continuous KL is pushed to, rising linearly from 0
            over `capacity_steps` (None = plain `beta` weighting of that KL).
        capacity_categorical: the same for the summed categorical KL; capped at sum(log K), its largest value.
        capacity_steps: steps (batches) over which the capacities rise to their maxima.
        capacity_gamma: weight gamma of the capacity terms gamma * |KL - C(step)|.
        temperature: Gumbel-softmax temperature at step 0.
        temperature_min: temperature reached (geometrically) after `temperature_anneal_steps` steps (batches).
        temperature_anneal_steps: length of the temperature schedule (0 = `temperature_min` from the start).
        straight_through: train with hard one-hot categorical samples and the relaxed sample's gradient
            (straight-through Gumbel-softmax) instead of relaxed samples.
        consistency_weight: weight of a consistency term on the first categorical variable (0 = off, plain
            JointVAE): minus the mutual information between its category of each training image and of a copy
            randomly warped (`consistency_warp`) and, for RGB images with `consistency_recolor`, redrawn in a
            random color: the IIC loss of Ji et al. 2019, as InfoGAN's `consistency_weight`. The ELBO alone lets
            a categorical variable split the data by whatever saves most nats (on colored MNIST: color, thickness);
            this asks the variable for categories that the warps and colors do not change, used equally often,
            which on digits are the digit classes. The copy costs one more encoder pass per step.
        consistency_warp: (max rotation in degrees, max relative zoom, max shift as a fraction of the half-width)
            of the copies' warps; one draw per image and step.
        consistency_recolor: redraw the copies of RGB images in a random color (`augment.random_recolor`), so
            the variable cannot cluster by color; ignored for 1-channel images.
        consistency_overcluster: categories of an auxiliary overclustering head (0 = none): extra encoder outputs,
            not part of the code, trained by the same consistency term as the first variable (the auxiliary
            overclustering of Ji et al. 2019: finer clusters shape the shared encoder features the digit variable
            reads). Needs `consistency_weight > 0`.
        lr: Adam learning rate.
        color_decoder: condition the decoder on the color id (a conditional VAE for color, Sohn et al. 2015):
            the code gets a one-hot color block after the categorical variables, the decoder is trained on the
            true color of each training image, and the encoder gets a color head trained on the color labels
            (cross-entropy, added to the loss; as the classifier of Kingma et al. 2014's M2) so that `encode`
            gives a whole code. `sample(n, labels=color_ids)` then draws the rest of the code from the prior and
            sets the color block, instead of drawing codes from the per-color statistics (the `color_*` sampler
            options are then unused). Needs `num_colors > 0`. The bound (`neg_elbo`) is then of the images given
            their colors.
        color_stats_decay: per-batch decay of the per-color posterior statistics (0.9 averages about the last
            10 batches, so they follow the encoder as it trains).
        color_candidates: draws per color-requested sample, of which the first that the color model attributes
            to the requested color is kept (1 = no selection); see `color_latents`.
        color_temperature: sampling temperature of the color model (1 = its fitted spread; lower = more typical,
            fewer off-color samples, less variety). Prior samples (`sample(n)`) are not affected.
        color_bank: posterior means of the last `color_bank` training images of each color kept (in the
            checkpoint) to draw the continuous part from their kernel density estimate instead of one Gaussian
            per color (0 = one Gaussian); see `color_latents`.
        seed: seed of the training noise (combined with rank and step).
        num_eval_samples: samples drawn by `cli.py test` for `test/color_accuracy` and the classifier scores.
        classifier_path: optional: a digit `Classifier` checkpoint (`configs/classifier_mnist.yaml`); with it
            `test` adds the classifier scores of the GANs (Fréchet distance, KID, precision/recall, diversity,
            class coverage) for `num_eval_samples` prior samples `sample(n)`, colored images scored by their
            brightest channel.
        predict_grid_size: samples per color written by `cli.py predict`.
    """

    test_needs_classifier = False  # its test scores what it can without a classifier

    def scored_labels(self) -> tuple[int, bool]:
        """The classifier scores digits; the samples are prior samples (the labels of `sample` are colors)."""
        return self.num_digits, False

    output_range = (0.0, 1.0)

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (3, 28, 28),
        num_classes: int = 10,
        num_colors: int = 10,
        continuous_dim: int = 3,
        categorical_dims: Sequence[int] = (),
        architecture: Architecture = "mlp",
        mlp_hidden: Sequence[int] = (512, 256),
        conv_width: int = 32,
        norm: Norm = "batch",
        beta: float = 1.0,
        capacity_continuous: float | None = None,
        capacity_categorical: float | None = None,
        capacity_steps: int = 25_000,
        capacity_gamma: float = 30.0,
        temperature: float = 1.0,
        temperature_min: float = 0.5,
        temperature_anneal_steps: int = 10_000,
        straight_through: bool = False,
        consistency_weight: float = 0.0,
        consistency_warp: tuple[float, float, float] = (15.0, 0.15, 0.1),
        consistency_recolor: bool = True,
        consistency_overcluster: int = 0,
        lr: float = 1e-3,
        color_decoder: bool = False,
        color_stats_decay: float = 0.9,
        color_candidates: int = 16,
        color_temperature: float = 0.5,
        color_bank: int = 0,
        seed: int = 0,
        num_eval_samples: int = 2000,
        predict_grid_size: int = 16,
        classifier_path: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.categorical_dims = [int(k) for k in categorical_dims]
        if continuous_dim < 0 or (continuous_dim == 0 and not self.categorical_dims):
            raise ValueError("the latent is empty: set --model.continuous_dim > 0 and/or --model.categorical_dims "
                             f"(e.g. [10]); got continuous_dim={continuous_dim}, categorical_dims={categorical_dims}")
        if any(k < 2 for k in self.categorical_dims):
            raise ValueError(f"--model.categorical_dims: every variable needs >= 2 categories, got {categorical_dims}")
        if num_colors < 0:
            raise ValueError(f"--model.num_colors must be >= 0 (0 = no color control), got {num_colors}")
        if not 0.0 <= color_stats_decay < 1.0:
            raise ValueError(f"--model.color_stats_decay must be in [0, 1), got {color_stats_decay}")
        if color_temperature <= 0 or color_candidates < 1:
            raise ValueError("--model.color_temperature must be > 0 and --model.color_candidates >= 1, got "
                             f"{color_temperature} and {color_candidates}")
        if color_decoder and num_colors == 0:
            raise ValueError("--model.color_decoder true conditions the decoder on color ids: it needs "
                             "--model.num_colors > 0 (the datamodule's palette size)")
        if color_bank < 0:
            raise ValueError(f"--model.color_bank must be >= 0 (0 = one Gaussian per color), got {color_bank}")
        L.annealed_temperature(0, temperature, temperature_min, 1)  # validates the temperatures at the CLI
        check_consistency(consistency_weight, consistency_warp, categorical_dims, "--model.categorical_dims")
        if consistency_overcluster < 0 or consistency_overcluster == 1 or (consistency_overcluster
                                                                          and not consistency_weight):
            raise ValueError("--model.consistency_overcluster must be 0 (none) or >= 2 categories, and needs "
                             f"--model.consistency_weight > 0; got {consistency_overcluster} with weight "
                             f"{consistency_weight}")
        self.overcluster = consistency_overcluster
        self.continuous_dim = continuous_dim
        self.color_code_size = num_colors if color_decoder else 0  # the one-hot color block of the code
        self.latent_size = continuous_dim + sum(self.categorical_dims) + self.color_code_size
        self.num_digits = num_classes
        self.num_colors = num_colors
        self.conditional = num_colors > 0
        self.num_classes = num_colors  # the label space of sample(), checked by GenerativeModule.check_labels
        image_shape = tuple(image_shape)
        self.encoder = build_encoder(architecture, image_shape,
                                     2 * continuous_dim + sum(self.categorical_dims) + self.color_code_size
                                     + self.overcluster,
                                     mlp_hidden, conv_width, norm)
        self.decoder = build_decoder(architecture, self.latent_size, image_shape, mlp_hidden, conv_width, norm)
        # color sampling from the posterior's color regions; the color decoder is given the color instead
        self.color_latents = (None if color_decoder else
                              ColorLatents(num_colors, continuous_dim, self.categorical_dims, color_bank))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    def setup(self, stage: str) -> None:
        data = self.trainer.datamodule
        if data is None or stage != "fit" or not self.conditional:
            return
        colors = getattr(data, "num_colors", None)
        if colors is None:
            raise ValueError(f"--model.num_colors {self.num_colors}: {type(data).__name__} has no colors; use "
                             "ColoredMNISTDataModule, or pass --model.num_colors 0 to train without color control")
        if colors != self.num_colors:
            raise ValueError(f"--model.num_colors {self.num_colors} but the datamodule's palette has {colors} colors: "
                             f"pass --model.num_colors {colors}")

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Checkpoints of color-decoder models written before it stopped keeping the unused color statistics
        (2026-12-07) still load: their `color_latents.*` buffers are dropped."""
        super().on_load_checkpoint(checkpoint)
        if self.color_latents is None:
            state = checkpoint.get("state_dict", {})
            for key in [k for k in state if k.startswith("color_latents.")]:
                del state[key]

    # --- the latent code ------------------------------------------------------------------------------------
    def posterior(self, images: Tensor) -> tuple[Tensor, Tensor, list[Tensor]]:
        """Posterior parameters of images (B, C, H, W) in [0, 1]: means (B, D), log-variances (B, D) and one
        logits tensor (B, K_i) per categorical variable."""
        return self.posterior_and_color(images)[:3]

    def posterior_and_color(self, images: Tensor) -> tuple[Tensor, Tensor, list[Tensor], Tensor | None]:
        """`posterior`, and the color head's logits (B, num_colors) with `color_decoder` (else None)."""
        return self.encoder_heads(images)[:4]

    def encoder_heads(self, images: Tensor) -> tuple[Tensor, Tensor, list[Tensor], Tensor | None, Tensor | None]:
        """`posterior_and_color`, and the overclustering head's logits (B, consistency_overcluster) (else None)."""
        d = self.continuous_dim
        mean, logvar, rest, color, over = self.encoder(images).split(
            [d, d, sum(self.categorical_dims), self.color_code_size, self.overcluster], 1)
        return (mean, logvar, list(rest.split(self.categorical_dims, 1)), color if self.color_code_size else None,
                over if self.overcluster else None)

    def color_code(self, colors: Tensor | None, color_logits: Tensor | None, like: Tensor) -> list[Tensor]:
        """The color block of codes: [] without `color_decoder`, else one-hot `colors` (B,) or, without them, of
        the color head's argmax."""
        if not self.color_code_size:
            return []
        ids = colors if colors is not None else color_logits.argmax(1)
        return [F.one_hot(ids.long(), self.num_colors).to(like)]

    def mode_code(self, mean: Tensor, logits: list[Tensor], color_logits: Tensor | None = None) -> Tensor:
        """The latent code (B, latent_size) of the posterior mode: the means, one-hot argmax categories and,
        with `color_decoder`, the one-hot argmax of the color head."""
        return torch.cat([mean, *(F.one_hot(x.argmax(1), x.shape[1]).to(mean) for x in logits),
                          *self.color_code(None, color_logits, mean)], 1)

    def category_probs(self, logits: list[Tensor], batch_size: int) -> Tensor:
        """Posterior probabilities of all categorical variables side by side, (B, sum K_i)."""
        probs = [F.softmax(x, 1) for x in logits]
        return torch.cat(probs, 1) if probs else torch.zeros(batch_size, 0, device=self.device)

    def encode(self, images: Tensor) -> Tensor:
        """Latent codes (B, latent_size) of images (B, C, H, W) in [0, 1]: the posterior mode (continuous
        means, then one one-hot block per categorical variable, then with `color_decoder` the color head's
        one-hot color), computed in eval mode."""
        expected = tuple(self.hparams.image_shape)
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(f"encode takes images of shape (B, {', '.join(map(str, expected))}), got "
                             f"{tuple(images.shape)}")
        if images.numel() and (images.min() < 0 or images.max() > 1):
            raise ValueError("encode takes images in [0, 1]; got values in "
                             f"[{images.min().item():.3g}, {images.max().item():.3g}] (map [-1, 1] with (x + 1) / 2)")
        with self.eval_mode():
            mean, _, logits, color_logits = self.posterior_and_color(images.to(self.device))
            return self.mode_code(mean, logits, color_logits)

    def decode(self, latents: Tensor) -> Tensor:
        """Images (B, C, H, W) in [0, 1] of latent codes (B, latent_size) laid out as `encode` returns them,
        computed in eval mode."""
        if latents.dim() != 2 or latents.shape[1] != self.latent_size:
            color = f" + num_colors {self.num_colors} (color_decoder)" if self.color_code_size else ""
            raise ValueError(f"decode takes latent codes of shape (B, {self.latent_size}) = continuous_dim "
                             f"{self.continuous_dim} + categorical_dims {self.categorical_dims}{color}, got "
                             f"{tuple(latents.shape)}")
        with self.eval_mode():
            return torch.sigmoid(self.decoder(latents.to(self.device)))

    # --- sampling -------------------------------------------------------------------------------------------
    def check_labels(self, n: int, labels: Tensor | None) -> Tensor | None:
        """No labels: the prior. Labels: color ids in [0, num_colors), checked as class ids are."""
        return None if labels is None and self.conditional else super().check_labels(n, labels)

    def generate(self, n: int, labels: Tensor | None, generator: torch.Generator | None) -> Tensor:
        if labels is None or self.color_code_size:
            codes = self.prior_codes(n, generator, labels)
        else:
            h = self.hparams
            codes = self.color_latents.sample(labels, generator, h.color_candidates, h.color_temperature)
        return torch.sigmoid(self.decoder(codes))

    def prior_codes(self, n: int, generator: torch.Generator | None = None, colors: Tensor | None = None) -> Tensor:
        """n codes from the prior: z ~ N(0, I) and uniform categories; with `color_decoder`, the color block of
        `colors` (B,) or, without them, of uniformly drawn colors."""
        z = torch.randn(n, self.continuous_dim, device=self.device, generator=generator)
        cats = [F.one_hot(torch.randint(k, (n,), device=self.device, generator=generator), k).float()
                for k in self.categorical_dims]
        if self.color_code_size and colors is None:
            colors = torch.randint(self.num_colors, (n,), device=self.device, generator=generator)
        return torch.cat([z, *cats, *self.color_code(colors, None, z)], 1)

    # --- training -------------------------------------------------------------------------------------------
    def current_temperature(self) -> float:
        h = self.hparams
        return L.annealed_temperature(self.global_step, h.temperature, h.temperature_min, h.temperature_anneal_steps)

    def loss_terms(self, images: Tensor, generator: torch.Generator | None, temperature: float | None,
                   colors: Tensor | None = None, heads: tuple | None = None
                   ) -> tuple[dict[str, Tensor], Tensor, list[Tensor]]:
        """Per-image terms (B,) in nats, `reconstruction`, `kl_continuous`, `kl_categorical` (and, with
        `color_decoder`, `color_classification`: the color head's cross-entropy on `colors`), and the posterior
        means and logits. `temperature=None` draws exact one-hot categories (evaluation), else Gumbel-softmax.
        With `color_decoder` the decoder gets the true `colors` (B,) (the color head's guess without them).
        `heads`: `encoder_heads(images)` when already computed."""
        mean, logvar, logits, color_logits = heads[:4] if heads else self.posterior_and_color(images)
        z = L.reparameterize(mean, logvar, generator)
        if temperature is None:
            cats = [L.sample_categorical(x, generator) for x in logits]
        else:
            cats = [L.gumbel_softmax(x, temperature, self.hparams.straight_through, generator) for x in logits]
        pixel_logits = self.decoder(torch.cat([z, *cats, *self.color_code(colors, color_logits, z)], 1))
        reconstruction = F.binary_cross_entropy_with_logits(pixel_logits, images, reduction="none").flatten(1).sum(1)
        kl_categorical = sum((L.kl_categorical_uniform(x) for x in logits), torch.zeros_like(reconstruction))
        terms = {"reconstruction": reconstruction, "kl_continuous": L.kl_normal_standard(mean, logvar),
                 "kl_categorical": kl_categorical}
        if color_logits is not None and colors is not None:
            terms["color_classification"] = F.cross_entropy(color_logits.float(), colors.long(), reduction="none")
        return terms, mean, logits

    def kl_penalty(self, kl_continuous: Tensor, kl_categorical: Tensor, step: int) -> Tensor:
        """beta * KL for each part without a capacity, gamma * |KL - C(step)| for each part with one."""
        h = self.hparams
        penalty = kl_continuous.new_zeros(())
        parts = [(kl_continuous, h.capacity_continuous, float("inf"), self.continuous_dim > 0),
                 (kl_categorical, h.capacity_categorical, L.max_categorical_capacity(self.categorical_dims),
                  bool(self.categorical_dims))]
        for kl, capacity, cap, present in parts:
            if not present:
                continue
            if capacity is None:
                penalty = penalty + h.beta * kl
            else:
                target = L.linear_capacity(step, min(capacity, cap), h.capacity_steps)
                penalty = penalty + L.capacity_penalty(kl, target, h.capacity_gamma)
        return penalty

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        if self.conditional and "color" not in batch:
            raise ValueError(f"--model.num_colors {self.num_colors} needs batches with a 'color' key "
                             "(ColoredMNISTDataModule); pass --model.num_colors 0 for data without colors")
        temperature = self.current_temperature()
        loss, means = self.training_loss(batch, self.noise_generator(self.hparams.seed), temperature, self.global_step)
        logs = {"train/loss": loss, **{f"train/{k}": v for k, v in means.items()}}
        if self.categorical_dims:
            logs["train/temperature"] = temperature
        self.log_train(logs, prog_bar=("train/loss",))
        return loss  # (checked finite in on_before_backward)

    def training_loss(self, batch: dict[str, Tensor], generator: torch.Generator | None, temperature: float,
                      step: int) -> tuple[Tensor, dict[str, Tensor]]:
        """The loss of one training batch (images in [0, 1], with "color" when conditional) at `step` and the
        batch means of its terms: the bound with the KL penalty, the color head's cross-entropy with
        `color_decoder`, the consistency term; updates the per-color statistics of the color sampler."""
        images = batch["image"]
        heads = self.encoder_heads(images)
        terms, mean, logits = self.loss_terms(images, generator, temperature, batch.get("color"), heads)
        means = {name: value.mean() for name, value in terms.items()}
        loss = means["reconstruction"] + self.kl_penalty(means["kl_continuous"], means["kl_categorical"], step)
        if "color_classification" in means:
            loss = loss + means["color_classification"]
        if self.hparams.consistency_weight:
            means["consistency"] = self.consistency_loss(images, logits[0], heads[4])
            loss = loss + self.hparams.consistency_weight * means["consistency"]
        if self.conditional and self.color_latents is not None:
            probs = self.category_probs([x.detach() for x in logits], len(mean))
            self.color_latents.update(mean.detach(), probs, batch["color"], self.hparams.color_stats_decay)
        return loss, means

    def consistency_loss(self, images: Tensor, logits: Tensor, overcluster_logits: Tensor | None = None) -> Tensor:
        """The IIC loss (`losses.invariant_information_loss`) of the first categorical variable between `images`
        (its posterior `logits`) and a warped, for RGB with `consistency_recolor` recolored, copy of them, plus
        that of the overclustering head (its `overcluster_logits`) with `consistency_overcluster`. The copies are
        normalised with their own batch statistics but leave the encoder's running statistics alone."""
        h = self.hparams
        generator = self.noise_generator(h.seed, "augment")
        copies = random_affine(images, generator, *h.consistency_warp, background=0.0)
        if h.consistency_recolor and images.shape[1] == 3:
            copies = random_recolor(copies, generator)
        with batch_statistics_frozen(self.encoder):  # the copies do not enter the statistics evaluation uses
            copy_heads = self.encoder_heads(copies)
        loss = invariant_information_loss(logits.float().softmax(1), copy_heads[2][0].float().softmax(1))
        if overcluster_logits is not None:
            loss = loss + invariant_information_loss(overcluster_logits.float().softmax(1),
                                                     copy_heads[4].float().softmax(1))
        return loss

    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, Tensor]:
        """Per-color samples (`class_<color id>`, or `samples` without colors) and the latent pictures of the
        batch (see `pictures`), each picture as one grid image."""
        out = super().predict_step(batch, batch_idx)
        pictures = self.pictures(batch["image"], batch.get("label"))
        return {**out, **{name: grid[None] for name, grid in pictures.items()}}
