"""Paths between pairs of vectors: linear, and spherical (slerp, Shoemake 1985; White 2016 for GAN latents)."""

from __future__ import annotations

import torch
from torch import Tensor

KINDS = ("linear", "slerp")


def interpolate(a: Tensor, b: Tensor, steps: int, kind: str = "linear") -> Tensor:
    """Points (P, steps, D) from a (P, D) to b (P, D), endpoints included.

    `slerp` follows the great circle between the two directions, scaling the norm along with it, which keeps
    Gaussian noise at a typical norm (a straight line through N(0, I) passes near the origin, where no training
    sample was); nearly parallel pairs fall back to the straight line.
    """
    if kind not in KINDS:
        raise ValueError(f"interpolation kind must be one of {KINDS}, got {kind!r}")
    if steps < 2:
        raise ValueError(f"an interpolation needs steps >= 2, got {steps}")
    t = torch.linspace(0, 1, steps, device=a.device, dtype=a.dtype)[None, :, None]  # (1, S, 1)
    a, b = a[:, None], b[:, None]  # (P, 1, D)
    if kind == "linear":
        return a + (b - a) * t
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1).clamp(-1, 1)[..., None]  # (P, 1, 1)
    omega = torch.acos(cos)
    sin = torch.sin(omega)
    parallel = sin.abs() < 1e-4
    safe = torch.where(parallel, torch.ones_like(sin), sin)
    spherical = (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / safe
    return torch.where(parallel, a + (b - a) * t, spherical)
