"""Which rows of a datamodule's split a batch holds, found from the pixels alone, so per-image data kept by a model
(pseudo-labels, cached codes) follows the batch whatever the order, shard or device.

A batch served unchanged from a split (`ImageDataModule` with no `transform_batch`) holds images that came from
uint8 values; an exact integer fingerprint of those values is looked up with `searchsorted` among the split's sorted
fingerprints: one vectorised call per batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from datamodules.base import ImageDataModule


def fingerprint_weights(num_values: int, device: torch.device | str | None = None) -> Tensor:
    """The fixed random integer projection (int64) of `image_fingerprint` for images of `num_values` values
    (C x H x W): weights below 2**31, or below 2**53 / (255 x num_values) for images of more than 16,448 values, so
    that every key is an integer float64 holds exactly."""
    high = min(2**31, 2**53 // (255 * num_values))
    return torch.randint(1, high, (num_values,), generator=torch.Generator().manual_seed(0)).to(device)


def image_fingerprint(images: Tensor, weights: Tensor | None = None) -> Tensor:
    """An exact int64 key (B,) of images (B, C, H, W) in [0, 1] that came from uint8 values: a fixed random integer
    projection of the 0-255 values. `weights`: the projection (`fingerprint_weights`) already on the images'
    device, so that a caller fingerprinting every batch draws it once.

    The projection is a float64 matrix-vector product: every partial sum is an integer below 2**53, so it is exact,
    and it runs about 3x faster on a CPU than the same sum in int64 (0.07-0.12 against 0.24-0.33 ms for a batch of
    128 MNIST images, benchmarks/RESULTS.md issue 8; the latent GANs look their codes up every batch). MPS has no
    float64: there the sum is taken in int64."""
    flat = images.flatten(1).mul(255).round_()
    if weights is None:
        weights = fingerprint_weights(flat.shape[1], flat.device)
    if flat.device.type == "mps":
        return (flat.long() * weights).sum(1)
    return flat.double().mv(weights.double()).long()


def serves_split_images_unchanged(datamodule) -> bool:
    """Whether `datamodule`'s training batches hold its `split("train")["image"]` rows as they are stored (only
    converted to [0, 1]): an `ImageDataModule` whose subclass does no per-batch transform (coloring, pairing)."""
    return (isinstance(datamodule, ImageDataModule)
            and type(datamodule).transform_batch is ImageDataModule.transform_batch
            and type(datamodule).on_after_batch_transfer is ImageDataModule.on_after_batch_transfer)


class SplitRows:
    """Row lookup for the images of one split.

    Args:
        images: the split's uint8 images (N, C, H, W), on any device.
        chunk: rows fingerprinted at a time (bounds the int64 temporary to chunk x C x H x W values).
    """

    def __init__(self, images: Tensor, chunk: int = 4096) -> None:
        self.weights = fingerprint_weights(images[0].numel(), images.device)
        keys = torch.cat([image_fingerprint(part.float() / 255, self.weights) for part in images.split(chunk)])
        self.sorted_keys, self.order = keys.sort()

    def to(self, device: torch.device | str) -> "SplitRows":
        self.weights, self.sorted_keys, self.order = (t.to(device) for t in
                                                      (self.weights, self.sorted_keys, self.order))
        return self

    @property
    def device(self) -> torch.device:
        return self.sorted_keys.device

    def find(self, images: Tensor) -> Tensor | None:
        """Split rows (B,) of `images` (B, C, H, W) in [0, 1], or None if any of them is not in the split."""
        if images[0].numel() != len(self.weights):  # another image size: not in the split
            return None
        keys = image_fingerprint(images, self.weights)
        pos = torch.searchsorted(self.sorted_keys, keys).clamp_max(len(self.sorted_keys) - 1)
        if not torch.equal(self.sorted_keys[pos], keys):
            return None
        return self.order[pos]
