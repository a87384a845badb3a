"""Latent math of the VAE family as small pure functions: reparameterised sampling, KL terms, the Gumbel-softmax
relaxation and its temperature schedule, and the JointVAE capacity schedule (Dupont 2018).

Every function takes its noise from an optional `torch.Generator`, so a training step that passes the module's
`noise_generator` draws the same noise when resumed. Each is tested against a closed form in
tests/lightning_models/vae/test_latents.py.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def reparameterize(mean: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """z = mean + exp(logvar / 2) * eps with eps ~ N(0, I): a sample of N(mean, diag(exp(logvar))) that is
    differentiable in `mean` and `logvar`."""
    eps = torch.randn(mean.shape, device=mean.device, dtype=mean.dtype, generator=generator)
    return mean + torch.exp(0.5 * logvar) * eps


def kl_normal_standard(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, diag(exp(logvar))) || N(0, I)) per row (B, D) -> (B,), in nats:
    0.5 * sum(mean^2 + exp(logvar) - 1 - logvar)."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)


def kl_categorical_uniform(logits: Tensor) -> Tensor:
    """KL(Cat(softmax(logits)) || uniform over the K categories) per row (B, K) -> (B,), in nats:
    sum_k q_k log q_k + log K. It is 0 for a uniform posterior and log K for a one-hot one."""
    log_q = F.log_softmax(logits, dim=-1)
    return (log_q.exp() * log_q).sum(-1) + math.log(logits.shape[-1])


def sample_gumbel(shape: Sequence[int], like: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Standard Gumbel noise -log(-log U), U ~ Uniform(0, 1), on `like`'s device and dtype."""
    u = torch.rand(tuple(shape), device=like.device, dtype=like.dtype, generator=generator)
    tiny = torch.finfo(like.dtype).tiny  # keeps both logs finite when U is exactly 0 or 1 - eps
    return -torch.log((-torch.log(u.clamp_min(tiny))).clamp_min(tiny))


def gumbel_softmax(logits: Tensor, temperature: float, hard: bool = False,
                   generator: torch.Generator | None = None) -> Tensor:
    """A relaxed one-hot sample (B, K) of Cat(softmax(logits)) (Jang et al. 2017; Maddison et al. 2017):
    softmax((logits + g) / temperature) with Gumbel noise g. As temperature -> 0 it tends to the one-hot
    argmax(logits + g), which is an exact categorical sample (the Gumbel-max trick).

    `hard=True` returns that exact one-hot vector in the forward pass with the relaxed sample's gradient
    (straight-through), so the decoder only ever sees true categories.

    Unlike `torch.nn.functional.gumbel_softmax`, this takes a `generator`, so the noise is reproducible.
    """
    if temperature <= 0:
        raise ValueError(f"Gumbel-softmax temperature must be > 0, got {temperature}")
    scores = logits + sample_gumbel(logits.shape, logits, generator)
    soft = F.softmax(scores / temperature, dim=-1)
    if not hard:
        return soft
    one_hot = F.one_hot(scores.argmax(-1), logits.shape[-1]).to(soft.dtype)
    return one_hot - soft.detach() + soft


def sample_categorical(logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """An exact one-hot sample (B, K) of Cat(softmax(logits)) by the Gumbel-max trick (no gradient)."""
    scores = logits + sample_gumbel(logits.shape, logits, generator)
    return F.one_hot(scores.argmax(-1), logits.shape[-1]).to(logits.dtype)


def annealed_temperature(step: int, start: float, end: float, anneal_steps: int) -> float:
    """Gumbel-softmax temperature at `step`: geometric from `start` (step 0) to `end` (step `anneal_steps`),
    then constant: start * (end / start) ** min(step / anneal_steps, 1). A geometric schedule is the
    exponential decay of Jang et al. (tau = max(end, start * exp(-r t))) with the rate fixed by its end point."""
    if start <= 0 or end <= 0:
        raise ValueError(f"temperatures must be > 0, got start={start}, end={end}")
    progress = 1.0 if anneal_steps <= 0 else min(max(step, 0) / anneal_steps, 1.0)
    return start * (end / start) ** progress


def linear_capacity(step: int, max_capacity: float, increase_steps: int) -> float:
    """JointVAE capacity C(step) in nats: rises linearly from 0 to `max_capacity` over `increase_steps`, then
    stays there: max_capacity * min(step / increase_steps, 1)."""
    if increase_steps <= 0:
        return max_capacity
    return max_capacity * min(max(step, 0) / increase_steps, 1.0)


def max_categorical_capacity(categorical_dims: Sequence[int]) -> float:
    """The largest KL that categorical variables of these sizes can have to the uniform prior:
    sum_i log K_i (reached by one-hot posteriors). A categorical capacity above this cannot be met."""
    return float(sum(math.log(k) for k in categorical_dims))


def capacity_penalty(kl: Tensor, capacity: float, gamma: float) -> Tensor:
    """gamma * |kl - capacity|: pushes the KL towards the capacity, from below as well as from above."""
    return gamma * (kl - capacity).abs()
