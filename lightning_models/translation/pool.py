"""The image history pool of CycleGAN (Shrivastava et al. 2017): the discriminator is shown a mix of the newest
fakes and older ones, so it does not forget what the generator produced a while ago and the two oscillate less.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor


class ImagePool(nn.Module):
    """Keeps up to `size` generated images; `query(images, generator)` returns a batch of the same shape.

    The classic rule, per image in batch order: while the pool is not full the image is stored and returned as
    is; once it is full, with probability `swap_probability` a random stored image is returned and the new one
    takes its slot, otherwise the new image is returned. `query` applies it to the whole batch at once and keeps
    the sequential meaning when two images of one batch draw the same slot (the later one gets the earlier one's
    image, and the slot ends up holding the last).

    The stored images and the fill count are buffers, so checkpoints carry them, and every random draw comes
    from the `generator` the caller passes: a resumed run continues with the same history and the same draws.

    Args:
        size: images kept; 0 turns the pool off (`query` returns its input).
        image_shape: (C, H, W) of the images.
        swap_probability: chance that a query of a full pool returns a stored image instead of the new one.
    """

    def __init__(self, size: int = 50, image_shape: tuple[int, int, int] = (3, 28, 28),
                 swap_probability: float = 0.5) -> None:
        super().__init__()
        if size < 0:
            raise ValueError(f"--model.pool_size must be >= 0 (0 turns the history pool off), got {size}")
        self.size = size
        self.swap_probability = swap_probability
        self.register_buffer("images", torch.zeros(size, *image_shape))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def query(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A batch (B, C, H, W) for the discriminator, drawn from `images` (B, C, H, W) and the history."""
        images = images.detach()
        if self.size == 0:
            return images
        out = images.clone()
        filled = int(self.count)
        n_fill = min(self.size - filled, len(images))
        if n_fill > 0:  # filling: stored and returned unchanged
            self.images[filled : filled + n_fill] = images[:n_fill].to(self.images.dtype)
            self.count += n_fill
        rest = images[n_fill:]
        if len(rest) == 0:
            return out
        device = images.device
        swap = (torch.rand(len(rest), device=device, generator=generator) < self.swap_probability).nonzero()[:, 0]
        k = len(swap)
        if k == 0:
            return out
        slots = torch.randint(self.size, (k,), device=device, generator=generator)
        # Group the swaps by slot, in batch order within a slot: the first of a group returns the stored image,
        # each later one the new image of the swap before it; the last of a group is what the slot keeps.
        order = torch.argsort(slots * k + torch.arange(k, device=device))
        slot = slots[order]
        new = rest[swap][order]  # (k, C, H, W), in grouped order
        first = torch.ones(k, dtype=torch.bool, device=device)
        first[1:] = slot[1:] != slot[:-1]
        last = torch.ones_like(first)
        last[:-1] = first[1:]
        returned = torch.where(first[:, None, None, None], self.images[slot].to(new.dtype), new.roll(1, 0))
        self.images[slot[last]] = new[last].to(self.images.dtype)
        out[n_fill + swap[order]] = returned
        return out
