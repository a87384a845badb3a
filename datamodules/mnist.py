"""MNIST and Fashion-MNIST, decoded once into uint8 tensors."""

from __future__ import annotations

import os
from typing import Literal

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor

from datamodules.base import ImageDataModule
from datamodules.idx import find_idx_file, read_idx

# dataset name -> (torchvision class, folder under data_dir, class names)
DATASETS = {
    "mnist": (torchvision.datasets.MNIST, "MNIST", [str(i) for i in range(10)]),
    "fashion_mnist": (
        torchvision.datasets.FashionMNIST,
        "FashionMNIST",
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
    ),
}
_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def load_mnist_split(data_dir: str, dataset: str, train: bool, download: bool = False) -> tuple[Tensor, Tensor]:
    """Returns (images uint8 (N, 1, 28, 28), labels int64 (N,)) of the official train or test file pair."""
    if dataset not in DATASETS:
        raise ValueError(f"--data.dataset must be one of {sorted(DATASETS)}, got {dataset!r}")
    tv_class, folder_name, _ = DATASETS[dataset]
    raw = os.path.join(data_dir, folder_name, "raw")
    names = _FILES["train" if train else "test"]
    paths = [find_idx_file(raw, n) for n in names]
    if None in paths and download:
        tv_class(data_dir, train=train, download=True)  # torchvision fetches and checks the md5 sums
        paths = [find_idx_file(raw, n) for n in names]
    if None in paths:
        missing = [n + ".gz" for n, p in zip(names, paths) if p is None]
        raise FileNotFoundError(
            f"{dataset}: missing {', '.join(missing)} in {os.path.abspath(raw)}. Expected the official files "
            f"{', '.join(n + '.gz' for pair in _FILES.values() for n in pair)} (gzipped or extracted) there. "
            f"Pass --data.download true to fetch them with torchvision, or copy them into that folder "
            f"(or point --data.data_dir at the folder that contains {folder_name}/raw)."
        )
    images, labels = (read_idx(p) for p in paths)
    if images.dim() != 3 or labels.dim() != 1 or len(images) != len(labels):
        raise ValueError(f"{paths[0]} and {paths[1]}: expected (N, H, W) images and N labels, got "
                         f"{tuple(images.shape)} and {tuple(labels.shape)}")
    return images.unsqueeze(1).contiguous(), labels.long()


def resize_uint8(images: Tensor, size: int) -> Tensor:
    """Resizes a uint8 (N, C, H, W) tensor once, at setup, in chunks (bilinear, antialiased)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    chunks = [
        F.interpolate(c.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        .round_().clamp_(0, 255).to(torch.uint8)
        for c in images.split(4096)
    ]
    return torch.cat(chunks)


class MNISTDataModule(ImageDataModule):
    """MNIST or Fashion-MNIST (`dataset: mnist | fashion_mnist`), grayscale, labels 0-9.

    The official training file is split into train and validation (`val_size` images, chosen with `seed`);
    the official test file is the test split.

    Args:
        dataset: `mnist` or `fashion_mnist` (read from `data_dir/MNIST/raw` or `data_dir/FashionMNIST/raw`).
        image_size: side of the served images; 28 is native, others are resized once at setup (e.g. 32, 64).
        val_size: images of the official training file held out for validation.
    """

    def __init__(
        self,
        dataset: Literal["mnist", "fashion_mnist"] = "mnist",
        data_dir: str = "data",
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        image_size: int = 28,
        val_size: int = 5000,
        download: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(data_dir, batch_size, eval_batch_size, download, seed)
        if dataset not in DATASETS:
            raise ValueError(f"--data.dataset must be one of {sorted(DATASETS)}, got {dataset!r}")
        if image_size < 8:
            raise ValueError(f"--data.image_size must be >= 8, got {image_size}")
        self.dataset = dataset
        self.image_size = image_size
        self.val_size = val_size
        self.image_shape = (1, image_size, image_size)
        self.class_names = DATASETS[dataset][2]
        self.num_classes = len(self.class_names)

    def prepare_data(self) -> None:
        if self.download:  # runs on one process per node; reading happens in setup on every rank
            for train in (True, False):
                load_mnist_split(self.data_dir, self.dataset, train, download=True)

    def _read(self, train: bool) -> dict[str, Tensor]:
        images, labels = load_mnist_split(self.data_dir, self.dataset, train, download=self.download)
        return {"image": resize_uint8(images, self.image_size), "label": labels}

    def load_split(self, split: str) -> dict[str, Tensor]:
        if split == "test":
            return self._read(train=False)
        if split == "_train_full":
            return self._read(train=True)
        full = self.split("_train_full")
        n = len(full["label"])
        if not 0 <= self.val_size < n:
            raise ValueError(f"--data.val_size must be in [0, {n}), got {self.val_size}")
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
        idx = order[self.val_size :] if split == "train" else order[: self.val_size]
        return {k: v[idx] for k, v in full.items()}
