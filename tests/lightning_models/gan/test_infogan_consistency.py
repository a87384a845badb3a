"""InfoGAN's consistency term (`consistency_weight`): the IIC loss of Q's categories on real images and warped
copies, which step computes it, what it trains, and that it is off by default."""

import pytest
import torch

from lightning_models.augment import random_affine
from lightning_models.losses import invariant_information_loss
from tests.lightning_models.gan.test_gan import fit
from tests.lightning_models.gan.test_infogan import tiny_infogan

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def grads(module):
    return [p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters()]


def freeze_all_but(model, optimizer):
    """What toggled_optimizer does for a step: only `optimizer`'s parameters stay trainable."""
    model.requires_grad_(False)
    for group in optimizer.param_groups:
        for p in group["params"]:
            p.requires_grad_(True)


def real_batch(n=8):
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_the_term_is_the_weighted_iic_loss_of_each_categorical_code_on_real_and_warped():
    model = tiny_infogan(consistency_weight=0.5, consistency_warp=(10.0, 0.1, 0.05))
    model.eval()  # batch statistics aside, so the expected value can be recomputed with the same pass
    real = real_batch()
    term = model.real_loss(real, None)
    warped = random_affine(real, model.noise_generator(model.hparams.seed, "warp"), 10.0, 0.1, 0.05, -1.0)
    logits = model.discriminator.with_codes(torch.cat([real, warped]))[1][0]
    expected = sum(invariant_information_loss(*code.softmax(1).chunk(2)) for code in logits)  # codes (3,) and (4,)
    torch.testing.assert_close(term, 0.5 * expected)


@pytest.mark.parametrize("q_optimizer", ["discriminator", "generator"])
@pytest.mark.parametrize("trains_body", [False, True])
def test_computed_in_the_step_that_trains_q_and_trains_only_what_it_should(q_optimizer, trains_body):
    model = tiny_infogan(consistency_weight=1.0, q_optimizer=q_optimizer, info_trains_body=trains_body)
    opt_g, opt_d = model.configure_optimizers()
    d = model.discriminator
    q_step, other_step = (opt_d, opt_g) if q_optimizer == "discriminator" else (opt_g, opt_d)
    freeze_all_but(model, other_step)
    assert model.real_loss(real_batch(), None) is None  # Q frozen in this step: nothing to train
    freeze_all_but(model, q_step)
    model.real_loss(real_batch(), None).backward()
    assert all(grads(d.q_head))
    body_trained = any(grads(d.body))
    assert body_trained == (trains_body and q_optimizer == "discriminator")  # the body, only where it trains
    assert not any(grads(d.head)) and not any(grads(model.generator))  # real images: no path to G


def test_off_by_default_and_checks_its_options():
    assert tiny_infogan().real_loss(real_batch(), None) is None
    for bad in (dict(consistency_weight=-1.0), dict(consistency_warp=(10.0, 1.0, 0.1)),
                dict(consistency_warp=(10.0, 0.1)), dict(consistency_weight=1.0, categorical_codes=())):
        with pytest.raises(ValueError, match="--model.consistency"):
            tiny_infogan(**bad)


def test_training_logs_the_term_in_the_q_step_and_keeps_the_latent_noise(mnist_dir):
    """Under Trainer.fit (q_optimizer generator, the MNIST config's): the term is logged for the generator step
    only, and drawing the warps leaves the step's latents (and so the fakes) as without the term."""
    latents = {}
    for weight in (0.0, 1.0):
        model = tiny_infogan(consistency_weight=weight, q_optimizer="generator", info_trains_body=False)
        draw, seen = model.draw_latent, []
        model.draw_latent = lambda n, rng, draw=draw, seen=seen: seen.append(draw(n, rng)) or seen[-1]
        trainer = fit(model, mnist_dir, max_steps=4)  # 2 batches
        latents[weight] = torch.cat(seen)
        assert ("train/loss_real_g" in trainer.callback_metrics) == bool(weight)
        assert "train/loss_real_d" not in trainer.callback_metrics
    torch.testing.assert_close(latents[0.0], latents[1.0])


def test_without_the_information_term_it_is_iic_alone_on_the_discriminator_features():
    """`info_weight: 0` with the term on: the ablation "IIC alone". The Q head learns from real images in its step;
    the generator step has no information term (nothing reaches G from the codes)."""
    model = tiny_infogan(consistency_weight=1.0, info_weight=0, q_optimizer="generator", info_trains_body=False)
    opt_g, opt_d = model.configure_optimizers()
    freeze_all_but(model, opt_d)
    assert model.real_loss(real_batch(), None) is None  # the D step does not hold Q
    freeze_all_but(model, opt_g)
    model.real_loss(real_batch(), None).backward()
    assert all(grads(model.discriminator.q_head)) and not any(grads(model.discriminator.body))
    latent = model.draw_latent(4, torch.Generator().manual_seed(0))
    _, aux = model.discriminate(model.generator(latent), None)
    assert aux is None and model.auxiliary_loss(aux, latent, None) is None  # no code term for G
