"""The GAN scheme: step order and counting, sampling contract, EMA, clipping, non-finite guard."""

import glob
import os

import pytest
import pytorch_lightning as pl
from pytorch_lightning.plugins import MixedPrecision
import torch
from torch.optim.swa_utils import AveragedModel

from datamodules import MNISTDataModule
from lightning_models import GAN, NonFiniteLossError
from lightning_models.callbacks import RunCheckpoint
from lightning_models.gan.gan import ema_decay_after, warmup_ema


def tiny_gan(**kwargs):
    args = dict(image_shape=(1, 28, 28), num_classes=10, latent_dim=8, generator_width=8, discriminator_width=8)
    return GAN(**{**args, **kwargs})


def fit(model, data_dir, max_steps, root=None, callbacks=(), ckpt_path=None, **trainer_kwargs):
    dm = MNISTDataModule(data_dir=data_dir, batch_size=8, val_size=8)
    trainer = pl.Trainer(max_steps=max_steps, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=bool(root), default_root_dir=root,
                         callbacks=list(callbacks), **trainer_kwargs)
    trainer.fit(model, dm, ckpt_path=ckpt_path)
    return trainer


def assert_resume_matches_one_run(fresh, data_dir, tmp_path):
    """An 8-step run of the model `fresh()` builds equals, bit for bit, a 4-step run resumed from its checkpoint
    to 8 steps."""
    full = fresh()
    fit(full, data_dir, max_steps=8)
    fit(fresh(), data_dir, max_steps=4, root=str(tmp_path), callbacks=[RunCheckpoint(every_n_train_steps=4)])
    resumed = fresh()
    ckpt = glob.glob(str(tmp_path / "**" / "last.ckpt"), recursive=True)[0]
    fit(resumed, data_dir, max_steps=8, root=str(tmp_path), ckpt_path=ckpt)
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("conditional", [False, True])
def test_sample_contract(conditional):
    model = tiny_gan(conditional=conditional)
    model.train()
    images = model.sample(5, torch.arange(5) if conditional else None)
    assert images.shape == (5, 1, 28, 28) and images.device == model.device
    assert images.min() >= 0 and images.max() <= 1 and not images.requires_grad
    assert model.training  # restored
    g1, g2 = (torch.Generator().manual_seed(3) for _ in range(2))
    assert torch.equal(model.sample(4, generator=g1), model.sample(4, generator=g2))


def test_labels_are_checked():
    with pytest.raises(ValueError, match="unconditional"):
        tiny_gan().sample(2, torch.tensor([0, 1]))
    cgan = tiny_gan(conditional=True)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 9\]"):
        cgan.sample(2, torch.tensor([0, 10]))
    with pytest.raises(ValueError, match="3 integer class ids"):
        cgan.sample(3, torch.tensor([0, 1]))
    assert cgan.check_labels(12, None).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]


def test_conditioning_changes_samples():
    cgan = tiny_gan(conditional=True)
    a = cgan.sample(4, torch.zeros(4, dtype=torch.long), torch.Generator().manual_seed(0))
    b = cgan.sample(4, torch.ones(4, dtype=torch.long), torch.Generator().manual_seed(0))
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("n_critic", [1, 3])
def test_step_counting_and_both_networks_train(mnist_dir, n_critic):
    model = tiny_gan(n_critic=n_critic, loss="wgan_gp" if n_critic > 1 else "non_saturating")
    g0 = [p.clone() for p in model.generator.parameters()]
    d0 = [p.clone() for p in model.discriminator.parameters()]
    trainer = fit(model, mnist_dir, max_steps=3 * (n_critic + 1))
    # global_step counts optimizer steps: n_critic D steps + 1 G step per batch.
    assert trainer.global_step == 3 * (n_critic + 1)
    assert trainer.fit_loop.epoch_loop.batch_progress.total.completed == 3
    assert all(not torch.equal(a, b) for a, b in zip(g0, model.generator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d0, model.discriminator.parameters()))


def test_steps_alternate_d_then_g_and_each_sees_only_its_gradients(mnist_dir):
    model = tiny_gan(n_critic=2)
    seen = []

    class Spy(pl.Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            params = {id(p) for group in optimizer.param_groups for p in group["params"]}
            which = "G" if params == {id(p) for p in pl_module.generator.parameters()} else "D"
            g_grads = any(p.grad is not None for p in pl_module.generator.parameters())
            d_grads = any(p.grad is not None for p in pl_module.discriminator.parameters())
            seen.append((which, g_grads, d_grads))

    fit(model, mnist_dir, max_steps=6, callbacks=[Spy()])
    assert [s[0] for s in seen] == ["D", "D", "G"] * 2
    assert all((not g and d) if which == "D" else (g and not d) for which, g, d in seen)


def test_ema_follows_generator_only(mnist_dir):
    model = tiny_gan(ema_decay=0.5)
    fit(model, mnist_dir, max_steps=6)
    ema = dict(model.generator_ema.module.named_parameters())
    assert set(ema) == {n for n, _ in model.generator.named_parameters()}  # no discriminator weights
    # EMA lags the live generator but is not the initial weights
    assert any(not torch.equal(ema[n], p) for n, p in model.generator.named_parameters())
    samples = model.sample(2, generator=torch.Generator().manual_seed(0))  # sample() draws from the EMA
    expected = model.generator_ema.module.eval()(torch.randn(2, 8, generator=torch.Generator().manual_seed(0)))
    torch.testing.assert_close(samples, (expected + 1) / 2)


@pytest.mark.parametrize("condition", ["projection", "concat", "both"])
def test_discriminator_takes_the_label_as_configured(condition):
    cgan = tiny_gan(conditional=True, discriminator_condition=condition)
    d = cgan.discriminator
    assert (d.label_map is not None) == (condition != "projection")
    assert (d.embed is not None) == (condition != "concat")
    images = torch.rand(4, 1, 28, 28)
    assert not torch.allclose(d(images, torch.zeros(4, dtype=torch.long)), d(images, torch.ones(4, dtype=torch.long)))
    with pytest.raises(ValueError, match="discriminator_condition"):
        tiny_gan(conditional=True, discriminator_condition="input")


def test_mode_seeking_draws_pairs_of_one_label_and_trains_them_apart(mnist_dir):
    model = tiny_gan(conditional=True, mode_seeking_weight=1.0)
    seen = []
    model.generator.register_forward_hook(lambda module, args, out: seen.append(args[1].clone()))
    trainer = fit(model, mnist_dir, max_steps=4)
    half = len(seen[0]) // 2
    assert all(torch.equal(labels[:half], labels[half : 2 * half]) for labels in seen)
    assert "train/loss_mode_seeking_g" in trainer.callback_metrics


def test_ema_decay_warms_up_by_hand():
    layer = torch.nn.Linear(1, 1, bias=False)
    ema = AveragedModel(layer, multi_avg_fn=warmup_ema(0.9, 0.5), use_buffers=True)
    expected = None
    for n, value in enumerate([1.0, 2.0, 4.0, 8.0, 16.0, 32.0] + [0.0] * 40):
        layer.weight.data.fill_(value)
        ema.update_parameters(layer)
        decay = min(0.9, 1 - 1 / (1 + 0.5 * n))  # update n averages with this decay (update 0 copies)
        expected = value if expected is None else decay * expected + (1 - decay) * value
        assert float(ema.module.weight) == pytest.approx(expected, rel=1e-5)
    assert ema_decay_after(0, 0.999, 0.05) == 0.0 and ema_decay_after(10_000, 0.999, 0.05) == pytest.approx(1 - 1 / 501)
    assert ema_decay_after(100_000, 0.999, 0.05) == 0.999


def test_ema_of_a_short_run_holds_the_recent_generator(mnist_dir):
    """With a fixed decay of 0.999, 6 updates would leave the EMA 99.4% at the untrained start; ramped up, the EMA
    is close to the live generator."""
    model = tiny_gan(ema_decay=0.999)
    start = [p.clone() for p in model.generator.parameters()]
    fit(model, mnist_dir, max_steps=12)
    moved = sum(float((p - s).norm()) for p, s in zip(model.generator.parameters(), start))
    lag = sum(float((e - p).norm()) for e, p in zip(model.generator_ema.module.parameters(),
                                                    model.generator.parameters()))
    assert lag < 0.5 * moved


def test_an_ema_checkpoint_samples_with_the_raw_generator_when_asked(mnist_dir, tmp_path):
    model = tiny_gan(ema_decay=0.9)
    trainer = fit(model, mnist_dir, max_steps=4)
    trainer.save_checkpoint(tmp_path / "ema.ckpt")
    raw = GAN.load_from_checkpoint(tmp_path / "ema.ckpt", ema_decay=None)
    assert raw.generator_ema is None
    z = torch.Generator().manual_seed(0)
    expected = model.generator.eval()(torch.randn(3, 8, generator=torch.Generator().manual_seed(0)))
    torch.testing.assert_close(raw.sample(3, generator=z), (expected + 1) / 2)
    ema = GAN.load_from_checkpoint(tmp_path / "ema.ckpt")  # as trained: the EMA samples
    assert not torch.allclose(ema.sample(3, generator=torch.Generator().manual_seed(0)), raw.sample(
        3, generator=torch.Generator().manual_seed(0)))


def test_gradient_clipping_bounds_update(mnist_dir):
    # With a tiny clip value and SGD-like tiny steps, weights move much less than without clipping.
    moved = {}
    for clip in (None, 1e-6):
        model = tiny_gan(gradient_clip_val=clip, lr_generator=1e-2, lr_discriminator=1e-2, betas=(0.0, 0.0))
        d0 = [p.clone() for p in model.discriminator.parameters()]
        fit(model, mnist_dir, max_steps=1)
        moved[clip] = sum((a - b).abs().sum() for a, b in zip(d0, model.discriminator.parameters()))
    assert moved[1e-6] < moved[None]


def test_non_finite_loss_stops_before_the_step_and_keeps_last_checkpoint(mnist_dir, tmp_path):
    model = tiny_gan()
    root = str(tmp_path / "runs")
    fit(model, mnist_dir, max_steps=4, root=root, callbacks=[RunCheckpoint()])
    (last,) = glob.glob(os.path.join(root, "*", "checkpoints", "last.ckpt"))
    before = open(last, "rb").read()

    class Poison(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step >= 6:
                batch["image"][:] = float("nan")

    # Resume into the same folder, saving after every batch: a NaN step would land in last.ckpt.
    every_batch = RunCheckpoint(dirpath=os.path.dirname(last), every_n_train_steps=1)
    with pytest.raises(NonFiniteLossError, match=r"non-finite discriminator_loss \(nan\) at global step 6"):
        fit(model, mnist_dir, max_steps=20, root=root, callbacks=[every_batch, Poison()], ckpt_path=last)
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the step never happened
    saved = torch.load(last, weights_only=False)
    assert open(last, "rb").read() != before and saved["global_step"] == 6  # the good batch was saved ...
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values() if v.is_floating_point())  # ... only


def test_invalid_options_are_rejected():
    with pytest.raises(ValueError, match="n_critic"):
        tiny_gan(n_critic=0)
    with pytest.raises(ValueError, match="ema_decay"):
        tiny_gan(ema_decay=1.5)
    with pytest.raises(ValueError, match="ema_rampup"):
        tiny_gan(ema_decay=0.9, ema_rampup=0)
    with pytest.raises(ValueError, match="image size 30"):
        tiny_gan(image_shape=(1, 30, 30))
    with pytest.raises(ValueError, match="--model.weight_init must be 'default' or 'dcgan', got 'xavier'"):
        tiny_gan(weight_init="xavier")


@pytest.mark.parametrize("norm", ["batch", "spectral"])
def test_dcgan_weight_init(norm):
    torch.manual_seed(0)
    default = tiny_gan(discriminator_norm=norm, generator_width=32, discriminator_width=32)
    torch.manual_seed(0)
    dcgan = tiny_gan(discriminator_norm=norm, generator_width=32, discriminator_width=32, weight_init="dcgan")
    # "default" is PyTorch's own initialisation: the same seed builds the same networks as before the option
    torch.manual_seed(0)
    torch.testing.assert_close(default.state_dict(), tiny_gan(discriminator_norm=norm, generator_width=32,
                                                              discriminator_width=32).state_dict())
    for network in (dcgan.generator, dcgan.discriminator):
        for layer in network.modules():
            if isinstance(layer, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)):
                weight = (layer.parametrizations.weight.original if norm == "spectral" and network is
                          dcgan.discriminator else layer.weight)
                assert abs(weight.std().item() - 0.02) < 0.004, layer
                assert layer.bias is None or not layer.bias.any()
            if isinstance(layer, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                assert abs(layer.weight.mean().item() - 1) < 0.02 and 0 < layer.weight.std() < 0.04
                assert not layer.bias.any()
    first = dcgan.discriminator.body.layers[0]
    if norm == "spectral":
        # the power iteration was redone for the new weight: the normalised weight has spectral norm 1
        first.eval()
        sigma = torch.linalg.matrix_norm(first.weight.detach().flatten(1), ord=2)
        assert abs(sigma.item() - 1) < 0.05
    assert (first.weight - default.discriminator.body.layers[0].weight).abs().max() > 0.01


def test_dcgan_weight_init_keeps_label_embeddings_as_strong_as_the_noise():
    torch.manual_seed(0)
    cgan = tiny_gan(conditional=True, discriminator_condition="both", discriminator_norm="batch", weight_init="dcgan")
    for embedding in (cgan.generator.embed, cgan.discriminator.label_map, cgan.discriminator.embed):
        assert 0.8 < embedding.weight.std().item() < 1.2  # N(0, 1), not DCGAN's N(0, 0.02)


@pytest.mark.parametrize("precision", ["32-true", "16-mixed"])
def test_clipping_sees_unscaled_gradients(mnist_dir, precision):
    # Under 16-mixed the loss is scaled by 2**16; clipping must happen after unscaling, so the norm that reaches
    # the optimizer is the clip value itself (clipping scaled gradients would leave ~clip / 65536).
    norms = []

    class Spy(GAN):  # records the gradient norm right after the module's own clipping hook
        def on_before_optimizer_step(self, optimizer):
            super().on_before_optimizer_step(optimizer)
            grads = [p.grad.float().norm() for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            norms.append(torch.linalg.vector_norm(torch.stack(grads)).item())

    model = Spy(image_shape=(1, 28, 28), num_classes=10, latent_dim=8, generator_width=8, discriminator_width=8,
                gradient_clip_val=0.01)
    # Lightning maps 16-mixed on CPU to bf16 (no scaler); the plugin given directly keeps fp16 with a GradScaler.
    amp = {"plugins": [MixedPrecision("16-mixed", "cpu")]} if precision == "16-mixed" else {}
    trainer = fit(model, mnist_dir, max_steps=6, **amp)
    assert (getattr(trainer.precision_plugin, "scaler", None) is not None) == (precision == "16-mixed")
    assert len(norms) == 6
    # every step clipped to 0.01 of *unscaled* gradient norm (a step whose scaled gradients overflowed is skipped
    # by the scaler after this hook, and its gradients are inf: allowed)
    assert all(0.005 < n <= 0.0101 or n != n or n == float("inf") for n in norms), norms
    assert sum(0.005 < n <= 0.0101 for n in norms) >= 4, norms


def test_minibatch_std_lets_the_discriminator_see_batch_variety():
    from lightning_models.networks.dcgan import Discriminator

    torch.manual_seed(0)
    x = torch.rand(8, 1, 28, 28)
    plain = Discriminator((1, 28, 28), 8).eval()  # eval: spectral norm stops its power iteration
    seeing = Discriminator((1, 28, 28), 8, minibatch_std=True).eval()
    same = x[:1].expand(8, -1, -1, -1)
    # the score of image 0 does not depend on its batch mates without the option, and does with it
    torch.testing.assert_close(plain(x)[0], plain(same)[0])
    assert not torch.allclose(seeing(x)[0], seeing(same)[0])


def test_diff_augment_shifts_by_whole_pixels_cuts_half_squares_and_passes_gradients():
    from lightning_models.augment import diff_augment

    images = torch.full((64, 1, 28, 28), -1.0)
    images[:, :, 14, 14] = 1.0  # one bright pixel in the middle of a black image
    shifted = diff_augment(images, ["translation"], torch.Generator().manual_seed(0))
    assert torch.equal((shifted == 1).sum(dim=(1, 2, 3)), torch.ones(64, dtype=torch.long))  # moved, not blurred
    where = (shifted[:, 0] == 1).nonzero()[:, 1:] - 14
    assert where.abs().max() == 3 and where.abs().min() == 0  # up to 28 // 8 pixels, several shifts drawn
    assert torch.equal(shifted[shifted != 1], torch.full(((64 * 28 * 28 - 64),), -1.0))  # background fills in
    ones = torch.ones(64, 1, 28, 28, requires_grad=True)
    cut = diff_augment(ones, ["cutout"], torch.Generator().manual_seed(0))
    assert torch.equal((cut == 0).sum(dim=(1, 2, 3)), torch.full((64,), 14 * 14))  # one 14x14 square per image
    assert len({tuple(c[0].nonzero()[0].tolist()) for c in (cut == 0)}) > 10  # at different places
    cut.sum().backward()
    assert torch.equal(ones.grad, (cut != 0).float())  # differentiable: kept pixels pass their gradient
    with pytest.raises(ValueError, match="--model.diff_augment.*'flip'"):
        tiny_gan(diff_augment=["translation", "flip"])


def test_diff_augment_is_what_the_discriminator_sees_and_resumes_exactly(mnist_dir, tmp_path):
    model = tiny_gan(conditional=True, diff_augment=["translation", "cutout"])
    seen = []
    model.discriminator.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    fit(model, mnist_dir, max_steps=2)
    real, fake, fake_for_g = seen
    assert ((real == 0).flatten(1).sum(1) >= 14 * 14).all()  # every image has its mid-grey cutout square
    assert ((fake == 0).flatten(1).sum(1) >= 14 * 14).all() and ((fake_for_g == 0).flatten(1).sum(1) >= 196).all()
    # the augmentation draws are a function of the step: an interrupted run resumes exactly
    def fresh():
        torch.manual_seed(0)  # the same initial weights
        return tiny_gan(conditional=True, diff_augment=["translation", "cutout"])

    assert_resume_matches_one_run(fresh, mnist_dir, tmp_path)


def test_auxiliary_classifier_learns_real_labels_and_trains_the_generator_on_them(mnist_dir):
    with pytest.raises(ValueError, match="class_weight needs --model.discriminator_condition projection"):
        tiny_gan(conditional=True, class_weight=1.0, discriminator_condition="concat")
    with pytest.raises(ValueError, match="needs a conditional GAN"):
        tiny_gan(class_weight=1.0, discriminator_condition="projection")
    torch.manual_seed(0)
    model = tiny_gan(conditional=True, class_weight=1.0, discriminator_condition="projection",
                     discriminator_norm="batch", lr_discriminator=1e-3)
    losses = []
    real_term = model.real_auxiliary_loss
    model.real_auxiliary_loss = lambda aux, labels: losses.append(real_term(aux, labels)) or losses[-1]
    trainer = fit(model, mnist_dir, max_steps=80)
    assert len(losses) == 40 and losses[0] > 2.0  # one per D step, from chance (ln 10 = 2.30)
    assert sum(losses[-5:]) / 5 < 0.5 * losses[0]  # the class head learned the real labels
    metrics = trainer.callback_metrics
    assert "train/loss_real_aux_d" in metrics and "train/loss_aux_g" in metrics
    assert "train/loss_aux_d" not in metrics  # the head never learns from fakes


def test_lr_decay_falls_linearly_to_zero_at_the_last_batch_and_a_resumed_chain_matches_one_run(mnist_dir, tmp_path):
    class Rates(pl.Callback):
        def __init__(self):
            self.seen = []

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            self.seen.append(optimizer.param_groups[0]["lr"])

    rates = Rates()
    model = tiny_gan(lr_generator=4e-3, lr_discriminator=2e-3, lr_decay_start=2, n_critic=2, loss="wgan_gp")
    fit(model, mnist_dir, max_steps=6 * 3, callbacks=[rates])  # 6 batches of D, D, G steps
    factors = [1, 1, 1, 0.75, 0.5, 0.25]
    expected = [r for f in factors for r in (2e-3 * f, 2e-3 * f, 4e-3 * f)]
    assert rates.seen == pytest.approx(expected)
    # benchmarks train a budget chain (max_steps 4, then 8 by resume): the first leg ends before the decay starts,
    # so the chain is the 8-step run
    def fresh():
        torch.manual_seed(0)
        return tiny_gan(lr_decay_start=2)

    assert_resume_matches_one_run(fresh, mnist_dir, tmp_path)
    with pytest.raises(ValueError, match="--model.lr_decay_start"):
        tiny_gan(lr_decay_start=-1)
    with pytest.raises(ValueError, match="--trainer.max_steps"):
        fit(tiny_gan(lr_decay_start=2), mnist_dir, max_steps=-1, max_epochs=1)
