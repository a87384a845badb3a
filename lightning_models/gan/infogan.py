"""InfoGAN (Chen et al. 2016): a GAN whose latent has structured codes (categorical and continuous) beside free
noise, and a Q head on the discriminator's body that must recover the codes from the fake images. Its loss, the
variational mutual-information term, is added to both the discriminator and the generator loss, so the generator
has to make each code visible in the image. With `info_weight: 0` this is the plain GAN of the source reports
with a "half discrete, half continuous" latent, whose discrete half stayed meaningless.

Latent layout (B, L): [one-hot of categorical code 0, one-hot of code 1, ..., continuous codes, free noise].
Categorical codes are uniform over their categories, continuous codes uniform in [-1, 1], noise N(0, I).

Only `GAN`'s hooks change (networks, latent, discriminate, auxiliary loss, and the real-batch loss of the
optional consistency term); the training step is `GAN`'s.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor
from torchmetrics.aggregation import MeanMetric

from lightning_models.augment import check_consistency, random_affine
from lightning_models.gan.gan import GAN
from lightning_models.gan.infogan_evaluation import code_traversal
from lightning_models.metrics.clustering import cluster_accuracy, cluster_table
from lightning_models.losses import invariant_information_loss
from lightning_models.metrics.evaluation import ClassHistogram, SampleEvaluator
from lightning_models.metrics.inception import make_inception_metrics
from lightning_models.networks.infogan import InfoDiscriminator, InfoGenerator
from lightning_models.progress import phase_progress

TRAVERSAL_RANGE = 2.0  # continuous traversals span [-2, 2]: past the training range [-1, 1], as in the paper


class InfoGAN(GAN):
    """GAN with categorical and continuous codes recovered by a Q head (InfoGAN); unconditional.

    The information term is `info_weight * (sum of the categorical codes' cross-entropies + continuous_weight *
    the continuous codes' Gaussian negative log-likelihood)`, on the fake batch, added to the D loss (it trains
    the Q head and the shared body) and to the G loss. The Gaussian has a std predicted by Q per code
    (`continuous_std: null`, the paper's factored Gaussian) or a fixed std (then the term is a scaled MSE).

    Args:
        categorical_codes: category count of each categorical code (e.g. [10] on MNIST); [] = none.
        continuous_codes: number of continuous codes, uniform in [-1, 1].
        latent_dim: free noise dimensions, N(0, I). The generator's input has
            `sum(categorical_codes) + continuous_codes + latent_dim` dimensions.
        info_weight: weight of the information term (lambda); 0 = off, a plain GAN with this latent.
        continuous_weight: weight of the continuous codes' term relative to the categorical ones (the paper: smaller
            than 1 for continuous codes, so the term stays on the scale of the GAN loss).
        continuous_std: fixed std of Q's Gaussian; null = Q predicts it.
        q_hidden: hidden width of the Q head.
        fc_width: a fully connected hidden layer of this width in both networks, InfoGAN's MNIST architecture
            (1024): in the generator between its input and the projection to the first feature map, in the
            discriminator after the convolutions, shared by the real/fake and Q heads; 0 = none (the DCGAN
            networks of `GAN`).
        info_trains_body: the information term of the discriminator step trains the shared body as well as the Q
            head (the paper; true), or only the Q head (false): the body then learns only to tell real from fake,
            and Q has to read the codes from the features the discriminator judges images by. The generator step
            is the same either way (the term reaches the generator through the frozen body).
        q_optimizer: which optimizer trains the Q head: "discriminator" (the paper; with D's learning rate, on
            the discriminator step's information term) or "generator" (with G's learning rate, on the generator
            step's term, as common PyTorch implementations do). With "generator" the Q head is frozen in the
            discriminator step, whose information term then trains only the body (`info_trains_body: true`) or
            is not computed (false).
        consistency_weight: weight of a consistency term on real images (0 = off, the paper's model): minus the
            mutual information between Q's category of each real training image and of a randomly warped copy
            (`consistency_warp`), the IIC loss of Ji et al. 2019, per categorical code. A small rotation, zoom or
            shift changes a digit's style, not its class; InfoGAN's objective alone does not tell the two apart
            (some seeds split a class by style and merge two others), this term asks Q for categories the warps
            do not change, used equally often. It trains the Q head (and the body with `info_trains_body`) in
            the step of the optimizer that holds Q (`q_optimizer`), and reaches the generator through the
            information term. Needs a categorical code. With `info_weight: 0` it is IIC alone on the
            discriminator's network (the ablation of the information term: Q learns its categories from real
            images only, the generator's codes mean nothing).
        consistency_warp: (max rotation in degrees, max relative zoom, max shift as a fraction of the half-width)
            of the warps of `consistency_weight`; one draw per image and step.
        inception_metrics: `test` also reports FID/KID in Inception features when torchmetrics can load them
            (see README: torch-fidelity and its weights); otherwise one line says why and the rest runs.
        inception_weights: path of torch-fidelity's Inception weights file (null: torch's hub cache).
        classifier_path: optional for InfoGAN: with it, `test` adds the classifier scores of `GAN`.
        **kwargs: the options of `GAN` (networks, loss, optimizers, EMA, `num_eval_samples`, ...).
    """

    test_needs_classifier = False  # its test scores what it can without a classifier

    def __init__(
        self,
        categorical_codes: tuple[int, ...] = (10,),
        continuous_codes: int = 2,
        latent_dim: int = 62,
        info_weight: float = 1.0,
        continuous_weight: float = 0.1,
        continuous_std: float | None = None,
        q_hidden: int = 128,
        fc_width: int = 0,
        info_trains_body: bool = True,
        q_optimizer: Literal["discriminator", "generator"] = "discriminator",
        consistency_weight: float = 0.0,
        consistency_warp: tuple[float, float, float] = (15.0, 0.15, 0.1),
        inception_metrics: bool = True,
        inception_weights: str | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("conditional"):
            raise ValueError("InfoGAN is unconditional (its categorical codes replace labels): drop "
                             "--model.conditional true")
        if any(int(k) < 2 for k in categorical_codes):
            raise ValueError(f"--model.categorical_codes: every code needs >= 2 categories, got "
                             f"{list(categorical_codes)}")
        if continuous_codes < 0 or latent_dim < 0:
            raise ValueError(f"--model.continuous_codes and --model.latent_dim must be >= 0, got "
                             f"{continuous_codes} and {latent_dim}")
        if info_weight < 0 or continuous_weight < 0:
            raise ValueError(f"--model.info_weight and --model.continuous_weight must be >= 0, got {info_weight} "
                             f"and {continuous_weight}")
        if fc_width < 0:
            raise ValueError(f"--model.fc_width must be >= 0 (0 = no fully connected layer), got {fc_width}")
        if q_optimizer not in ("discriminator", "generator"):
            raise ValueError(f"--model.q_optimizer must be 'discriminator' or 'generator', got {q_optimizer!r}")
        check_consistency(consistency_weight, consistency_warp, categorical_codes, "--model.categorical_codes")
        if continuous_std is not None and continuous_std <= 0:
            raise ValueError(f"--model.continuous_std must be > 0 or null, got {continuous_std}")
        self.categorical_codes = tuple(int(k) for k in categorical_codes)
        self.continuous_codes = continuous_codes
        self.code_dim = sum(self.categorical_codes) + continuous_codes
        if self.code_dim + latent_dim == 0:
            raise ValueError("InfoGAN needs a latent: set --model.categorical_codes, --model.continuous_codes or "
                             "--model.latent_dim")
        super().__init__(latent_dim=latent_dim, **kwargs)

    # --- latent layout --------------------------------------------------------------------------------------
    def categorical_slice(self, i: int) -> slice:
        """Columns of categorical code i's one-hot in the latent."""
        start = sum(self.categorical_codes[:i])
        return slice(start, start + self.categorical_codes[i])

    def continuous_slice(self, j: int | None = None) -> slice:
        """Columns of continuous code j in the latent (None: all continuous codes)."""
        start = sum(self.categorical_codes)
        return slice(start, start + self.continuous_codes) if j is None else slice(start + j, start + j + 1)

    def split_latent(self, latent: Tensor) -> tuple[Tensor, Tensor]:
        """(category ids (B, num categorical codes) int64, continuous codes (B, continuous_codes))."""
        ids = [latent[:, self.categorical_slice(i)].argmax(dim=1) for i in range(len(self.categorical_codes))]
        categories = torch.stack(ids, dim=1) if ids else latent.new_zeros(len(latent), 0, dtype=torch.long)
        return categories, latent[:, self.continuous_slice()]

    def make_latent(self, categories: Tensor, continuous: Tensor, noise: Tensor) -> Tensor:
        """The generator's input from category ids (B, n_cat), continuous codes (B, n_cont) and noise (B, L)."""
        one_hots = [F.one_hot(categories[:, i], k).to(noise.dtype) for i, k in enumerate(self.categorical_codes)]
        return torch.cat([*one_hots, continuous.to(noise.dtype), noise], dim=1)

    # --- GAN hooks ------------------------------------------------------------------------------------------
    def build_networks(self) -> tuple[nn.Module, nn.Module]:
        h = self.hparams
        generator = InfoGenerator(self.code_dim + h.latent_dim, tuple(h.image_shape), h.generator_width,
                                  h.generator_norm, h.fc_width)
        discriminator = InfoDiscriminator(tuple(h.image_shape), self.categorical_codes, self.continuous_codes,
                                          h.continuous_std is None, h.discriminator_width, h.discriminator_norm,
                                          h.minibatch_std, h.q_hidden, h.fc_width)
        return generator, discriminator

    def draw_codes(self, n: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor, Tensor]:
        """Random (category ids (n, n_cat), continuous codes (n, n_cont) in [-1, 1], noise (n, latent_dim))."""
        ids = [torch.randint(k, (n,), device=self.device, generator=generator) for k in self.categorical_codes]
        categories = torch.stack(ids, 1) if ids else torch.zeros(n, 0, dtype=torch.long, device=self.device)
        continuous = torch.rand(n, self.continuous_codes, device=self.device, generator=generator) * 2 - 1
        noise = torch.randn(n, self.hparams.latent_dim, device=self.device, generator=generator)
        return categories, continuous, noise

    def draw_latent(self, n: int, generator: torch.Generator | None) -> Tensor:
        return self.make_latent(*self.draw_codes(n, generator))

    def optimized_parameters(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        g_params, d_params = super().optimized_parameters()
        if self.hparams.q_optimizer == "discriminator":
            return g_params, d_params
        q_head = list(self.discriminator.q_head.parameters())
        q_ids = {id(p) for p in q_head}
        return [*g_params, *q_head], [p for p in d_params if id(p) not in q_ids]

    def discriminate(self, x: Tensor, labels: Tensor | None) -> tuple[Tensor, object]:
        if self.hparams.info_weight == 0:
            return self.discriminator(x), None  # the plain GAN: Q is never evaluated
        if self.hparams.info_trains_body:
            return self.discriminator.with_codes(x)
        # the discriminator step is the one where D's body is trainable (toggled_optimizer freezes it in the
        # generator step, where the term must flow through the body to the generator and Q)
        if not self._discriminator_trains():
            return self.discriminator.with_codes(x)
        if self.hparams.q_optimizer == "generator":
            return self.discriminator(x), None  # nothing the D step trains would learn from the term
        return self.discriminator.with_codes(x, q_detached=True)

    def auxiliary_loss(self, aux: object, latent: Tensor, labels: Tensor | None) -> Tensor | None:
        if aux is None:
            return None
        return self.hparams.info_weight * self.information_loss(aux, latent)

    def real_loss(self, real: Tensor, labels: Tensor | None) -> Tensor | None:
        """`consistency_weight` x the IIC loss of Q's categories on the real batch and a warped copy, in the step
        whose optimizer trains the Q head; None in the other step, or when the term is off."""
        h = self.hparams
        if not h.consistency_weight or not self._q_head_trains():
            return None
        warped = random_affine(real, self.noise_generator(h.seed, "warp"), *h.consistency_warp, background=-1.0)
        logits = self.discriminator.with_codes(torch.cat([real, warped]), q_detached=not h.info_trains_body)[1][0]
        loss = sum(invariant_information_loss(*code.float().softmax(dim=1).chunk(2)) for code in logits)
        return h.consistency_weight * loss

    def _q_head_trains(self) -> bool:
        # toggled_optimizer leaves only the stepping optimizer's parameters trainable
        return next(self.discriminator.q_head.parameters()).requires_grad

    def information_loss(self, q_output: tuple[list[Tensor], Tensor, Tensor | None], latent: Tensor) -> Tensor:
        """Negative variational lower bound of I(codes; G(latent)) (up to the codes' constant entropy), per
        image: sum of the categorical cross-entropies + continuous_weight * Gaussian NLL (summed over codes,
        without the constant 0.5 log 2 pi)."""
        logits, mean, log_std = q_output
        categories, continuous = self.split_latent(latent)
        loss = latent.new_zeros((), dtype=torch.float32)
        for i, code_logits in enumerate(logits):
            loss = loss + F.cross_entropy(code_logits.float(), categories[:, i])
        if self.continuous_codes:
            if log_std is None:
                log_std = torch.full_like(mean, math.log(self.hparams.continuous_std))
            z = (continuous.float() - mean.float()) * torch.exp(-log_std.float())
            nll = (0.5 * z.square() + log_std.float()).sum(dim=1).mean()
            loss = loss + self.hparams.continuous_weight * nll
        return loss

    # --- the code API ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def decode(self, latent: Tensor) -> Tensor:
        """Images (B, C, H, W) in [0, 1] of latents laid out as `make_latent` makes them, in eval mode."""
        with self.eval_mode():
            images = self.sampling_generator()(latent.to(self.device))
        low, high = self.output_range
        return ((images.float() - low) / (high - low)).clamp_(0, 1)

    @torch.no_grad()
    def sample_codes(self, n: int, categories: Tensor | None = None, continuous: Tensor | None = None,
                     noise: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """`n` images (n, C, H, W) in [0, 1] with chosen codes: `categories` int (n, len(categorical_codes))
        category ids, `continuous` float (n, continuous_codes), `noise` (n, latent_dim); each None is drawn
        at random (from `generator`). `sample(n)` is the same with everything random."""
        drawn = self.draw_codes(n, generator)
        parts = []
        for name, given, default in zip(("categories", "continuous", "noise"), (categories, continuous, noise),
                                        drawn):
            if given is None:
                parts.append(default)
                continue
            given = torch.as_tensor(given, device=self.device)
            if given.shape != default.shape:
                raise ValueError(f"sample_codes: {name} must have shape {tuple(default.shape)}, got "
                                 f"{tuple(given.shape)}")
            parts.append(given)
        categories = parts[0].long()
        for i, k in enumerate(self.categorical_codes):
            if len(categories) and (categories[:, i].min() < 0 or categories[:, i].max() >= k):
                raise ValueError(f"sample_codes: categorical code {i} takes ids in [0, {k - 1}]")
        return self.decode(self.make_latent(categories, parts[1].float(), parts[2].float()))

    @torch.no_grad()
    def encode_codes(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Q's estimate of the codes of images (B, C, H, W) in [0, 1]: (category ids (B, n_cat) int64, continuous
        means (B, continuous_codes)), in eval mode."""
        with self.eval_mode():
            logits, mean, _ = self.discriminator.with_codes(images.to(self.device) * 2 - 1)[1]
        ids = [code.argmax(dim=1) for code in logits]
        categories = torch.stack(ids, 1) if ids else mean.new_zeros(len(mean), 0, dtype=torch.long)
        return categories, mean.float()

    def traversals(self, columns: int = 8, steps: int = 7,
                   generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """One grid (3, H', W') per code, `columns` fixed latents as columns: `traversal_categorical_<i>` has
        one row per category, `traversal_continuous_<j>` one row per value in [-2, 2] (`steps` of them)."""
        latents = self.draw_latent(columns, generator)
        grids = {}
        for i, k in enumerate(self.categorical_codes):
            eye = torch.eye(k, device=self.device)
            grids[f"traversal_categorical_{i}"] = code_traversal(self.decode, latents, self.categorical_slice(i), eye)
        values = torch.linspace(-TRAVERSAL_RANGE, TRAVERSAL_RANGE, steps, device=self.device)[:, None]
        for j in range(self.continuous_codes):
            grids[f"traversal_continuous_{j}"] = code_traversal(self.decode, latents, self.continuous_slice(j),
                                                                values)
        return grids

    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, Tensor]:
        """`samples` (see GAN) and one traversal grid per code, each as a one-image batch."""
        out = super().predict_step(batch, batch_idx)
        rng = torch.Generator(device=self.device).manual_seed(batch_idx)
        return {**out, **{name: grid[None] for name, grid in self.traversals(generator=rng).items()}}

    # --- cli.py test ----------------------------------------------------------------------------------------
    def on_test_epoch_start(self) -> None:
        path = self.hparams.classifier_path
        self.evaluator = SampleEvaluator(path, self.num_classes, False).to(self.device) if path else None
        self.inception = None
        if self.hparams.inception_metrics:
            self.inception, message = make_inception_metrics(self.hparams.inception_weights)
            if message:
                rank_zero_warn(message)
            elif self.inception is not None:
                self.inception.to(self.device)
        # codes vs Q on samples; with labelled data, clusters of the first class-sized code vs true labels
        metrics = {f"code_accuracy_{i}": MeanMetric() for i in range(len(self.categorical_codes))}
        metrics.update({f"code_mae_{j}": MeanMetric() for j in range(self.continuous_codes)})
        self.class_code = self._class_code()
        if self.class_code is not None:
            metrics["clusters"] = ClassHistogram(self.categorical_codes[self.class_code] * self.num_classes)
        self.code_metrics = nn.ModuleDict(metrics).to(self.device)

    def _class_code(self) -> int | None:
        """The categorical code scored against the labels: the first with `num_classes` categories, else the
        first; None without labels or categorical codes."""
        if self.num_classes < 2 or not self.categorical_codes:
            return None
        matching = [i for i, k in enumerate(self.categorical_codes) if k == self.num_classes]
        return matching[0] if matching else 0

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        images = batch["image"]
        if self.evaluator is not None:
            self.evaluator.update_real(images)
        if self.inception is not None:
            self.inception.update(images, real=True)
        if self.class_code is not None and "label" in batch:
            clusters = self.encode_codes(images)[0][:, self.class_code]
            self.code_metrics["clusters"].update(clusters * self.num_classes + batch["label"].long())

    def on_test_epoch_end(self) -> None:
        rng = torch.Generator(device=self.device).manual_seed(12345 + self.global_rank)
        total = -(-self.hparams.num_eval_samples // self.trainer.world_size)
        chunk = self.trainer.datamodule.eval_batch_size
        with phase_progress(self.trainer, f"test: sampling and scoring the codes (batches of {chunk})", total,
                            "samples") as advance:
            for start in range(0, total, chunk):
                latent = self.draw_latent(min(chunk, total - start), rng)
                images = self.decode(latent)
                self._score_codes(images, latent)
                if self.evaluator is not None:
                    self.evaluator.update_fake(images)
                if self.inception is not None:
                    self.inception.update(images, real=False)
                advance(len(latent))
        scores = {name: metric.compute() for name, metric in self.code_metrics.items() if name != "clusters"}
        if self.class_code is not None:
            confusion = self.code_metrics["clusters"].compute().view(-1, self.num_classes)
            if confusion.sum() > 0:
                accuracy = cluster_accuracy(confusion)
                scores["class_accuracy"] = accuracy["one_to_one"]
                scores["class_accuracy_majority"] = accuracy["majority"]
                rank_zero_info(f"InfoGAN code {self.class_code} on the labelled test images:\n"
                               + cluster_table(confusion, "category", "label"))
        with phase_progress(self.trainer, "test: computing the scores"):
            for extra in (self.evaluator, self.inception):
                if extra is not None:
                    scores.update(extra.compute())
        self.log_dict({f"test/{k}": v for k, v in scores.items()}, sync_dist=False)
        del self.evaluator, self.inception, self.code_metrics

    def _score_codes(self, images: Tensor, latent: Tensor) -> None:
        categories, continuous = self.split_latent(latent)
        predicted, mean = self.encode_codes(images)
        for i in range(len(self.categorical_codes)):
            self.code_metrics[f"code_accuracy_{i}"].update((predicted[:, i] == categories[:, i]).float())
        for j in range(self.continuous_codes):
            self.code_metrics[f"code_mae_{j}"].update((mean[:, j] - continuous[:, j]).abs())
