"""MNIST and Fashion-MNIST, decoded once into uint8 tensors."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
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


_ALL_FILES = ", ".join(n + ".gz" for pair in _FILES.values() for n in pair)


def find_mnist_files(data_dir: str, dataset: str, train: bool, download: bool = False) -> list[str]:
    """The (images, labels) files of the official train or test pair under `data_dir/<folder>/raw`, gzipped or
    extracted; missing ones are downloaded first when `download` (see `download_mnist`). Missing files are a
    FileNotFoundError naming the folder, the files and the fix."""
    if dataset not in DATASETS:
        raise ValueError(f"--data.dataset must be one of {sorted(DATASETS)}, got {dataset!r}")
    folder_name = DATASETS[dataset][1]
    raw = os.path.join(data_dir, folder_name, "raw")
    names = _FILES["train" if train else "test"]
    paths = [find_idx_file(raw, n) for n in names]
    if None in paths and download:
        download_mnist(data_dir, dataset)
        paths = [find_idx_file(raw, n) for n in names]
    if None in paths:
        missing = [n + ".gz" for n, p in zip(names, paths) if p is None]
        raise FileNotFoundError(
            f"{dataset}: missing {', '.join(missing)} in {os.path.abspath(raw)}. Expected the official files "
            f"{_ALL_FILES} (gzipped or extracted) there. Pass --data.download true (the default) to fetch them with "
            f"torchvision, or copy them into that folder (or point --data.data_dir at the folder that contains "
            f"{folder_name}/raw)."
        )
    return paths


def download_mnist(data_dir: str, dataset: str) -> None:
    """Fetches the official files of `dataset` with torchvision (which checks their md5 sums) into
    `data_dir/<folder>/raw`. They are downloaded into a temporary folder beside it and moved in once all are
    there, so a failed or interrupted download leaves nothing behind: no folder, and no partial file that the
    next run would take for a corrupt one. A failure is a FileNotFoundError of one line: the folder, the reason
    (no network, a proxy, a mirror down, a full disk) and how to get the files by hand."""
    tv_class, folder_name, _ = DATASETS[dataset]
    raw = os.path.join(data_dir, folder_name, "raw")
    created = [d for d in (data_dir, os.path.dirname(raw), raw) if not os.path.isdir(d)]
    print(f"{dataset}: downloading {_ALL_FILES} into {os.path.abspath(raw)} (--data.download false: never)",
          file=sys.stderr)
    staging = os.path.join(data_dir, f".download-{folder_name}-{os.getpid()}")
    try:
        os.makedirs(staging, exist_ok=True)
        tv_class(staging, train=True, download=True)  # all four files
        os.makedirs(raw, exist_ok=True)
        fetched = os.path.join(staging, folder_name, "raw")
        for name in os.listdir(fetched):
            if not os.path.exists(os.path.join(raw, name)):
                os.replace(os.path.join(fetched, name), os.path.join(raw, name))
    except (OSError, RuntimeError) as err:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in reversed(created):  # only the folders this call made, and only when empty
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        reason = lines[-1] if lines else type(err).__name__
        raise FileNotFoundError(
            f"{dataset}: could not download the missing files into {os.path.abspath(raw)} "
            f"({lines[0].rstrip(':') + ': ' if len(lines) > 1 else ''}{reason}). Check the network (or the "
            f"https_proxy setting), or copy {_ALL_FILES} into that folder from a machine that has them "
            "(then nothing is downloaded; --data.download false never tries)."
        ) from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_mnist_split(data_dir: str, dataset: str, train: bool, download: bool = False) -> tuple[Tensor, Tensor]:
    """Returns (images uint8 (N, 1, 28, 28), labels int64 (N,)) of the official train or test file pair
    (`find_mnist_files`: downloaded first when missing and `download`)."""
    paths = find_mnist_files(data_dir, dataset, train, download)
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
        download: fetch the official files with torchvision when they are missing from `data_dir` (on by
            default, about 11 MB; needs the network once). false: never use the network.
    """

    def __init__(
        self,
        dataset: Literal["mnist", "fashion_mnist"] = "mnist",
        data_dir: str = "data",
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        image_size: int = 28,
        val_size: int = 5000,
        download: bool = True,
        seed: int = 0,
        test_split: Literal["test", "val"] = "test",
    ) -> None:
        super().__init__(data_dir, batch_size, eval_batch_size, download, seed, test_split)
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
        if self.download:  # one process per node fetches what is missing; setup reads on every rank
            for train in (True, False):
                find_mnist_files(self.data_dir, self.dataset, train, download=True)

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
