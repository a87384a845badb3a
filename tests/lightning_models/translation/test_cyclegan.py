"""CycleGAN: loss wiring on hand-made networks, the history pool in the step, exact resume through the real CLI.
(DDP with its four networks: tests/test_matrix.py. The step order, schedule and translate contract shared with
pix2pix: translation/test_base.py.)"""

import glob
import os

import pytest
import torch
import torch.nn as nn

from lightning_models.translation.cyclegan import CycleGAN
from tests.helpers import CONFIGS, last_checkpoint, run_cli, state_of, tiny_args
from tests.helpers import one_thread  # noqa: F401 (autouse: one torch thread)
from tests.lightning_models.translation.fixtures import Shift, fit, tiny
from tests.test_training import assert_same_training_state, every_step_checkpoints

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
CONFIG = next(c for c in CONFIGS if os.path.basename(c) == "cyclegan_colored_mnist.yaml")


def batch_pair(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(2, 3, 28, 28, generator=gen) * 2 - 1, torch.rand(2, 3, 28, 28, generator=gen) * 2 - 1


def test_identity_generators_have_zero_cycle_and_identity_loss():
    model = tiny(CycleGAN)
    model.generator_ab = model.generator_ba = nn.Identity()
    real_a, real_b = batch_pair()
    terms = model.reconstruction_losses(real_a, real_b, fake_a=real_b, fake_b=real_a)
    assert set(terms) == {"cycle", "identity"}
    assert terms["cycle"] == 0 and terms["identity"] == 0


def test_cycle_and_identity_terms_on_shifting_generators():
    # G_AB(x) = x + 0.5, G_BA(x) = x - 0.25: every round trip is off by 0.25; G_BA moves an A image by 0.25
    # and G_AB a B image by 0.5.
    model = tiny(CycleGAN, cycle_weight=2.0, identity_weight=3.0)
    model.generator_ab, model.generator_ba = Shift(0.5), Shift(-0.25)
    real_a, real_b = batch_pair()
    terms = model.reconstruction_losses(real_a, real_b, model.generator_ba(real_b), model.generator_ab(real_a))
    torch.testing.assert_close(terms["cycle"], torch.tensor(2.0 * (0.25 + 0.25)))
    torch.testing.assert_close(terms["identity"], torch.tensor(3.0 * (0.25 + 0.5)))


def test_plain_translator_has_only_the_adversarial_term(mnist_dir):
    model = tiny(CycleGAN, cycle_weight=0.0, identity_weight=0.0)
    real_a, real_b = batch_pair()
    assert model.reconstruction_losses(real_a, real_b, real_b, real_a) == {}
    trainer = fit(model, mnist_dir, max_steps=2)
    assert "train/adversarial" in trainer.callback_metrics and "train/cycle" not in trainer.callback_metrics


def test_discriminators_see_fakes_through_the_pools(mnist_dir):
    model = tiny(CycleGAN, pool_size=12)
    seen = []
    judge = model.judge
    model.judge = lambda d, images, source: seen.append(images.detach().clone()) or judge(d, images, source)
    fit(model, mnist_dir, max_steps=4)  # 2 batches of 8: the 12-image pools fill and start swapping
    assert int(model.pool_a.count) == int(model.pool_b.count) == 12
    # per batch, the D step judges real_b, shown_b, real_a, shown_a; shown_b of batch 2 holds stored images
    shown_b2 = seen[6 + 1]
    stored = model.pool_b.images
    assert any(torch.equal(img, s) for img in shown_b2 for s in stored)
    with pytest.raises(ValueError, match="--model.cycle_weight"):
        tiny(CycleGAN, cycle_weight=-1.0)


def bars(colors: list[tuple[float, float, float]]) -> torch.Tensor:
    """Two 8x8 images in [-1, 1]: a vertical bar in colors[0], a horizontal bar in colors[1]."""
    gray = torch.zeros(2, 1, 8, 8)
    gray[0, 0, 1:7, 3:5] = 1.0
    gray[1, 0, 3:5, 1:7] = 0.8  # a dimmer stroke: the output keeps the stroke's own gray levels
    return gray * torch.tensor(colors)[:, :, None, None] * 2 - 1


def test_recolor_generator_keeps_the_stroke_and_ignores_the_input_color():
    torch.manual_seed(0)
    model = tiny(CycleGAN, generator="recolor", image_shape=(3, 8, 8))
    red, blue = bars([(1.0, 0.0, 0.0), (1.0, 0.0, 0.0)]), bars([(0.0, 0.0, 1.0), (0.0, 0.0, 1.0)])
    out_red, out_blue = model.generator_ab(red), model.generator_ab(blue)
    torch.testing.assert_close(out_red, out_blue, rtol=0, atol=0)  # the input's color is not seen
    torch.testing.assert_close(out_red.amax(1), red.amax(1))  # the stroke, gray levels and all, is kept
    color = (out_red + 1) / 2 / ((red.amax(1, keepdim=True) + 1) / 2).clamp_min(1e-6)
    on = red.amax(1) > 0
    for i in range(2):  # one color per image, over the whole stroke
        pixels = color[i].permute(1, 2, 0)[on[i]]
        torch.testing.assert_close(pixels, pixels[:1].expand_as(pixels))
    assert not torch.allclose(out_red[0][:, on[0]].mean(1), out_red[1][:, on[1]].mean(1), atol=1e-4)  # by shape


def test_recolor_cycle_term_alone_teaches_each_generator_its_domains_colors():
    # A: vertical bars orange, horizontal bars green; B: the other way round. Unpaired, no adversarial term: the
    # round trip A -> B -> A can only return A's colors if G_BA reads them from the shape (it never sees G_AB's
    # colors), and B -> A -> B teaches G_AB B's colors the same way, so A -> B swaps the colors. Orange has a
    # channel at 0.5, which the head must hit, not push to 0 or 1.
    torch.manual_seed(0)
    model = tiny(CycleGAN, generator="recolor", generator_width=8, image_shape=(3, 8, 8), cycle_weight=1.0,
                 identity_weight=0.0)
    orange, green = (1.0, 0.5, 0.0), (0.0, 1.0, 0.0)
    real_a, real_b = bars([orange, green]), bars([green, orange])
    generators = [*model.generator_ab.parameters(), *model.generator_ba.parameters()]
    opt = torch.optim.Adam(generators, lr=0.02)
    for _ in range(150):
        fake_b, fake_a = model.generator_ab(real_a), model.generator_ba(real_b)
        loss = model.reconstruction_losses(real_a, real_b, fake_a, fake_b)["cycle"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss < 0.01
    # within 0.025 of each color channel (0.05 in [-1, 1]); the nearest other color is 0.5 away
    torch.testing.assert_close(model.generator_ab(real_a), real_b, atol=0.05, rtol=0)
    torch.testing.assert_close(model.generator_ba(real_b), real_a, atol=0.05, rtol=0)


def test_recolor_warp_changes_only_the_training_color_choice():
    # generator_warp: in training, the color comes from a randomly warped copy of the stroke (a new warp per step,
    # drawn from the step-seeded global RNG); the output keeps the stroke itself, and eval mode sees no warp.
    torch.manual_seed(0)
    warped = tiny(CycleGAN, generator="recolor", image_shape=(3, 8, 8), generator_warp=1.0).generator_ab
    torch.manual_seed(0)
    plain = tiny(CycleGAN, generator="recolor", image_shape=(3, 8, 8)).generator_ab
    assert warped.state_dict().keys() == plain.state_dict().keys()  # checkpoints interchange
    for key, value in plain.state_dict().items():
        assert torch.equal(value, warped.state_dict()[key])
    red = bars([(1.0, 0.0, 0.0), (1.0, 0.0, 0.0)])
    outputs = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        outputs.append(warped(red))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)  # the same draw repeats the same warp
    assert not torch.allclose(outputs[0], outputs[2], atol=1e-4)  # another draw, another color choice
    for out in outputs:
        torch.testing.assert_close(out.amax(1), red.amax(1))  # the stroke is never warped
    plain.train(), warped.train()
    assert not torch.allclose(warped(red), plain(red), atol=1e-4)
    plain.eval(), warped.eval()
    torch.testing.assert_close(warped(red), plain(red), rtol=0, atol=0)
    for kind in ("recolor", "resnet"):  # a bad value is an error whichever generator ignores it
        with pytest.raises(ValueError, match="--model.generator_warp must be >= 0"):
            tiny(CycleGAN, generator=kind, generator_warp=-0.5)
    resnet = tiny(CycleGAN, generator="resnet", generator_warp=1.0).generator_ab  # ignored, like generator_blocks
    torch.manual_seed(1)
    first = resnet(red)
    torch.manual_seed(2)
    torch.testing.assert_close(resnet(red), first, rtol=0, atol=0)


def test_shared_generator_features_are_one_set_of_weights(recwarn):
    # share_generator_features: G_AB and G_BA read the stroke with the same convolutions, each with its own head;
    # the generators' optimizer holds each shared weight once, and a checkpoint restores the sharing.
    model = tiny(CycleGAN, generator="recolor", image_shape=(3, 8, 8), share_generator_features=True)
    ab, ba = model.generator_ab.color, model.generator_ba.color
    convs = [i for i, m in enumerate(ab) if isinstance(m, nn.Conv2d)]
    assert convs and all(ab[i] is ba[i] for i in convs)
    heads = [i for i, m in enumerate(ab) if isinstance(m, nn.Linear)]
    assert len(heads) == 2 and not any(ab[i] is ba[i] for i in heads)
    (opt_g, _), _ = model.configure_optimizers()
    listed = [p for group in opt_g.param_groups for p in group["params"]]
    assert len(listed) == len({id(p) for p in listed}) == len({id(p) for p in model.generator_ab.parameters()}
                                                            | {id(p) for p in model.generator_ba.parameters()})
    assert not [w for w in recwarn if "duplicate parameters" in str(w.message)]
    with torch.no_grad():
        ab[convs[0]].weight.add_(1.0)
    again = tiny(CycleGAN, generator="recolor", image_shape=(3, 8, 8), share_generator_features=True)
    again.load_state_dict(model.state_dict())
    assert again.generator_ba.color[convs[0]] is again.generator_ab.color[convs[0]]
    assert torch.equal(again.generator_ba.color[convs[0]].weight, ab[convs[0]].weight)
    separate = tiny(CycleGAN, generator="recolor", image_shape=(3, 8, 8))
    assert separate.generator_ab.color[convs[0]] is not separate.generator_ba.color[convs[0]]
    resnet = tiny(CycleGAN, generator="resnet", share_generator_features=True)  # ignored by the other generators
    assert not {id(p) for p in resnet.generator_ab.parameters()} & {id(p) for p in resnet.generator_ba.parameters()}


@pytest.mark.parametrize("interruption", ["mid_epoch_checkpoint", "saved_after_an_epochs_last_batch",
                                          "stopped_at_epoch_end"])
def test_resume_reproduces_uninterrupted_run(interruption, mnist_dir, tmp_path):
    # Unpaired fixture: 28 images per domain / batch 8 = 3 batches (6 steps) per epoch. The learning rate decays
    # from epoch 1 and the pools (buffers in the state dict) fill and swap, so resume must restore both.
    # Lightning replays resumed epochs' hooks differently for each kind of checkpoint: an interval save after
    # the last batch of epoch 1 (step 12, before that epoch's end hooks) and the final save of a run that
    # max_steps stopped at the end of epoch 1 (after them).
    common = ["--config", every_step_checkpoints(tmp_path, 2), "--trainer.deterministic", "true",
              "--model.decay_start_epoch", "1", "--model.decay_epochs", "3"]
    full, resumed = str(tmp_path / "full"), str(tmp_path / "resumed")
    run_cli("fit", tiny_args(CONFIG, mnist_dir, full, *common, "--trainer.max_steps", "20"))
    if interruption == "stopped_at_epoch_end":  # resumed from last.ckpt
        run_cli("fit", tiny_args(CONFIG, mnist_dir, resumed, *common[2:], "--trainer.max_steps", "12"))
        start = last_checkpoint(resumed)
    else:
        step = 10 if interruption == "mid_epoch_checkpoint" else 12
        (start,) = glob.glob(os.path.join(full, "*", "checkpoints", f"epoch=1-step={step}.ckpt"))
    run_cli("fit", tiny_args(CONFIG, mnist_dir, resumed, *common, "--trainer.max_steps", "20", "--ckpt_path", start))
    a, b = state_of(last_checkpoint(full)), state_of(last_checkpoint(resumed))
    assert_same_training_state(a, b)
    assert a["lr_schedulers"] == b["lr_schedulers"] and a["lr_schedulers"][0]["last_epoch"] == 3
    assert int(a["state_dict"]["pool_a.count"]) == 4  # (the tiny config's pool size)
