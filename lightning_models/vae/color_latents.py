"""Where each color lives in a VAE's latent space, and sampling from there: the color control of `VAE.sample`.

Per color c, from the posteriors of training images of that color: a Gaussian N(mu_c, Sigma_c) of the continuous
posterior means and, per categorical variable, the mean posterior probabilities p(k | c). Together they form a
naive-Bayes model p(code | c). A code for color c is drawn from p(code | c) and kept only if that model also
attributes it to c (c maximises p(code | c') over colors c', i.e. the code is in c's decision region): the first
of `candidates` draws that is, else the one closest to being. This is rejection sampling from p(code | c)
restricted to c's region, and it removes the draws that land where colors overlap, or that combine categories
of different colors (the variables are sampled independently).

A color's continuous codes need not be one Gaussian: over the digits' shapes they form several clusters, and the
single Gaussian's mass between them decodes to off colors. With `bank_size` N > 0 the last N posterior means of
each color are also kept, and the continuous part is drawn from their Gaussian kernel density estimate instead: a
stored mean plus noise from the color's covariance scaled by Scott's factor N^(-2/(D+4)) (as
`scipy.stats.gaussian_kde`). The categorical part and the region test are the same in both modes.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


class ColorLatents(nn.Module):
    """Sufficient statistics of the posterior per color, as buffers (so checkpoints carry them), and sampling.

    Args:
        num_colors: color ids are 0..num_colors-1.
        continuous_dim: size of the Gaussian part of the code.
        categorical_dims: categories of each categorical variable (one-hot blocks after the Gaussian part).
        bank_size: posterior means kept per color for the kernel density estimate of the continuous part
            (0 = draw it from the color's Gaussian; no effect without a continuous part).
    """

    def __init__(self, num_colors: int, continuous_dim: int, categorical_dims: Sequence[int],
                 bank_size: int = 0) -> None:
        super().__init__()
        if bank_size < 0:
            raise ValueError(f"the color bank size must be >= 0 (0 = no bank), got {bank_size}")
        self.num_colors, self.continuous_dim = num_colors, continuous_dim
        self.categorical_dims = [int(k) for k in categorical_dims]
        k, d = num_colors, continuous_dim
        # (decayed) sums per color: weight, posterior means, their outer products, categorical probabilities
        self.register_buffer("count", torch.zeros(k))
        self.register_buffer("mean_sum", torch.zeros(k, d))
        self.register_buffer("outer_sum", torch.zeros(k, d, d))
        self.register_buffer("probs_sum", torch.zeros(k, sum(self.categorical_dims)))
        self.bank_size = bank_size if d > 0 else 0
        if self.bank_size:  # ring buffer per color of the last bank_size posterior means, and how many were added
            self.register_buffer("bank", torch.zeros(k, self.bank_size, d))
            self.register_buffer("bank_added", torch.zeros(k, dtype=torch.long))

    @torch.no_grad()
    def update(self, mean: Tensor, probs: Tensor, colors: Tensor, decay: float = 1.0) -> None:
        """Decays the sums by `decay`, then adds a batch: posterior means (B, D), categorical probabilities
        (B, sum K_i) and color ids (B,). decay=1 accumulates exactly (after `reset`). With a bank, the means
        also replace the oldest stored ones of their color."""
        one_hot = F.one_hot(colors.long(), self.num_colors).to(self.count)  # (B, K)
        mean, probs = mean.to(self.count), probs.to(self.count)
        self.count.mul_(decay).add_(one_hot.sum(0))
        self.mean_sum.mul_(decay).add_(one_hot.T @ mean)
        self.outer_sum.mul_(decay).add_(torch.einsum("bk,bi,bj->kij", one_hot, mean, mean))
        self.probs_sum.mul_(decay).add_(one_hot.T @ probs)
        if self.bank_size:
            colors = colors.long().to(self.bank_added.device)
            order = one_hot.cumsum(0).gather(1, colors[:, None]).squeeze(1).long() - 1  # rank within its color
            slot = (self.bank_added[colors] + order) % self.bank_size
            per_color = one_hot.sum(0).long()
            keep = order >= per_color[colors] - self.bank_size  # a batch with more than N of a color: its last N
            self.bank[colors[keep], slot[keep]] = mean[keep]
            self.bank_added.add_(per_color)

    def reset(self) -> None:
        for buffer in self.buffers():
            buffer.zero_()

    def distributions(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Per color: Gaussian mean (K, D), covariance eigenvectors (K, D, D) and eigenvalues (K, D), and the
        categorical probabilities (K, sum K_i). Colors without statistics yet get the prior N(0, I), uniform."""
        dev, d = self.count.device, self.continuous_dim
        weight = self.count.clamp_min(1e-8)
        seen = self.count > d + 1  # enough images for a covariance
        mean = self.mean_sum / weight[:, None]
        cov = self.outer_sum / weight[:, None, None] - mean[:, :, None] * mean[:, None, :]
        mean = torch.where(seen[:, None], mean, 0.0)
        cov = torch.where(seen[:, None, None], (cov + cov.mT) / 2, torch.eye(d, device=dev))
        values, vectors = torch.linalg.eigh(cov)  # not cholesky: rounding can leave cov barely non-PD
        probs = self.probs_sum / weight[:, None]
        uniform = torch.cat([torch.full((k,), 1.0 / k, device=dev) for k in self.categorical_dims] or [probs[0]])
        probs = torch.where((self.count > 0)[:, None], probs, uniform)
        return mean, vectors, values.clamp_min(1e-6), probs

    def kernel_centers(self, wanted: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """For color ids (n,): a uniformly drawn stored posterior mean of each color (n, D), and the kernel's scale
        (n,), Scott's factor N^(-1/(D+4)) of the N means stored. Colors without stored means get (0, 1)."""
        stored = self.bank_added.clamp_max(self.bank_size)[wanted]  # (n,)
        pick = (torch.rand(len(wanted), device=wanted.device, generator=generator) * stored).long()
        pick = torch.minimum(pick, (stored - 1).clamp_min(0))
        centers = torch.where((stored > 0)[:, None], self.bank[wanted, pick], 0.0)
        scale = stored.clamp_min(1).float().pow(-1.0 / (self.continuous_dim + 4))
        return centers, torch.where(stored > 0, scale, 1.0)

    def log_likelihood(self, codes: Tensor) -> Tensor:
        """log p(code | c) (N, K) under each color's model, for codes (N, D + sum K_i) with one-hot blocks."""
        mean, vectors, values, probs = self.distributions()
        d = self.continuous_dim
        diff = codes[:, None, :d] - mean[None]  # (N, K, D)
        whitened = torch.einsum("nkd,kde->nke", diff, vectors) / values.sqrt()
        gaussian = -0.5 * (whitened.pow(2).sum(-1) + values.log().sum(-1) + d * math.log(2 * math.pi))
        categorical = codes[:, d:] @ probs.clamp_min(1e-6).log().T  # sum over variables of log p(k_v | c)
        return gaussian + categorical

    def sample(self, colors: Tensor, generator: torch.Generator | None = None, candidates: int = 16,
               temperature: float = 1.0) -> Tensor:
        """Codes (n, D + sum K_i) for color ids (n,), drawn from each color's model and restricted to its decision
        region with up to `candidates` draws each (1 = plain draws from p(code | c)).

        `temperature` T < 1 draws more typical codes (as Glow's temperature or BigGAN's truncation): the
        Gaussian's covariance is scaled by T and categorical probabilities are raised to 1/T (T -> 0: each color's
        mean and its most likely categories). Fewer off-color samples, less variety. With a bank, T scales the
        kernel's covariance (T -> 0: stored posterior means).
        """
        if temperature <= 0:
            raise ValueError(f"color sampling temperature must be > 0, got {temperature}")
        n, m, d = len(colors), max(candidates, 1), self.continuous_dim
        mean, vectors, values, probs = self.distributions()
        wanted = colors.long().repeat_interleave(m)  # (n * m,): m candidates per requested color
        eps = torch.randn(n * m, d, device=self.count.device, generator=generator)
        scale = (values[wanted] * temperature).sqrt()  # (n * m, D): standard deviations along the eigenvectors
        centers = mean[wanted]
        if self.bank_size:  # kernel density estimate: a stored mean, the covariance scaled by Scott's factor
            centers, factor = self.kernel_centers(wanted, generator)
            scale = scale * factor[:, None]
        parts = [centers + torch.einsum("nde,ne->nd", vectors[wanted], eps * scale)]
        for block in probs[wanted].split(self.categorical_dims, 1):
            block = F.softmax(block.clamp_min(1e-12).log() / temperature, 1)  # p ** (1/T), renormalised
            picked = (torch.multinomial(block, 1, generator=generator).squeeze(1) if n else
                      torch.zeros(0, dtype=torch.long, device=block.device))
            parts.append(F.one_hot(picked, block.shape[1]).to(block))
        codes = torch.cat(parts, 1)
        if m == 1 or n == 0:
            return codes
        scores = self.log_likelihood(codes)  # (n * m, K)
        margin = (scores.gather(1, wanted[:, None]).squeeze(1) - scores.max(1).values).view(n, m)  # 0: in region
        inside = margin >= 0
        choice = torch.where(inside.any(1), inside.float().argmax(1), margin.argmax(1))  # first inside, else best
        return codes.view(n, m, -1)[torch.arange(n, device=codes.device), choice]
