"""Latent math of the VAE family against closed forms: KL terms, reparameterisation, Gumbel-softmax sampling,
temperature and capacity schedules."""

import math

import pytest
import torch
from torch.distributions import Categorical, Normal, kl_divergence

from lightning_models.vae import latents as L


def test_kl_normal_standard_matches_torch_distributions():
    gen = torch.Generator().manual_seed(0)
    mean, logvar = torch.randn(6, 4, generator=gen), torch.randn(6, 4, generator=gen)
    expected = kl_divergence(Normal(mean, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(L.kl_normal_standard(mean, logvar), expected)
    assert L.kl_normal_standard(torch.zeros(2, 3), torch.zeros(2, 3)).abs().max() == 0  # the prior itself
    assert L.kl_normal_standard(torch.zeros(2, 0), torch.zeros(2, 0)).tolist() == [0.0, 0.0]  # no dims


def test_kl_categorical_uniform_matches_torch_distributions_and_its_bounds():
    logits = torch.randn(5, 7, generator=torch.Generator().manual_seed(1))
    expected = kl_divergence(Categorical(logits=logits), Categorical(probs=torch.full((7,), 1 / 7)))
    torch.testing.assert_close(L.kl_categorical_uniform(logits), expected)
    assert L.kl_categorical_uniform(torch.zeros(3, 20)).abs().max() < 1e-6  # uniform posterior: 0
    one_hot = torch.tensor([[0.0, 0.0, 100.0]])
    torch.testing.assert_close(L.kl_categorical_uniform(one_hot), torch.tensor([math.log(3)]))  # one-hot: log K


def test_reparameterize_statistics_gradients_and_repeatability():
    mean, logvar = torch.tensor([[1.0, -2.0]]).repeat(40_000, 1), torch.tensor([[0.0, math.log(0.25)]]).repeat(40_000, 1)
    mean.requires_grad_(True)
    z = L.reparameterize(mean, logvar, torch.Generator().manual_seed(0))
    torch.testing.assert_close(z.mean(0), torch.tensor([1.0, -2.0]), atol=0.02, rtol=0)
    torch.testing.assert_close(z.std(0), torch.tensor([1.0, 0.5]), atol=0.02, rtol=0)
    z.sum().backward()
    assert torch.equal(mean.grad, torch.ones_like(mean))  # dz/dmean = 1
    again = L.reparameterize(mean, logvar, torch.Generator().manual_seed(0))
    assert torch.equal(z, again)


def test_gumbel_softmax_argmax_frequencies_match_softmax_probabilities():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log().repeat(50_000, 1) + 3.0  # a shift changes nothing
    sample = L.gumbel_softmax(logits, temperature=0.7, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(sample.sum(1), torch.ones(len(sample)))  # on the simplex
    frequencies = torch.bincount(sample.argmax(1), minlength=4).float() / len(sample)
    torch.testing.assert_close(frequencies, probs, atol=0.01, rtol=0)  # Gumbel-max: argmax ~ Cat(probs)
    exact = L.sample_categorical(logits, torch.Generator().manual_seed(1))
    assert set(exact.unique().tolist()) == {0.0, 1.0} and torch.equal(exact.sum(1), torch.ones(len(exact)))
    torch.testing.assert_close(exact.mean(0), probs, atol=0.01, rtol=0)


def test_gumbel_softmax_low_temperature_is_one_hot_and_high_is_flat():
    logits = torch.randn(100, 6, generator=torch.Generator().manual_seed(2))
    cold = L.gumbel_softmax(logits, 1e-6, generator=torch.Generator().manual_seed(3))
    one_hot_of_same_noise = L.sample_categorical(logits, torch.Generator().manual_seed(3))
    torch.testing.assert_close(cold, one_hot_of_same_noise, atol=1e-4, rtol=0)
    hot = L.gumbel_softmax(logits, 1e3, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(hot, torch.full_like(hot, 1 / 6), atol=0.01, rtol=0)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        L.gumbel_softmax(logits, 0.0)


def test_hard_gumbel_softmax_is_one_hot_with_the_relaxed_gradient():
    logits = torch.randn(8, 5, generator=torch.Generator().manual_seed(4), requires_grad=True)
    weights = torch.randn(5, generator=torch.Generator().manual_seed(5))
    hard = L.gumbel_softmax(logits, 0.5, hard=True, generator=torch.Generator().manual_seed(6))
    assert set(hard.detach().unique().tolist()) == {0.0, 1.0} and torch.equal(hard.detach().sum(1), torch.ones(8))
    (hard * weights).sum().backward()
    hard_grad = logits.grad.clone()
    logits.grad = None
    soft = L.gumbel_softmax(logits, 0.5, hard=False, generator=torch.Generator().manual_seed(6))
    assert torch.equal(hard.detach().argmax(1), soft.detach().argmax(1))  # same noise, same category
    (soft * weights).sum().backward()
    torch.testing.assert_close(hard_grad, logits.grad)  # straight-through: the relaxed sample's gradient


def test_annealed_temperature_is_geometric_then_constant():
    assert L.annealed_temperature(0, 1.0, 0.25, 100) == 1.0
    assert L.annealed_temperature(50, 1.0, 0.25, 100) == pytest.approx(0.5)  # geometric mean halfway
    assert L.annealed_temperature(100, 1.0, 0.25, 100) == pytest.approx(0.25)
    assert L.annealed_temperature(10_000, 1.0, 0.25, 100) == pytest.approx(0.25)
    assert L.annealed_temperature(5, 2.0, 0.5, 0) == 0.5  # no schedule: the end value
    with pytest.raises(ValueError, match="temperatures must be > 0"):
        L.annealed_temperature(0, 1.0, 0.0, 10)


def test_capacity_schedule_and_penalty():
    assert [L.linear_capacity(s, 5.0, 100) for s in (0, 25, 100, 500)] == [0.0, 1.25, 5.0, 5.0]
    assert L.linear_capacity(3, 5.0, 0) == 5.0
    assert L.max_categorical_capacity([20, 20, 20]) == pytest.approx(3 * math.log(20))
    assert L.max_categorical_capacity([]) == 0.0
    kl = torch.tensor(3.0)
    assert L.capacity_penalty(kl, 5.0, 30.0).item() == pytest.approx(60.0)  # below the capacity: pushed up
    assert L.capacity_penalty(kl, 1.0, 30.0).item() == pytest.approx(60.0)  # above: pushed down
