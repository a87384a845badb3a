"""What CycleGAN and pix2pix share: two generators (A->B, B->A) and two PatchGAN discriminators (one per target
domain), one manual-optimization step, linear learning-rate decay, `translate()`, the `cli.py test` metrics and
the `predict` pictures. A scheme (cyclegan.py, pix2pix.py) only says what differs: what its discriminators see,
whether fakes pass through a history pool, and its reconstruction terms.

Per batch: one discriminator step (both discriminators, one optimizer), then one generator step (both
generators, one optimizer), each scoped by `toggled_optimizer`; the fakes are made once and reused (detached
for the discriminators). Lightning's `global_step` counts optimizer steps: a batch is 2 steps, and
`--trainer.max_steps` means the same.
"""

from __future__ import annotations

import itertools
import torch
from torch import Tensor

from lightning_models.base import TrainingModule, linear_decay
from lightning_models.losses import get_loss, gradient_penalty
from lightning_models.networks.conv import Norm, WeightInit, init_weights
from lightning_models.networks.translation import (GeneratorKind, GeneratorOutput, PatchDiscriminator,
                                                   make_generator)
from lightning_models.translation.evaluation import TranslationMetrics, sorted_by_label, strips

DIRECTIONS = ("AB", "BA")


class TranslationModule(TrainingModule):
    """Base of the image-to-image translation schemes (use `CycleGAN` or `Pix2Pix`). Batches hold
    `image_a`, `image_b` (B, C, H, W) in [0, 1] and digit labels (`label`, or `label_a`/`label_b`).

    Args:
        image_shape: (C, H, W) of both domains, linked from the datamodule by the CLI.
        num_classes: digit classes, linked from the datamodule (the pictures show one example per class).
        generator: "resnet" (CycleGAN's residual generator), "unet" (pix2pix's, with skip connections) or "recolor"
            (keeps the input's stroke, paints it in one color chosen from its shape: `RecolorGenerator`).
        generator_width: channels of the generators at full resolution.
        generator_blocks: residual blocks of the "resnet" generator (unused by "unet").
        downsamplings: stride-2 levels of the generators (2 for 28x28: 28 -> 14 -> 7).
        generator_norm: "instance" (as CycleGAN and pix2pix), "batch" or "none".
        generator_warp: in training, "recolor" generators choose the color from a randomly rotated, zoomed and
            shifted copy of the stroke (strength: 1 = +-15 degrees, +-15% zoom, +-10% shift; 0 = off). The other
            generators ignore it (as "unet" ignores `generator_blocks`), so `--model.generator resnet` needs no
            other change to the CycleGAN config.
        generator_output: how "resnet" and "unet" generators bound their output to [-1, 1]: "tanh" (the papers')
            or "clamp" (clamped, with the gradient of a pixel outside [-1, 1] kept when it pulls the pixel back: no
            saturated pixels stuck at the black background's value, see `InwardClamp`). "recolor" ignores it.
        share_generator_features: "recolor" G_AB and G_BA share the convolutions that read the stroke's shape (each
            keeps its own color head), so each learns the shapes from both domains' images; ignored by the others.
        discriminator_width: channels of the discriminators' first layer.
        discriminator_layers: stride-2 layers of the PatchGAN discriminators.
        discriminator_norm: "instance", "spectral", "batch" or "none".
        loss: adversarial loss, any name of `lightning_models.losses` (lsgan, non_saturating, hinge, wgan_gp, ...).
        gp_weight: weight of the gradient penalty (wgan_gp only).
        lr: Adam learning rate of both optimizers (the generators share one, the discriminators the other).
        discriminator_lr: Adam learning rate of the discriminators' optimizer instead (None = `lr`), for a
            two time-scale update rule.
        betas: Adam betas.
        decay_start_epoch: epoch from which the learning rate decays linearly ...
        decay_epochs: ... to 0 over this many epochs (0 = constant). The schedulers are stepped at the end of
            each training epoch by the module itself (manual optimization never steps them).
        gradient_clip_val: clip each optimizer's gradient norm to this (None = off), after AMP unscaling.
        weight_init: "default" (PyTorch's initialisation) or "dcgan" (weights N(0, 0.02), normalisation scales
            N(1, 0.02), zero biases: the initialisation of the CycleGAN and pix2pix papers), for all networks.
        seed: seed of the training randomness (history pool draws, gradient penalty), with rank and step.
    """

    #: pix2pix's discriminators judge (input, output) pairs, stacked on channels; CycleGAN's single images.
    judges_pairs: bool = False

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (3, 28, 28),
        num_classes: int = 10,
        generator: GeneratorKind = "resnet",
        generator_width: int = 32,
        generator_blocks: int = 6,
        downsamplings: int = 2,
        generator_norm: Norm = "instance",
        generator_warp: float = 0.0,
        generator_output: GeneratorOutput = "tanh",
        share_generator_features: bool = False,
        discriminator_width: int = 32,
        discriminator_layers: int = 2,
        discriminator_norm: Norm = "instance",
        loss: str = "lsgan",
        gp_weight: float = 10.0,
        lr: float = 2e-4,
        discriminator_lr: float | None = None,
        betas: tuple[float, float] = (0.5, 0.999),
        decay_start_epoch: int = 100,
        decay_epochs: int = 100,
        gradient_clip_val: float | None = None,
        weight_init: WeightInit = "default",
        seed: int = 0,
    ) -> None:
        super().__init__()
        for name, value in (("lr", lr), ("discriminator_lr", discriminator_lr)):
            if value is not None and not value > 0:
                raise ValueError(f"--model.{name} must be > 0, got {value}")
        self.save_hyperparameters()  # also collects the subclass's own arguments (Lightning walks the frames)
        self.automatic_optimization = False
        self.gan_loss = get_loss(loss)
        shape = tuple(image_shape)
        g_args = (shape, generator_width, generator_blocks, downsamplings, generator_norm, generator_warp,
                  generator_output)
        self.generator_ab = make_generator(generator, *g_args)
        self.generator_ba = make_generator(generator, *g_args)
        if share_generator_features and generator == "recolor":
            self.generator_ba.share_shape_features(self.generator_ab)
        d_in = shape[0] * (2 if self.judges_pairs else 1)
        self.discriminator_a = PatchDiscriminator(d_in, discriminator_width, discriminator_layers, discriminator_norm)
        self.discriminator_b = PatchDiscriminator(d_in, discriminator_width, discriminator_layers, discriminator_norm)
        for network in (self.generator_ab, self.generator_ba, self.discriminator_a, self.discriminator_b):
            init_weights(network, weight_init)
        self.metrics = TranslationMetrics()


    # --- what a scheme says ------------------------------------------------------------------------------------
    def history(self, fake_a: Tensor, fake_b: Tensor, rng: torch.Generator) -> tuple[Tensor, Tensor]:
        """The fakes the discriminators are shown (default: this batch's)."""
        return fake_a, fake_b

    def reconstruction_losses(self, real_a: Tensor, real_b: Tensor, fake_a: Tensor, fake_b: Tensor) -> dict:
        """The generator terms besides the adversarial one, weighted: `{name: scalar}`."""
        raise NotImplementedError

    # --- the contract --------------------------------------------------------------------------------------------
    @torch.no_grad()
    def translate(self, images: Tensor, direction: str = "AB") -> Tensor:
        """Images (N, C, H, W) in [0, 1] of domain A ("AB") or B ("BA") -> the other domain, same shape, in [0, 1],
        on the module's device, computed in eval mode without gradients."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be 'AB' or 'BA', got {direction!r}")
        shape = tuple(self.hparams.image_shape)
        if images.dim() != 4 or tuple(images.shape[1:]) != shape:
            raise ValueError(f"translate expects images of shape (N, {', '.join(map(str, shape))}) in [0, 1], "
                             f"got {tuple(images.shape)}")
        net = self.generator_ab if direction == "AB" else self.generator_ba
        with self.eval_mode():
            out = net(images.to(self.device, torch.float32) * 2 - 1)
        return ((out.float() + 1) / 2).clamp_(0, 1)

    # --- training ----------------------------------------------------------------------------------------------
    def configure_optimizers(self):
        h = self.hparams
        generators = dict.fromkeys(itertools.chain(self.generator_ab.parameters(), self.generator_ba.parameters()))
        opt_g = torch.optim.Adam(list(generators), lr=h.lr, betas=tuple(h.betas))  # shared features listed once
        opt_d = torch.optim.Adam(itertools.chain(self.discriminator_a.parameters(),
                                                 self.discriminator_b.parameters()),
                                 lr=h.lr if h.discriminator_lr is None else h.discriminator_lr,
                                 betas=tuple(h.betas))
        decay = lambda epoch: linear_decay(epoch, h.decay_start_epoch, h.decay_epochs)  # noqa: E731
        schedulers = [torch.optim.lr_scheduler.LambdaLR(opt, decay) for opt in (opt_g, opt_d)]
        return [opt_g, opt_d], schedulers

    # Manual optimization never steps schedulers. The learning rate is a function of the epoch, so the schedulers
    # are brought to it (never stepped blindly): at an epoch's end to the next epoch, before ModelCheckpoint's
    # epoch-end save, so that checkpoint holds the next epoch's rate; at the start of training and of each epoch
    # to the current one. Resuming replays hooks unevenly: from an epoch-end checkpoint Lightning calls that
    # epoch's `on_train_epoch_end` again; from a save after an epoch's last batch it calls no
    # `on_train_epoch_start` for the next one. Either way the schedulers end up where an uninterrupted run has them.
    def on_train_start(self) -> None:
        super().on_train_start()
        self.schedulers_to_epoch(self.current_epoch)

    def on_train_epoch_start(self) -> None:
        self.schedulers_to_epoch(self.current_epoch)

    def on_train_epoch_end(self) -> None:
        self.schedulers_to_epoch(self.current_epoch + 1)

    def schedulers_to_epoch(self, epoch: int) -> None:
        for scheduler in self.lr_schedulers():
            while scheduler.last_epoch < epoch:
                scheduler.step()

    def judge(self, discriminator: torch.nn.Module, images: Tensor, source: Tensor) -> Tensor:
        """Patch logits of `discriminator` for `images`, translated from `source` (pix2pix sees both)."""
        return discriminator(torch.cat([source, images], 1) if self.judges_pairs else images)

    def discriminator_loss(self, discriminator, real: Tensor, fake: Tensor, source: Tensor, rng) -> Tensor:
        loss = self.gan_loss.discriminator(self.judge(discriminator, real, source),
                                           self.judge(discriminator, fake, source))
        if self.gan_loss.gradient_penalty:
            critic = lambda x: self.judge(discriminator, x, source)  # noqa: E731
            loss = loss + self.hparams.gp_weight * gradient_penalty(critic, real, fake, rng)
        return loss

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        real_a, real_b = batch["image_a"] * 2 - 1, batch["image_b"] * 2 - 1  # (B, C, H, W) in [-1, 1]
        opt_g, opt_d = self.optimizers()
        rng = self.noise_generator(self.hparams.seed)
        fake_b, fake_a = self.generator_ab(real_a), self.generator_ba(real_b)

        with self.toggled_optimizer(opt_d):
            shown_a, shown_b = self.history(fake_a.detach(), fake_b.detach(), rng)
            loss_d = (self.discriminator_loss(self.discriminator_b, real_b, shown_b, real_a, rng)
                      + self.discriminator_loss(self.discriminator_a, real_a, shown_a, real_b, rng))
            self.check_finite(discriminator_loss=loss_d)
            self.manual_backward(loss_d)
            opt_d.step()
            opt_d.zero_grad(set_to_none=True)

        with self.toggled_optimizer(opt_g):
            terms = {"adversarial": self.gan_loss.generator(self.judge(self.discriminator_b, fake_b, real_a))
                     + self.gan_loss.generator(self.judge(self.discriminator_a, fake_a, real_b)),
                     **self.reconstruction_losses(real_a, real_b, fake_a, fake_b)}
            loss_g = sum(terms.values())
            self.check_finite(generator_loss=loss_g)
            self.manual_backward(loss_g)
            opt_g.step()
            opt_g.zero_grad(set_to_none=True)

        self.log_train({"train/loss_d": loss_d, "train/loss_g": loss_g,
                        **{f"train/{name}": value for name, value in terms.items()}},
                       prog_bar=("train/loss_d", "train/loss_g"))

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Called inside opt.step(), after 16-mixed has unscaled the gradients (clipping earlier clips scaled ones).
        if self.hparams.gradient_clip_val:
            self.clip_gradients(optimizer, gradient_clip_val=self.hparams.gradient_clip_val,
                                gradient_clip_algorithm="norm")

    # --- validate / test: translation metrics; predict: pictures ------------------------------------------------
    def _evaluate(self, stage: str, batch: dict[str, Tensor]) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        means = self.metrics.update(stage, self, batch, datamodule)
        self.log_dict({f"{stage}/{name}": metric for name, metric in means.items()},
                      batch_size=len(batch["image_a"]))

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate("val", batch)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate("test", batch)

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """`{"a_to_b": ..., "b_to_a": ...}`: one input | translation | cycle strip (C, H, 3W) per image, in
        digit order (written by `ImageWriter`)."""
        return strips(self, sorted_by_label(batch, "a"), sorted_by_label(batch, "b"))
