"""Shared test fixtures."""

from __future__ import annotations

import gzip
import os

import numpy as np
import pytest
import torch
from PIL import Image

# ---------------------------------------------------------------------------------------------------------------
# Datamodule fixtures: tiny datasets in the torchvision layout, written under tmp_path (never /work/shared, never
# downloaded).
# ---------------------------------------------------------------------------------------------------------------

MNIST_TRAIN, MNIST_TEST = 64, 32
CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
    "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
    "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
    "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()


def write_idx_gz(path: str, array: np.ndarray) -> None:
    """Writes a uint8 array as a gzipped IDX file (magic 0x0000 08 <ndim>, big-endian dims, then the bytes)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def pattern_digits(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, 28, 28) uint8: class d is a 10x4 block in cell (d // 5, d % 5) of a 2x5 grid, with random stroke
    intensities in [150, 255] and a random 0-1 pixel shift, so classes differ and every image is distinct."""
    images = np.zeros((len(labels), 28, 28), dtype=np.uint8)
    for i, d in enumerate(labels):
        top, left = 3 + 12 * (d // 5) + rng.integers(0, 2), 2 + 5 * (d % 5) + rng.integers(0, 2)
        images[i, top : top + 10, left : left + 4] = rng.integers(150, 256, size=(10, 4))
    return images


def make_mnist_dir(root: str) -> str:
    """Writes MNIST/raw and FashionMNIST/raw (64 train + 32 test images, labels balanced over 0-9) under root."""
    for offset, folder in enumerate(("MNIST", "FashionMNIST")):
        raw = os.path.join(root, folder, "raw")
        os.makedirs(raw)
        rng = np.random.default_rng(offset)
        for prefix, n in (("train", MNIST_TRAIN), ("t10k", MNIST_TEST)):
            labels = rng.permutation(np.arange(n) % 10).astype(np.uint8)
            write_idx_gz(os.path.join(raw, f"{prefix}-images-idx3-ubyte.gz"), pattern_digits(labels, rng))
            write_idx_gz(os.path.join(raw, f"{prefix}-labels-idx1-ubyte.gz"), labels)
    return root


@pytest.fixture
def mnist_dir(tmp_path) -> str:
    """A data_dir with tiny MNIST and Fashion-MNIST .gz files (different images) in the torchvision layout."""
    return make_mnist_dir(str(tmp_path / "data"))


def make_celeba_dir(root: str, count: int = 24) -> str:
    """Writes root/celeba in the official layout: `count` 178x218 JPEGs, the partition and attribute files.

    Image k (file `{k:06d}.jpg`, k from 1) is a green square of level 40 + 8 * (k - 1) over the central 148x148
    crop, inside a red frame, so tests can see the crop and which image they got. Partition: k % 6 == 5 is val,
    k % 6 == 0 is test, the rest train (16/4/4 for 24). Attributes: `Male` is 1 for even k, `Smiling` for
    k % 3 == 0, the others random; the file uses -1/1 and the official double-space alignment.
    """
    folder = os.path.join(root, "celeba")
    os.makedirs(os.path.join(folder, "img_align_celeba"))
    rng = np.random.default_rng(0)
    partition, attributes = [], []
    for k in range(1, count + 1):
        name = f"{k:06d}.jpg"
        image = np.zeros((218, 178, 3), dtype=np.uint8)  # (H, W, C) as the real aligned faces
        image[:, :, 0] = 255
        image[35:183, 15:163] = (0, 40 + 8 * (k - 1), 0)
        Image.fromarray(image).save(os.path.join(folder, "img_align_celeba", name), quality=95)
        partition.append(f"{name} {1 if k % 6 == 5 else 2 if k % 6 == 0 else 0}")
        values = rng.choice([-1, 1], size=len(CELEBA_ATTRIBUTES))
        values[CELEBA_ATTRIBUTES.index("Male")] = 1 if k % 2 == 0 else -1
        values[CELEBA_ATTRIBUTES.index("Smiling")] = 1 if k % 3 == 0 else -1
        attributes.append(name + " " + " ".join(f"{v:2d}" for v in values))
    with open(os.path.join(folder, "list_eval_partition.txt"), "w") as f:
        f.write("\n".join(partition) + "\n")
    with open(os.path.join(folder, "list_attr_celeba.txt"), "w") as f:
        f.write(f"{count}\n" + " ".join(CELEBA_ATTRIBUTES) + " \n" + "\n".join(attributes) + "\n")
    return root


@pytest.fixture
def celeba_dir(tmp_path) -> str:
    """A data_dir holding a 24-image CelebA in the official layout (see `make_celeba_dir`)."""
    return make_celeba_dir(str(tmp_path / "data"))


def _dir_listing(root: str) -> dict[str, tuple[int, int]]:
    listing = {}
    for folder, dirs, files in os.walk(root):
        for name in files + dirs:
            path = os.path.join(folder, name)
            stat = os.stat(path)
            listing[os.path.relpath(path, root)] = (stat.st_size, stat.st_mtime_ns)
    return listing


@pytest.fixture
def dir_listing():
    """`dir_listing(root)`: {relative path: (size, mtime_ns)} of everything under root, to check that nothing
    was written there."""
    return _dir_listing


@pytest.fixture
def batches_of():
    """`batches_of(dm, stage, split)`: the batches of a split as Lightning serves them (setup, loader, transfer)."""

    def get(dm, stage: str = "fit", split: str = "train") -> list[dict[str, torch.Tensor]]:
        dm.setup(stage)
        loader = getattr(dm, f"{split}_dataloader")()
        return [dm.on_after_batch_transfer(batch, 0) for batch in loader]

    return get
