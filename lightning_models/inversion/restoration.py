"""Restoration with a pretrained generator: masks, corruptions and the latent-optimisation inverter.

Convention for masks: float (B or 1, 1, H, W), 1 where a pixel is observed, 0 in the hole to fill. A user mask
image follows it too: white (> 0.5) = known, black = hole.

`optimize_latent` finds, for each target image, the z whose generator output fits it: Adam on z, all restarts of
all images as one batch (no per-image loop), a data term (L2 or L1, over the observed pixels only when there is
a mask) plus a penalty keeping z where the generator was trained. `optimize_restarts` returns every restart's
result; `optimize_latent` keeps the best restart per image; `combine_restarts` turns the restarts' images into one
image per target: the best one, or their (loss-weighted) mean.
"""

from __future__ import annotations

import math
import os
from typing import Callable, Literal

import torch
from torch import Tensor

Corruption = Literal["reconstruct", "denoise", "inpaint"]
MaskKind = Literal["center", "blocks", "file"]
Prior = Literal["norm", "gaussian"]
Combine = Literal["best", "mean"]


# --- masks -------------------------------------------------------------------------------------------------------
def center_mask(image_shape: tuple[int, int, int], hole_size: int, device: torch.device | str = "cpu") -> Tensor:
    """(1, 1, H, W): 0 in a centred `hole_size` x `hole_size` square, 1 elsewhere."""
    _, height, width = image_shape
    if not 0 < hole_size <= min(height, width):
        raise ValueError(f"--model.hole_size must be in [1, {min(height, width)}] for {height}x{width} images, "
                         f"got {hole_size}")
    mask = torch.ones(1, 1, height, width, device=device)
    top, left = (height - hole_size) // 2, (width - hole_size) // 2
    mask[..., top : top + hole_size, left : left + hole_size] = 0
    return mask


def random_block_mask(n: int, image_shape: tuple[int, int, int], num_blocks: int, block_size: int,
                      generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> Tensor:
    """(n, 1, H, W): 0 inside `num_blocks` random `block_size` squares per image (they may overlap), 1 elsewhere.
    Vectorised: a pixel is in a block when both its row and its column fall in that block's span."""
    _, height, width = image_shape
    if not 0 < block_size <= min(height, width) or num_blocks < 1:
        raise ValueError(f"--model.block_size must be in [1, {min(height, width)}] and --model.num_blocks >= 1, "
                         f"got {block_size} and {num_blocks}")
    tops = torch.randint(0, height - block_size + 1, (n, num_blocks, 1), generator=generator, device=device)
    lefts = torch.randint(0, width - block_size + 1, (n, num_blocks, 1), generator=generator, device=device)
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    in_rows = (rows >= tops) & (rows < tops + block_size)  # (n, blocks, H)
    in_cols = (cols >= lefts) & (cols < lefts + block_size)  # (n, blocks, W)
    hole = (in_rows[..., :, None] & in_cols[..., None, :]).any(1)  # (n, H, W)
    return (~hole).float()[:, None]


def load_mask(path: str, image_shape: tuple[int, int, int]) -> Tensor:
    """(1, 1, H, W) from a mask image file (white = known, black = hole); it must have the images' size."""
    from PIL import Image

    if not os.path.isfile(path):
        raise FileNotFoundError(f"--model.mask_path {path!r}: no such file. Pass an image of the data's size "
                                f"({image_shape[1]}x{image_shape[2]}), white where pixels are known, black in the hole")
    with Image.open(path) as image:
        gray = torch.frombuffer(bytearray(image.convert("L").tobytes()), dtype=torch.uint8)
        width, height = image.size
    if (height, width) != tuple(image_shape[1:]):
        raise ValueError(f"--model.mask_path {path!r} is {height}x{width} (HxW) but the images are "
                         f"{image_shape[1]}x{image_shape[2]}: make a mask of that size (white = known, black = hole)")
    mask = (gray.view(1, 1, height, width).float() / 255 > 0.5).float()
    if mask.sum() == mask.numel():
        raise ValueError(f"--model.mask_path {path!r} has no hole (no pixel <= 0.5): black marks the pixels to fill")
    return mask


# --- corruptions -------------------------------------------------------------------------------------------------
def corrupt(images: Tensor, task: Corruption, sigma: float = 0.0, mask: Tensor | None = None,
            generator: torch.Generator | None = None) -> Tensor:
    """What the inverter observes of clean `images` (B, C, H, W) in [0, 1]: themselves (`reconstruct`), with
    Gaussian noise of std `sigma` (`denoise`, not clipped), or with the hole set to 0 (`inpaint`, `mask`)."""
    if task == "reconstruct":
        return images
    if task == "denoise":
        return images + sigma * torch.randn(images.shape, generator=generator, device=images.device)
    if task == "inpaint":
        if mask is None:
            raise ValueError("corrupt(task='inpaint') needs a mask")
        return images * mask
    raise ValueError(f"--model.predict_task must be reconstruct, denoise or inpaint, got {task!r}")


def mean_fill(observed: Tensor, mask: Tensor) -> Tensor:
    """The baseline inpainter: each hole pixel gets the mean of the image's observed pixels."""
    mask = mask.expand_as(observed)
    means = (observed * mask).sum((1, 2, 3), keepdim=True) / mask.sum((1, 2, 3), keepdim=True).clamp_min(1)
    return observed * mask + means * (1 - mask)


def show_holes(observed: Tensor, mask: Tensor | None, fill: float = 0.5) -> Tensor:
    """`observed` with its hole painted mid-gray, for pictures (black would look like background)."""
    return observed if mask is None else observed * mask + fill * (1 - mask)


# --- the latent-optimisation inverter ------------------------------------------------------------------------
def data_loss(outputs: Tensor, targets: Tensor, mask: Tensor | None, norm: Literal["l1", "l2"]) -> Tensor:
    """Per image (B,): mean |error| (`l1`) or squared error (`l2`) over the observed pixels (all without mask)."""
    error = (outputs - targets).abs() if norm == "l1" else (outputs - targets).square()
    if mask is None:
        return error.flatten(1).mean(1)
    mask = mask.expand_as(error)
    return (error * mask).flatten(1).sum(1) / mask.flatten(1).sum(1).clamp_min(1)


def prior_penalty(z: Tensor, prior: Prior) -> Tensor:
    """Per latent (B,): `gaussian` = mean z^2 (the N(0, I) log-density up to constants); `norm` =
    (|z|^2 / d - 1)^2, which keeps z near the shell of radius sqrt(d) where nearly all N(0, I) draws lie."""
    mean_square = z.square().mean(1)
    return mean_square if prior == "gaussian" else (mean_square - 1).square()


def optimize_restarts(generate: Callable[[Tensor], Tensor], targets: Tensor, latent_dim: int, *, steps: int,
                      lr: float, restarts: int, prior_weight: float, prior: Prior = "norm",
                      norm: Literal["l1", "l2"] = "l2", mask: Tensor | None = None, init: Tensor | None = None,
                      generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """(z (R, B, latent_dim), their loss (R, B)): every restart's best latent for `targets` (B, C, H, W) in the
    generator's range, R = `restarts`, and its objective: data term + `prior_weight` * prior penalty.

    `generate(z)` is the frozen generator. Starts: `init` (B, latent_dim) if given (the hybrid's encoder guess)
    as restart 0 and `restarts - 1` N(0, I) draws, or `restarts` draws without `init`. All `restarts * B` latents
    are one batch; the summed loss gives each latent its own gradient (the losses do not interact) and Adam's
    update is per element, so this is `restarts * B` independent optimisations run at once. The learning rate
    decays along a cosine to 0, and each latent's best point seen (lowest objective) is kept over the steps.

    Works inside Lightning's test/predict loops, which run in inference mode: the optimisation leaves it.
    """
    if restarts < 1 or steps < 0:
        raise ValueError(f"restarts must be >= 1 and steps >= 0, got {restarts} and {steps}")
    with torch.inference_mode(False), torch.enable_grad():
        targets = targets.detach().clone()  # inference tensors cannot take part in autograd
        mask = None if mask is None else mask.detach().clone()
        b = targets.shape[0]
        starts = torch.randn(restarts, b, latent_dim, generator=generator, device=targets.device)
        if init is not None:
            starts[0] = init.detach().clone()
        z = starts.flatten(0, 1).requires_grad_(True)  # (R * B, d), restart-major
        tiled_targets = targets.repeat(restarts, 1, 1, 1)
        tiled_mask = None if mask is None else mask.expand(b, *mask.shape[1:]).repeat(restarts, 1, 1, 1)
        optimizer = torch.optim.Adam([z], lr=lr)
        best_z, best_loss = z.detach().clone(), torch.full((restarts * b,), math.inf, device=targets.device)
        for step in range(steps + 1):
            fit = data_loss(generate(z), tiled_targets, tiled_mask, norm)
            total = fit + prior_weight * prior_penalty(z, prior)
            better = total.detach() < best_loss
            best_loss = torch.where(better, total.detach(), best_loss)
            best_z = torch.where(better[:, None], z.detach(), best_z)
            if step == steps:
                break
            for group in optimizer.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
            optimizer.zero_grad(set_to_none=True)
            total.sum().backward()
            optimizer.step()
    return best_z.view(restarts, b, latent_dim), best_loss.view(restarts, b)


def optimize_latent(generate: Callable[[Tensor], Tensor], targets: Tensor, latent_dim: int, *, steps: int,
                    lr: float, restarts: int, prior_weight: float, prior: Prior = "norm",
                    norm: Literal["l1", "l2"] = "l2", mask: Tensor | None = None, init: Tensor | None = None,
                    generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """(best z (B, latent_dim), its loss (B,)): `optimize_restarts` (same arguments), keeping per image the
    restart of lowest loss (data + prior)."""
    z, losses = optimize_restarts(generate, targets, latent_dim, steps=steps, lr=lr, restarts=restarts,
                                  prior_weight=prior_weight, prior=prior, norm=norm, mask=mask, init=init,
                                  generator=generator)
    winner = losses.argmin(0)
    columns = torch.arange(z.shape[1], device=z.device)
    return z[winner, columns], losses[winner, columns]


def check_combine(combine: str, temperature: float | None = None, top_k: int | None = None) -> None:
    """Raise a ValueError naming the option when the restart combination is misconfigured."""
    if combine not in ("best", "mean"):
        raise ValueError(f"--model.combine must be best or mean, got {combine!r}")
    if temperature is not None and not temperature > 0:
        raise ValueError(f"--model.combine_temperature must be > 0 (or null: equal weights), got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"--model.combine_top_k must be >= 1 (or null: all restarts), got {top_k}")


def combine_restarts(images: Tensor, losses: Tensor, combine: Combine = "best", temperature: float | None = None,
                     top_k: int | None = None) -> Tensor:
    """One image per target (B, C, H, W) from every restart's image (R, B, C, H, W) and loss (R, B).

    `best`: the image of the lowest loss. `mean`: a weighted mean over the `top_k` restarts of lowest loss (all
    when None; ties with the k-th lowest loss are kept), weights softmax(-loss / `temperature`) (equal weights when None). Under ambiguity (a hole that
    several digits fit) the mean is closer in squared error to the truth than any single completion: PSNR is an
    MSE measure, and the MSE-optimal answer is the posterior mean, which the restarts sample roughly.
    """
    check_combine(combine, temperature, top_k)
    if images.shape[:2] != losses.shape:
        raise ValueError(f"images {tuple(images.shape)} and losses {tuple(losses.shape)} disagree on (restarts, B)")
    if combine == "best":
        return images[losses.argmin(0), torch.arange(losses.shape[1], device=losses.device)]
    logits = -losses / temperature if temperature is not None else torch.zeros_like(losses)
    if top_k is not None and top_k < len(losses):
        kth = losses.topk(top_k, dim=0, largest=False).values[-1]  # (B,): the k-th lowest loss
        logits = logits.masked_fill(losses > kth, -math.inf)
    weights = logits.softmax(0)  # (R, B)
    return (weights.view(*weights.shape, *[1] * (images.dim() - 2)) * images).sum(0)
