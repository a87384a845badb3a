"""The evaluation half of the `VAE` scheme (a mixin, kept apart so `vae.py` reads as the training scheme):
validation and `cli.py test` metrics, color controllability, and the latent pictures logged during training and
written by `cli.py predict`.

`cli.py test` reports, in nats per image unless said otherwise:
- `test/neg_elbo` = `test/reconstruction` + `test/kl_continuous` + `test/kl_categorical`: a single-sample estimate
  of the negative ELBO, with exact categorical samples (no relaxation) and Bernoulli pixels;
- `test/active_units`: continuous dimensions whose posterior mean varies over the test set (variance > 0.01);
- `test/active_categorical`: categorical variables whose posterior probabilities vary (summed variance > 0.01);
- `test/cluster_accuracy`: the best categorical variable as a digit clustering (each category mapped to its
  majority digit; fraction of test images whose category maps to their digit), and
  `test/cluster_accuracy_one_to_one` with each category mapped to a distinct digit (greedy assignment, as
  InfoGAN's class accuracy; categories beyond the number of digits count as wrong);
- `test/color_accuracy`: fraction of `num_eval_samples` color-requested samples (ids cycling over the palette)
  whose dominant foreground color (`datamodules.colored_mnist.dominant_color`) is the requested one. The request
  conditions the decoder on a color code learned from the training images' color labels (`ColorLatents`), or,
  with `color_decoder`, sets the code's color block, which the decoder was trained on with those labels;
- `test/color_accuracy_strict`: the same with a rule that abstains on mixed colors
  (`datamodules.colored_mnist.single_color`: more than half of the stroke's brightness in the called color), and
  `test/color_mixed` the fraction of samples it abstained on;
- with `--model.classifier_path` (a digit classifier), the classifier scores of the GANs for `num_eval_samples`
  prior samples against the test images (`SampleScores`): `test/fid_classifier`, `test/precision_classifier`,
  `test/recall_classifier`, `test/kid_classifier`, `test/diversity_classifier`, `test/class_coverage`, ...
"""

from __future__ import annotations

import torch
from torch import Tensor

import lightning_models.vae.latent_plots as plots
from lightning_models.metrics.clustering import cluster_accuracy
from lightning_models.callbacks import log_images
from lightning_models.progress import phase_progress

#: validation images kept for the pictures logged at the end of each validation epoch (scatter points).
NUM_PLOT_IMAGES = 1000


class VAEEvaluation:
    """Validation/test hooks, `color_accuracy` and `pictures` of `VAE` (uses its `loss_terms`, `posterior`,
    `category_probs`, `mode_code`, `decode`, `sample` and latent layout)."""

    def _evaluation_terms(self, batch: dict[str, Tensor], batch_idx: int, stage: str) -> tuple[Tensor, list[Tensor]]:
        images = batch["image"]
        # fixed noise per batch and rank, so a metric is repeatable for the same weights
        seed = ((self.hparams.seed * 1_000_003 + self.global_rank) * 998_244_353 + batch_idx) % 2**63
        terms, mean, logits = self.loss_terms(images, torch.Generator(self.device).manual_seed(seed), None,
                                              batch.get("color"))
        terms["neg_elbo"] = terms["reconstruction"] + terms["kl_continuous"] + terms["kl_categorical"]
        self.log_dict({f"{stage}/{k}": v.mean() for k, v in terms.items()}, batch_size=len(images), sync_dist=True)
        return mean, logits

    # --- validation: metrics, and pictures for the loggers -------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._plot_batches: list[tuple[Tensor, Tensor | None]] = []

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluation_terms(batch, batch_idx, "val")
        kept = sum(len(images) for images, _ in self._plot_batches)
        if kept < NUM_PLOT_IMAGES:
            take = NUM_PLOT_IMAGES - kept
            labels = batch.get("label")
            self._plot_batches.append((batch["image"][:take], None if labels is None else labels[:take]))

    def on_validation_epoch_end(self) -> None:
        batches, self._plot_batches = self._plot_batches, []
        if self.trainer.sanity_checking or not self.trainer.is_global_zero or not self.trainer.loggers or not batches:
            return
        images = torch.cat([b[0] for b in batches])
        labels = None if batches[0][1] is None else torch.cat([b[1] for b in batches])
        for name, grid in self.pictures(images, labels).items():
            log_images(self.trainer, f"samples/{name}", grid, self.global_step)

    # --- cli.py test --------------------------------------------------------------------------------------------
    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()  # the classifier scores, with --model.classifier_path
        d, k = self.continuous_dim, sum(self.categorical_dims)
        zeros = lambda *shape: torch.zeros(*shape, device=self.device)  # noqa: E731
        self._test_sums = {"count": zeros(()), "mean": zeros(d), "mean_sq": zeros(d), "probs": zeros(k),
                           "probs_sq": zeros(k), "clusters": zeros(k, max(self.num_digits, 1))}

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        super().test_step(batch, batch_idx)
        mean, logits = self._evaluation_terms(batch, batch_idx, "test")
        sums = self._test_sums
        probs = self.category_probs(logits, len(mean))
        sums["count"] += len(mean)
        sums["mean"] += mean.sum(0)
        sums["mean_sq"] += mean.pow(2).sum(0)
        sums["probs"] += probs.sum(0)
        sums["probs_sq"] += probs.pow(2).sum(0)
        if "label" in batch and self.num_digits:
            offset = 0
            for x in logits:  # count (category, digit) pairs of each variable
                sums["clusters"].index_put_((offset + x.argmax(1), batch["label"]), torch.ones(len(x), device=x.device),
                                            accumulate=True)
                offset += x.shape[1]

    def on_test_epoch_end(self) -> None:
        sums = {k: self.trainer.strategy.reduce(v, reduce_op="sum") for k, v in self._test_sums.items()}
        del self._test_sums
        n = sums["count"].clamp_min(1)
        variance = sums["mean_sq"] / n - (sums["mean"] / n).pow(2)
        metrics = {"active_units": (variance > 0.01).sum().float()}
        if self.categorical_dims:
            prob_variance = (sums["probs_sq"] / n - (sums["probs"] / n).pow(2)).split(self.categorical_dims)
            metrics["active_categorical"] = sum(float(v.sum() > 0.01) for v in prob_variance)
            if sums["clusters"].sum() > 0:
                scores = [cluster_accuracy(block) for block in sums["clusters"].split(self.categorical_dims)]
                metrics["cluster_accuracy"] = max(score["majority"] for score in scores)
                metrics["cluster_accuracy_one_to_one"] = max(score["one_to_one"] for score in scores)
        palette = getattr(getattr(self.trainer, "datamodule", None), "palette", None)
        if self.conditional and palette is not None and self.hparams.image_shape[0] == 3:
            metrics.update(self.color_scores(palette, self.hparams.num_eval_samples,
                                             self.trainer.datamodule.eval_batch_size))
        self.log_dict({f"test/{k}": torch.as_tensor(v, dtype=torch.float32, device=self.device)
                       for k, v in metrics.items()})
        super().on_test_epoch_end()

    def color_accuracy(self, palette: Tensor, num_samples: int, batch_size: int = 500, seed: int = 12345) -> float:
        """Fraction of `num_samples` samples, requested color ids cycling over 0..num_colors-1, whose dominant
        foreground color is the requested palette entry (`palette`: (num_colors, 3) RGB, the datamodule's)."""
        return self.color_scores(palette, num_samples, batch_size, seed)["color_accuracy"]

    @torch.no_grad()
    def color_scores(self, palette: Tensor, num_samples: int, batch_size: int = 500,
                     seed: int = 12345) -> dict[str, float]:
        """`color_accuracy`, `color_accuracy_strict` and `color_mixed` (see the module's doc) of one draw of
        `num_samples` color-requested samples."""
        from datamodules.colored_mnist import dominant_color, single_color

        if len(palette) != self.num_colors:
            raise ValueError(f"the palette has {len(palette)} colors but the model {self.num_colors} "
                             "(--model.num_colors); they must agree")
        rng = torch.Generator(self.device).manual_seed(seed)
        palette = palette.to(self.device)
        counts = {"color_accuracy": 0, "color_accuracy_strict": 0, "color_mixed": 0}
        with phase_progress(self._trainer, f"test: sampling for the color accuracy (batches of {batch_size})",
                            num_samples, "samples") as advance:
            for start in range(0, num_samples, batch_size):
                colors = torch.arange(start, min(start + batch_size, num_samples), device=self.device) % self.num_colors
                images = self.sample(len(colors), colors, generator=rng)
                strict = single_color(images, palette)
                counts["color_accuracy"] += int((dominant_color(images, palette) == colors).sum())
                counts["color_accuracy_strict"] += int((strict == colors).sum())
                counts["color_mixed"] += int((strict < 0).sum())
                advance(len(colors))
        return {name: count / max(num_samples, 1) for name, count in counts.items()}

    # --- pictures -----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def pictures(self, images: Tensor, labels: Tensor | None = None) -> dict[str, Tensor]:
        """Pictures (3, H, W) in [0, 1] of the latent space on `images` (B, C, H, W) in [0, 1]:
        - `reconstructions`: rows of originals, each followed by their reconstructions (first 32 images);
        - `scatter_color`, `scatter_digit`: the posterior means (the categorical probabilities for a purely
          categorical latent) projected to 2-d (principal axes), one square per image, colored by the digit's
          own stroke color and by its label (`latent_plots.LABEL_COLORS`; only with `labels`);
        - `traversal`: one row per continuous dimension, the first image's code with that dimension swept over
          the prior's 5%..95% quantiles;
        - `categorical_<i>`: one row per category of variable i, applied to the codes of the first 8 images.
        """
        with self.eval_mode():
            mean, _, logits, color_logits = self.posterior_and_color(images.to(self.device))
            codes = self.mode_code(mean, logits, color_logits)
            out = {"reconstructions": plots.reconstruction_grid(images[:32], self.decode(codes[:32]))}
            features = mean if self.continuous_dim else self.category_probs(logits, len(mean))
            points = plots.project_2d(features)
            out["scatter_color"] = plots.scatter_image(points, plots.foreground_color(images))
            if labels is not None:
                out["scatter_digit"] = plots.scatter_image(points, plots.label_colors(labels))
            if self.continuous_dim:
                values = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, 8))
                out["traversal"] = plots.traversal_grid(self.decode, codes[0], self.continuous_dim, values)
            offset = self.continuous_dim
            for i, k in enumerate(self.categorical_dims):
                out[f"categorical_{i}"] = plots.category_grid(self.decode, codes[:8], offset, k)
                offset += k
        return out
