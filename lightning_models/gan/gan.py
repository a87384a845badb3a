"""The GAN training scheme: one manual-optimization step for unconditional and label-conditional GANs.

Per batch: `n_critic` discriminator steps, then one generator step, each scoped by `toggled_optimizer`.
The fake batch of the last critic step is made once and reused for the generator step (`fake.detach()` for D).
Note that Lightning's `global_step` counts optimizer steps: a batch is `n_critic + 1` steps, and `max_steps`
means the same.

Other adversarial models of the collection (latent-space GANs, InfoGAN) subclass `GAN` and change only its
hooks, never the step: `build_networks` (which generator / discriminator), `real_inputs` (what D sees as real),
`draw_latent` (the generator's input), `discriminate` (D's logits plus any auxiliary output, e.g. a Q head) and
`auxiliary_loss` (a term added to both the D and the G loss, e.g. InfoGAN's mutual information) and `real_loss`
(a term on the real batch, e.g. InfoGAN's consistency of Q's categories under warps).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.optim.swa_utils import AveragedModel

from lightning_models import augment
from lightning_models.base import GenerativeModule, linear_decay
from lightning_models.losses import get_loss, gradient_penalty, mode_seeking_loss
from lightning_models.metrics.sample_scores import SampleScores
from lightning_models.networks.conv import Norm, WeightInit, init_weights
from lightning_models.networks.dcgan import Condition, Discriminator, Generator


def ema_decay_after(updates: int, decay: float, rampup: float) -> float:
    """The EMA's decay at its `updates`-th average: min(decay, 1 - 1 / (1 + rampup * updates)), an average over
    about the last `rampup` fraction of the updates until `decay` takes over."""
    return min(decay, 1.0 - 1.0 / (1.0 + rampup * updates))


def warmup_ema(decay: float, rampup: float):
    """`AveragedModel`'s multi_avg_fn of an EMA whose decay ramps up (`ema_decay_after`)."""

    @torch.no_grad()
    def update(averaged: list[Tensor], current: list[Tensor], num_averaged: Tensor) -> None:
        weight = 1.0 - ema_decay_after(int(num_averaged), decay, rampup)
        if torch.is_floating_point(averaged[0]):
            torch._foreach_lerp_(averaged, current, weight)
        else:  # integer buffers (batch norm's counter) follow the generator
            torch._foreach_copy_(averaged, current)

    return update


class GAN(SampleScores, GenerativeModule):
    """DCGAN / conditional GAN with any loss of `lightning_models.losses`.

    Args:
        image_shape: (C, H, W), linked from the datamodule by the CLI.
        num_classes: label classes, linked from the datamodule (used for conditioning and evaluation).
        conditional: condition both networks on the label (cGAN); `sample(n, labels)` then takes class ids.
        latent_dim: size of the noise vector z ~ N(0, I).
        generator_width: channels of the generator's last hidden layer.
        discriminator_width: channels of the discriminator's first layer.
        generator_norm: normalisation in the generator ("batch" as in DCGAN).
        discriminator_norm: "spectral" (default), "batch" (the DCGAN of the source reports), "instance", "none".
        minibatch_std: give the discriminator the batch's feature spread (against mode collapse).
        label_dim: size of the generator's learned label code, concatenated to the noise (None = latent_dim).
        discriminator_condition: how a conditional discriminator takes the label: "projection" (a projection
            head), "concat" (a learned label map concatenated as an extra input channel) or "both".
        weight_init: "default" (PyTorch's initialisation) or "dcgan" (weights N(0, 0.02), normalisation scales
            N(1, 0.02), zero biases: the DCGAN and InfoGAN papers' initialisation), for both networks.
        loss: saturating | non_saturating | lsgan | hinge | wgan_gp.
        gp_weight: weight of the gradient penalty (wgan_gp only).
        n_critic: discriminator steps per generator step.
        lr_generator: Adam learning rate of the generator.
        lr_discriminator: Adam learning rate of the discriminator.
        betas: Adam betas of both optimizers.
        lr_decay_start: batch from which both learning rates fall linearly to 0 at the run's last batch
            (`trainer.max_steps` / (n_critic + 1)); None = constant. A function of the batch count, so an exact
            resume and a chain of resumed runs with growing `max_steps` see the same rates as one long run
            (as long as `lr_decay_start` is past the earlier runs' ends).
        mode_seeking_weight: weight of MSGAN's mode-seeking term in the generator loss (`losses.mode_seeking_loss`;
            0 = off): the fake batch is drawn as pairs for the same labels, and the generator is pushed to make
            the two samples of a pair differ as much as their noise does (against one image per class).
        class_weight: AC-GAN's auxiliary classifier (Odena et al. 2017), 0 = off: D gets a class head on its
            body's features, trained on the labelled real images (cross-entropy, in D's step, weight 1), and the
            generator is trained to make that head recognise each fake's label (`class_weight` x cross-entropy).
            Needs a discriminator body that does not read the label (`discriminator_condition: projection`).
        diff_augment: DiffAugment (Zhao et al. 2020), e.g. [translation, cutout]: every image the discriminator
            sees, real and fake, in both steps, is augmented differentiably (`augment.diff_augment`), against D
            memorising a small training set. None/[] = off. The gradient penalty (wgan_gp) sees unaugmented images.
        gradient_clip_val: clip each network's gradient norm to this (None = off); applied after AMP unscaling.
        ema_decay: keep an exponential moving average of the generator, used by `sample` (None = off; 0.999 is
            typical). Its decay ramps up (see `ema_rampup`), so a short run's average holds its recent
            generators, not the untrained start.
        ema_rampup: while training is young, the EMA averages over about this fraction of the generator updates so
            far: decay min(ema_decay, 1 - 1 / (1 + ema_rampup * n)) after n updates (StyleGAN2-ADA's ramp-up, 0.05).
        ema_start_step: global step (optimizer steps) from which the EMA starts following the generator.
        seed: seed of the training noise (combined with rank and step).
        classifier_path: classifier checkpoint for `cli.py test` metrics.
        num_eval_samples: samples drawn by `cli.py test`.
        predict_grid_size: samples per grid written by `cli.py predict`.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (1, 28, 28),
        num_classes: int = 10,
        conditional: bool = False,
        latent_dim: int = 100,
        generator_width: int = 64,
        discriminator_width: int = 64,
        generator_norm: Norm = "batch",
        discriminator_norm: Norm = "spectral",
        minibatch_std: bool = False,
        discriminator_condition: Condition = "projection",
        label_dim: int | None = None,
        weight_init: WeightInit = "default",
        loss: str = "non_saturating",
        gp_weight: float = 10.0,
        n_critic: int = 1,
        lr_generator: float = 2e-4,
        lr_discriminator: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        lr_decay_start: int | None = None,
        mode_seeking_weight: float = 0.0,
        class_weight: float = 0.0,
        diff_augment: list[str] | None = None,
        gradient_clip_val: float | None = None,
        ema_decay: float | None = None,
        ema_rampup: float = 0.05,
        ema_start_step: int = 0,
        seed: int = 0,
        classifier_path: str | None = None,
        num_eval_samples: int = 10_000,
        predict_grid_size: int = 64,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.gan_loss = get_loss(loss)
        if n_critic < 1:
            raise ValueError(f"--model.n_critic must be >= 1, got {n_critic}")
        if conditional and num_classes < 2:
            raise ValueError("--model.conditional true needs a datamodule with labels (num_classes >= 2)")
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise ValueError(f"--model.ema_decay must be in (0, 1) or null, got {ema_decay}")
        if class_weight < 0:
            raise ValueError(f"--model.class_weight must be >= 0, got {class_weight}")
        if class_weight and discriminator_condition != "projection":
            raise ValueError("--model.class_weight needs --model.discriminator_condition projection: with the label "
                             f"as an input channel ({discriminator_condition!r}) the class head could read it")
        if diff_augment:
            augment.diff_augment(torch.zeros(1, 1, 8, 8), diff_augment, None)  # unknown names fail before training
        if lr_decay_start is not None and lr_decay_start < 0:
            raise ValueError(f"--model.lr_decay_start must be a batch number >= 0 or null, got {lr_decay_start}")
        if ema_rampup <= 0:
            raise ValueError(f"--model.ema_rampup must be > 0, got {ema_rampup}")
        self.conditional = conditional
        self.num_classes = num_classes
        self.generator, self.discriminator = self.build_networks()
        for network in (self.generator, self.discriminator):
            init_weights(network, weight_init)
        self.generator_ema = None
        if ema_decay is not None:
            self.generator_ema = AveragedModel(self.generator, multi_avg_fn=warmup_ema(ema_decay, ema_rampup),
                                               use_buffers=True)
            self.generator_ema.requires_grad_(False)

    # --- hooks for subclasses -------------------------------------------------------------------------------------
    def build_networks(self) -> tuple[torch.nn.Module, torch.nn.Module]:
        """(generator, discriminator): generator(z, labels) -> fake, discriminator(x, labels) -> logits (B,).
        Called at the end of `__init__`, with `self.hparams`, `self.conditional`, `self.num_classes` set."""
        h = self.hparams
        cond_classes = self.num_classes if self.conditional else 0
        generator = Generator(h.latent_dim, tuple(h.image_shape), h.generator_width, cond_classes, h.generator_norm,
                              h.label_dim)
        discriminator = Discriminator(tuple(h.image_shape), h.discriminator_width, cond_classes,
                                      h.discriminator_norm, h.minibatch_std, h.discriminator_condition,
                                      class_head=bool(h.class_weight))
        return generator, discriminator

    def real_inputs(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor | None]:
        """(what the discriminator sees as real, labels or None) from a training batch."""
        return batch["image"] * 2 - 1, (batch["label"] if self.conditional else None)  # images in [-1, 1]

    def draw_latent(self, n: int, generator: torch.Generator | None) -> Tensor:
        """The generator's input for `n` samples (plain N(0, I) noise here)."""
        return torch.randn(n, self.hparams.latent_dim, device=self.device, generator=generator)

    def discriminate(self, x: Tensor, labels: Tensor | None) -> tuple[Tensor, object]:
        """(logits (B,), auxiliary output for `auxiliary_loss` / `real_auxiliary_loss`: the class head's logits
        with `class_weight`, else None)."""
        if not self.hparams.get("class_weight"):
            return self.discriminator(x, labels), None
        h = self.discriminator.features(x, labels)
        return self.discriminator.logits(h, labels), self.discriminator.classify(h)

    def auxiliary_loss(self, aux: object, latent: Tensor, labels: Tensor | None) -> Tensor | None:
        """A term added to both the discriminator and the generator loss, computed on the fake batch from
        `discriminate`'s auxiliary output and the latent it was made from (None = no such term). Here AC-GAN's
        class term, in the generator step only (its class head learns from real images alone)."""
        if aux is None or self._discriminator_trains():
            return None
        return self.hparams.class_weight * torch.nn.functional.cross_entropy(aux.float(), labels)

    def real_auxiliary_loss(self, aux: object, labels: Tensor | None) -> Tensor | None:
        """A term of the discriminator step on `discriminate`'s auxiliary output for the real batch (None = no
        such term): here the class head's cross-entropy on the real labels (AC-GAN)."""
        if aux is None or not self.hparams.get("class_weight"):
            return None
        return torch.nn.functional.cross_entropy(aux.float(), labels)

    def _discriminator_trains(self) -> bool:
        # toggled_optimizer leaves only the stepping optimizer's parameters trainable
        return next(self.discriminator.parameters()).requires_grad

    def discriminator_view(self, images: Tensor, generator: torch.Generator | None) -> Tensor:
        """What the discriminator sees of a batch in training: the images, DiffAugment-ed with `diff_augment`
        (drawing from `generator`, the step's "augment" stream, which is only made when the option is on)."""
        policy = self.hparams.get("diff_augment")
        return augment.diff_augment(images, policy, generator) if policy else images

    def real_loss(self, real: Tensor, labels: Tensor | None) -> Tensor | None:
        """A term on the real batch (as `real_inputs` gives it), added to the loss of both steps; it trains what
        the step's optimizer holds, so a subclass returns None in the step whose parameters it must not train
        (e.g. InfoGAN's consistency term, in the step that trains the Q head). None = no such term."""
        return None

    def optimized_parameters(self) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
        """(the parameters G's optimizer trains, those D's optimizer trains): the two networks' by default."""
        return list(self.generator.parameters()), list(self.discriminator.parameters())

    def configure_optimizers(self):
        h = self.hparams
        g_params, d_params = self.optimized_parameters()
        opt_g = torch.optim.Adam(g_params, lr=h.lr_generator, betas=tuple(h.betas))
        opt_d = torch.optim.Adam(d_params, lr=h.lr_discriminator, betas=tuple(h.betas))
        return opt_g, opt_d

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """A checkpoint with an EMA generator loads into a model built with `--model.ema_decay null`, which then
        samples with the raw generator (e.g. `cli.py test --ckpt_path ... --model.ema_decay null` to compare the
        two samplers)."""
        super().on_load_checkpoint(checkpoint)
        if self.generator_ema is None:
            state = checkpoint.get("state_dict", {})
            for key in [k for k in state if k.startswith("generator_ema.")]:
                del state[key]

    def sampling_generator(self) -> torch.nn.Module:
        """The generator that samples: its EMA copy when one is kept, else the trained one."""
        return self.generator_ema.module if self.generator_ema is not None else self.generator

    def generate(self, n: int, labels: Tensor | None, generator: torch.Generator | None) -> Tensor:
        return self.sampling_generator()(self.draw_latent(n, generator), labels)

    def lr_factor(self) -> float:
        """The learning rates' factor at this batch: 1, falling linearly from batch `lr_decay_start` to 0 at the
        run's last batch (`trainer.max_steps`)."""
        start = self.hparams.get("lr_decay_start")
        if start is None:
            return 1.0
        steps_per_batch = self.hparams.n_critic + 1
        end = self.trainer.max_steps // steps_per_batch
        return linear_decay(self.global_step // steps_per_batch, start, end - start)

    def on_train_start(self) -> None:
        super().on_train_start()
        if self.hparams.get("lr_decay_start") is not None and self.trainer.max_steps < 0:
            raise ValueError("--model.lr_decay_start decays the learning rates to 0 at the run's end, which "
                             "--trainer.max_steps sets: give --trainer.max_steps (optimizer steps, "
                             f"{self.hparams.n_critic + 1} per batch) or --model.lr_decay_start null")

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        real, labels = self.real_inputs(batch)
        opt_g, opt_d = self.optimizers()
        factor = self.lr_factor()
        for optimizer in (opt_g, opt_d):
            for group in optimizer.param_groups:
                group["lr"] = group.setdefault("initial_lr", group["lr"]) * factor
        rng = self.noise_generator(self.hparams.seed)
        view = self.noise_generator(self.hparams.seed, "augment") if self.hparams.get("diff_augment") else None
        loss = self.gan_loss
        logs = {}

        mode_seeking = self.hparams.get("mode_seeking_weight", 0.0)  # (subclasses may not take the option)
        fake_labels = labels
        if mode_seeking and labels is not None:  # pairs (i, i + B/2) share their label
            half = len(labels) // 2
            fake_labels = torch.cat([labels[:half], labels[: len(labels) - half]])
        for i in range(self.hparams.n_critic):
            z = self.draw_latent(real.shape[0], rng)
            last = i == self.hparams.n_critic - 1
            with torch.set_grad_enabled(last):  # only the last fake feeds the generator step
                fake = self.generator(z, fake_labels)
            with self.toggled_optimizer(opt_d):
                real_logits, real_aux = self.discriminate(self.discriminator_view(real, view), labels)
                fake_logits, fake_aux = self.discriminate(self.discriminator_view(fake.detach(), view), fake_labels)
                loss_d = loss.discriminator(real_logits, fake_logits)
                if loss.gradient_penalty:  # (mode seeking pairs labels differently: not with the penalty)
                    gp = gradient_penalty(lambda x: self.discriminate(x, labels)[0], real, fake, rng)
                    loss_d = loss_d + self.hparams.gp_weight * gp
                loss_d = self._add_terms(loss_d, logs, "d", aux=self.auxiliary_loss(fake_aux, z, fake_labels),
                                         real=self.real_loss(real, labels),
                                         real_aux=self.real_auxiliary_loss(real_aux, labels))
                self.check_finite(discriminator_loss=loss_d)
                self.manual_backward(loss_d)
                opt_d.step()
                opt_d.zero_grad(set_to_none=True)

        with self.toggled_optimizer(opt_g):
            gen_logits, gen_aux = self.discriminate(self.discriminator_view(fake, view), fake_labels)
            loss_g = loss.generator(gen_logits)
            loss_g = self._add_terms(loss_g, logs, "g", aux=self.auxiliary_loss(gen_aux, z, fake_labels),
                                     real=self.real_loss(real, labels),
                                     mode_seeking=mode_seeking * mode_seeking_loss(fake, z) if mode_seeking else None)
            self.check_finite(generator_loss=loss_g)
            self.manual_backward(loss_g)
            opt_g.step()
            opt_g.zero_grad(set_to_none=True)
        if self.generator_ema is not None and self.global_step >= self.hparams.ema_start_step:
            self.generator_ema.update_parameters(self.generator)

        self.log_train({"train/loss_d": loss_d, "train/loss_g": loss_g, "train/d_real": real_logits.mean(),
                        "train/d_fake": fake_logits.mean(), **logs}, prog_bar=("train/loss_d", "train/loss_g"))

    @staticmethod
    def _add_terms(loss: Tensor, logs: dict[str, Tensor], step: str, **terms: Tensor | None) -> Tensor:
        """`loss` plus the subclass terms of one step (None = absent), each logged as `train/loss_<name>_<step>`."""
        for name, term in terms.items():
            if term is not None:
                loss = loss + term
                logs[f"train/loss_{name}_{step}"] = term.detach()
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Called by Lightning inside opt.step(), after 16-mixed has unscaled the gradients (clipping earlier
        # would clip scaled gradients).
        if self.hparams.gradient_clip_val:
            self.clip_gradients(optimizer, gradient_clip_val=self.hparams.gradient_clip_val,
                                gradient_clip_algorithm="norm")
