"""The step, schedule and contract CycleGAN and pix2pix share (lightning_models/translation/base.py)."""

import pytest
import pytorch_lightning as pl
import torch

from lightning_models.losses import get_loss, gradient_penalty
from lightning_models.networks.translation import InwardClamp
from lightning_models.translation.base import linear_decay
from lightning_models.translation.cyclegan import CycleGAN
from lightning_models.translation.pix2pix import Pix2Pix
from tests.helpers import one_thread  # noqa: F401 (autouse: one torch thread)
from tests.lightning_models.translation.fixtures import fit, tiny

SCHEMES = [CycleGAN, Pix2Pix]
NETWORKS = ("generator_ab", "generator_ba", "discriminator_a", "discriminator_b")


class StepSpy(pl.Callback):
    """Records, at every optimizer step, which networks the optimizer holds, which have gradients and which
    are trainable (toggled_optimizer freezes the others)."""

    def __init__(self) -> None:
        self.steps = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        held = {id(p) for group in optimizer.param_groups for p in group["params"]}

        def which(test):
            return {name for name in NETWORKS if all(test(p) for p in getattr(pl_module, name).parameters())}

        self.steps.append({"optimizer": which(lambda p: id(p) in held), "grads": which(lambda p: p.grad is not None),
                           "no_grads": which(lambda p: p.grad is None),
                           "trainable": which(lambda p: p.requires_grad)})


@pytest.mark.parametrize("cls, generator", [(CycleGAN, "resnet"), (Pix2Pix, "unet"), (CycleGAN, "recolor")],
                         ids=["CycleGAN", "Pix2Pix", "CycleGAN-recolor"])
def test_discriminator_step_then_generator_step_each_with_only_its_networks(cls, generator, mnist_dir):
    spy = StepSpy()
    model = tiny(cls, generator=generator)
    before = {name: [p.clone() for p in getattr(model, name).parameters()] for name in NETWORKS}
    trainer = fit(model, mnist_dir, max_steps=4, callbacks=[spy])
    assert trainer.global_step == 4 and trainer.fit_loop.epoch_loop.batch_progress.total.completed == 2
    d_nets, g_nets = {"discriminator_a", "discriminator_b"}, {"generator_ab", "generator_ba"}
    for step, expected in zip(spy.steps, [d_nets, g_nets] * 2, strict=True):
        assert step["optimizer"] == expected  # the step's optimizer holds exactly these networks ...
        assert step["grads"] == expected and step["no_grads"] == set(NETWORKS) - expected  # ... which alone have grads
        assert step["trainable"] == expected  # and the others are frozen during the step
    for name in NETWORKS:  # all four networks learned
        assert any(not torch.equal(a, b) for a, b in zip(before[name], getattr(model, name).parameters())), name


@pytest.mark.parametrize("cls", SCHEMES, ids=lambda c: c.__name__)
def test_translate_contract(cls):
    model = tiny(cls)
    model.train()
    images = torch.rand(5, 3, 28, 28)
    for direction in ("AB", "BA"):
        out = model.translate(images, direction)
        assert out.shape == images.shape and out.device == model.device
        assert out.min() >= 0 and out.max() <= 1 and not out.requires_grad
    assert model.training  # restored
    assert not torch.equal(model.translate(images, "AB"), model.translate(images, "BA"))  # two generators
    with pytest.raises(ValueError, match="direction must be 'AB' or 'BA'"):
        model.translate(images, "AA")
    with pytest.raises(ValueError, match=r"shape \(N, 3, 28, 28\)"):
        model.translate(images[:, :1])


def test_linear_decay_schedule():
    assert [linear_decay(e, start=2, length=4) for e in range(8)] == [1, 1, 1, 0.75, 0.5, 0.25, 0, 0]
    assert linear_decay(50, start=0, length=0) == 1.0


def test_schedulers_are_stepped_at_each_epoch_end(mnist_dir):
    # paired fixture: 56 training images / 8 = 7 batches per epoch; 3 epochs
    seen = []

    class LearningRates(pl.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            seen.append([opt.param_groups[0]["lr"] for opt in trainer.optimizers])

    fit(tiny(Pix2Pix, lr=1e-3, decay_start_epoch=1, decay_epochs=2), mnist_dir, max_steps=-1, max_epochs=3,
        callbacks=[LearningRates()], limit_val_batches=0)
    assert seen == [[1e-3, 1e-3], [1e-3, 1e-3], [5e-4, 5e-4]]


@pytest.mark.parametrize("cls", SCHEMES, ids=lambda c: c.__name__)
def test_discriminator_lr_sets_only_the_discriminators_optimizer(cls, mnist_dir):
    trainer = fit(tiny(cls, lr=1e-3, discriminator_lr=4e-3), mnist_dir, max_steps=2)
    model, (opt_g, opt_d) = trainer.lightning_module, trainer.optimizers
    held_d = {id(p) for group in opt_d.param_groups for p in group["params"]}
    assert held_d == {id(p) for net in (model.discriminator_a, model.discriminator_b) for p in net.parameters()}
    assert [opt_g.param_groups[0]["lr"], opt_d.param_groups[0]["lr"]] == [1e-3, 4e-3]
    # the decay scales each from its own base rate
    assert [c.scheduler.base_lrs[0] for c in trainer.lr_scheduler_configs] == [1e-3, 4e-3]
    (_, default_d), _ = tiny(cls, lr=1e-3).configure_optimizers()
    assert default_d.param_groups[0]["lr"] == 1e-3  # None: the discriminators use lr
    with pytest.raises(ValueError, match="--model.discriminator_lr must be > 0"):
        tiny(cls, discriminator_lr=0.0)


def test_unknown_loss_and_generator_name_the_option():
    with pytest.raises(ValueError, match="--model.loss must be one of"):
        tiny(CycleGAN, loss="wasserstein")
    with pytest.raises(ValueError, match="--model.generator must be 'resnet', 'unet' or 'recolor'"):
        tiny(Pix2Pix, generator="vit")
    with pytest.raises(ValueError, match="--model.downsamplings"):
        tiny(CycleGAN, image_shape=(3, 30, 30))
    with pytest.raises(ValueError, match="--model.weight_init must be 'default' or 'dcgan'"):
        tiny(CycleGAN, weight_init="orthogonal")


@pytest.mark.parametrize("cls", [CycleGAN, Pix2Pix])
def test_dcgan_weight_init_reaches_all_four_networks(cls):
    torch.manual_seed(0)
    model = tiny(cls, generator_width=16, discriminator_width=16, weight_init="dcgan")
    for name in ("generator_ab", "generator_ba", "discriminator_a", "discriminator_b"):
        convs = [m for m in getattr(model, name).modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
        norms = [m for m in getattr(model, name).modules() if isinstance(m, torch.nn.InstanceNorm2d) and m.affine]
        assert convs and norms, name
        weights = torch.cat([m.weight.flatten() for m in convs])
        assert abs(weights.std().item() - 0.02) < 0.003, name
        assert all(m.bias is None or not m.bias.any() for m in convs)
        scales = torch.cat([m.weight for m in norms])
        assert abs(scales.mean().item() - 1) < 0.02 and all(not m.bias.any() for m in norms)


def test_wgan_gp_loss_trains(mnist_dir):
    torch.manual_seed(0)
    model = tiny(Pix2Pix, loss="wgan_gp", gp_weight=10.0)
    gen = torch.Generator().manual_seed(0)
    real, fake, source = (torch.rand(4, 3, 28, 28, generator=gen) * 2 - 1 for _ in range(3))
    # the critic's loss: the Wasserstein term plus gp_weight times the penalty at the same random mixes
    critic = model.discriminator_b
    loss = model.discriminator_loss(critic, real, fake, source, torch.Generator().manual_seed(1))
    wasserstein = get_loss("wgan_gp").discriminator(model.judge(critic, real, source), model.judge(critic, fake, source))
    penalty = gradient_penalty(lambda x: model.judge(critic, x, source), real, fake, torch.Generator().manual_seed(1))
    assert penalty > 0.1  # a random critic's gradient norm is far from 1
    torch.testing.assert_close(loss, wasserstein + 10.0 * penalty)
    before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("discriminator")}
    trainer = fit(model, mnist_dir, max_steps=2)  # the penalty's double backward steps both critics
    assert torch.isfinite(trainer.callback_metrics["train/loss_d"])
    for prefix in ("discriminator_a.", "discriminator_b."):
        assert any(not torch.equal(v, model.state_dict()[k]) for k, v in before.items() if k.startswith(prefix))


@pytest.mark.parametrize("generator", ["unet", "resnet"])
def test_clamp_output_moves_pixels_that_tanh_leaves_saturated(generator):
    # The black background drives the generator's last bias far below -1. A pixel whose target is white is then
    # stuck under tanh (gradient ~1e-6 at -8) but not under InwardClamp, which keeps the gradient pulling it back
    # into range and whose output stays in [-1, 1].
    images, white = torch.rand(4, 3, 28, 28) * 2 - 1, torch.ones(4, 3, 28, 28)
    means = {}
    for output in ("tanh", "clamp"):
        torch.manual_seed(0)
        net = tiny(Pix2Pix, generator=generator, generator_output=output).generator_ab
        last = net.up[0][0] if generator == "unet" else net.layers[-2]  # the convolution before the output
        with torch.no_grad():
            last.bias.fill_(-8.0)
        assert net(images).max() <= -0.99  # both start saturated black
        opt = torch.optim.SGD(net.parameters(), lr=1.0)
        for _ in range(40):
            opt.zero_grad()
            out = net(images)
            assert out.min() >= -1 and out.max() <= 1
            torch.nn.functional.l1_loss(out, white).backward()
            opt.step()
        means[output] = net(images).mean().item()
    assert means["tanh"] < -0.99 and means["clamp"] > 0.9, means


def test_generator_output_option():
    assert isinstance(tiny(Pix2Pix).generator_ab.up[0][-1], torch.nn.Tanh)  # pix2pix's by default
    recolor = tiny(CycleGAN, generator="recolor", generator_output="clamp")  # ignored, like generator_blocks
    assert not any(isinstance(m, torch.nn.Tanh) for m in recolor.modules())
    for generator in ("resnet", "unet", "recolor"):  # a typo is an error even where the option does nothing
        with pytest.raises(ValueError, match="--model.generator_output must be 'tanh' or 'clamp', got 'relu'"):
            tiny(CycleGAN, generator=generator, generator_output="relu")


def test_inward_clamp_keeps_only_the_gradient_that_pulls_back_into_range():
    x = torch.tensor([-3.0, -3.0, 0.5, 0.5, 3.0, 3.0], requires_grad=True)
    out = InwardClamp()(x)
    assert out.tolist() == [-1.0, -1.0, 0.5, 0.5, 1.0, 1.0]
    out.backward(torch.tensor([1.0, -1.0, 1.0, -1.0, -1.0, 1.0]))  # descent moves each value by -grad
    assert x.grad.tolist() == [0.0, -1.0, 1.0, -1.0, 0.0, 1.0]  # further out: blocked; back in or inside: kept
