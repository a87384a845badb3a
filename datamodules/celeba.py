"""CelebA (aligned faces), each split decoded once into a uint8 tensor, optionally cached as a `.pt` file.

We read the official text files ourselves: torchvision's `CelebA` checks the md5 of every file (identity, boxes,
landmarks too) and refuses a folder holding only what we need, so it is used for `download=True` alone.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
import warnings
from typing import Literal

import numpy as np
import torch
import torchvision
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from datamodules.base import ImageDataModule
from datamodules.mnist import resize_uint8

IMAGE_FOLDER = "img_align_celeba"
PARTITION_FILE = "list_eval_partition.txt"
ATTRIBUTE_FILE = "list_attr_celeba.txt"
LAYOUT = (f"DIR/celeba/{IMAGE_FOLDER}/*.jpg, DIR/celeba/{PARTITION_FILE} and (for --data.attributes) "
          f"DIR/celeba/{ATTRIBUTE_FILE}, with --data.data_dir DIR")
_PARTITION_IDS = {"train": "0", "val": "1", "test": "2"}
_MANUAL_HELP = ("download img_align_celeba.zip and the text files by hand from the CelebA page and unzip them "
                "into DIR/celeba.")
_DOWNLOAD_HELP = ("Pass --data.download true to fetch it with torchvision; its host (Google Drive) often refuses "
                  "with a quota error, and then " + _MANUAL_HELP)


def center_crop(image: np.ndarray, crop_size: int | None) -> Tensor:
    """uint8 (H, W, 3) array -> contiguous (3, side, side) tensor: a centered `crop_size` square (None: the
    largest). Contiguous, so that stacking a batch of crops is a plain copy."""
    height, width = image.shape[:2]
    side = min(height, width) if crop_size is None else crop_size
    if side > min(height, width):
        raise ValueError(f"{height}x{width} image is smaller than --data.crop_size {crop_size}")
    top, left = int(round((height - side) / 2)), int(round((width - side) / 2))  # as torchvision's CenterCrop
    return torch.from_numpy(np.ascontiguousarray(image[top : top + side, left : left + side].transpose(2, 0, 1)))


class _JpegFiles(Dataset):
    """Decodes and crops one JPEG per item: (image, None), or (None, an error message naming the file)."""

    def __init__(self, paths: list[str], crop_size: int | None) -> None:
        self.paths, self.crop_size = paths, crop_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Tensor | None, str | None]:
        path = self.paths[i]
        try:
            with Image.open(path) as file:  # Pillow: torchvision's own JPEG decoding is deprecated since 0.29
                image = np.asarray(file.convert("RGB"))  # (H, W, 3)
        except (OSError, SyntaxError, ValueError) as err:  # Pillow's ways of saying truncated or not an image
            return None, (f"{path}: cannot decode this JPEG ({err}). The file is corrupt or truncated: replace it "
                          "with the original from img_align_celeba.zip.")
        try:
            return center_crop(image, self.crop_size), None
        except ValueError as err:
            return None, f"{path}: {err}. Lower --data.crop_size or set it to null."


def _resize_batch(size: int, batch: list[tuple[Tensor | None, str | None]]) -> tuple[Tensor | None, str | None]:
    """Collates crops into (B, 3, size, size) with one resize call: per image, the op overhead dominates."""
    errors = [error for _, error in batch if error is not None]
    if errors:
        return None, errors[0]
    crops = [crop for crop, _ in batch]
    if len({crop.shape for crop in crops}) == 1:
        return resize_uint8(torch.stack(crops), size), None
    return torch.cat([resize_uint8(crop[None], size) for crop in crops]), None


def decode_jpegs(paths: list[str], crop_size: int | None, size: int, num_workers: int) -> Tensor:
    """uint8 (N, 3, size, size) of the files, decoded by `num_workers` processes (0: in this one)."""
    out = torch.empty(len(paths), 3, size, size, dtype=torch.uint8)
    loader = DataLoader(_JpegFiles(paths, crop_size), batch_size=64, num_workers=num_workers,
                        collate_fn=functools.partial(_resize_batch, size))
    row = 0
    for images, error in loader:
        if error is not None:
            raise ValueError(error)
        out[row : row + len(images)] = images
        row += len(images)
    return out


def read_partition(path: str) -> dict[str, list[str]]:
    """File names per split ("train", "val", "test") from `list_eval_partition.txt` (`000001.jpg 0` lines)."""
    splits: dict[str, list[str]] = {name: [] for name in _PARTITION_IDS}
    by_id = {v: k for k, v in _PARTITION_IDS.items()}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or parts[1] not in by_id:
                raise ValueError(f"{path}, line {number}: expected '<name>.jpg <0|1|2>', got {line.strip()!r}. "
                                 "Replace the file with the official one.")
            splits[by_id[parts[1]]].append(parts[0])
    return splits


def read_attributes(path: str, files: list[str], wanted: list[str]) -> Tensor:
    """float (N, A) in {0, 1}: the `wanted` columns of `list_attr_celeba.txt` for `files`, in that order."""
    with open(path) as f:
        lines = f.read().splitlines()
    if len(lines) < 2:
        raise ValueError(f"{path}: expected a count line, a line of attribute names, then one line per image.")
    names = lines[1].split()
    unknown = [a for a in wanted if a not in names]
    if unknown:
        raise ValueError(f"--data.attributes: unknown {unknown}. The names in {path} are: {', '.join(names)}")
    columns = [names.index(a) + 1 for a in wanted]
    rows = {}
    for number, line in enumerate(lines[2:], 3):
        parts = line.split()
        if parts and len(parts) != len(names) + 1:
            raise ValueError(f"{path}, line {number}: expected a name and {len(names)} values of -1/1.")
        if parts:
            rows[parts[0]] = parts
    missing = [name for name in files if name not in rows]
    if missing:
        raise ValueError(f"{path} has no attributes for {len(missing)} images, e.g. {missing[:3]}.")
    values = torch.tensor([[int(rows[name][c]) for c in columns] for name in files], dtype=torch.int8)
    return (values > 0).float().reshape(len(files), len(wanted))


class CelebADataModule(ImageDataModule):
    """CelebA aligned faces: `{"image": float (B, 3, S, S) in [0, 1]}`, plus `"attributes"` if asked for.

    Reads the torchvision layout (`DIR/celeba/img_align_celeba/*.jpg` and the official `list_eval_partition.txt`,
    which defines train/val/test: 162770/19867/19962 images). Each split's JPEGs are decoded once at setup,
    center-cropped and resized. There are no class labels (`num_classes = 0`).

    Args:
        data_dir: the folder holding `celeba/` (torchvision layout).
        image_size: side S of the served square images.
        crop_size: side of the centered square cut from the 178x218 faces before resizing (148 keeps the face,
            as most CelebA GAN/VAE setups do); null: the largest centered square (178).
        attributes: names from `list_attr_celeba.txt` (e.g. [Smiling, Male]) served as batch key `attributes`,
            float (B, A) in {0, 1}, in this order; null: none.
        download: fetch the dataset with torchvision if files are missing. Off by default, unlike MNIST: its
            host (Google Drive) often refuses with a quota error, so get the files by hand (see README).
        seed: seed of the training order.
        num_workers: processes decoding the JPEGs at setup (0: the main process; null: up to 8, one per CPU).
        cache_dir: folder where decoded splits are kept as `.pt` files (keyed by split, size and crop) and
            reused; never the data folder. null: decode at every setup.
    """

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        image_size: int = 64,
        crop_size: int | None = 148,
        attributes: list[str] | None = None,
        download: bool = False,
        seed: int = 0,
        test_split: Literal["test", "val"] = "test",
        num_workers: int | None = None,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__(data_dir, batch_size, eval_batch_size, download, seed, test_split)
        if image_size < 8:
            raise ValueError(f"--data.image_size must be >= 8, got {image_size}")
        if crop_size is not None and crop_size < 1:
            raise ValueError(f"--data.crop_size must be >= 1 or null, got {crop_size}")
        self.root = os.path.join(data_dir, "celeba")
        if cache_dir is not None:
            cache, root = os.path.abspath(cache_dir), os.path.abspath(self.root)
            if os.path.commonpath([cache, root]) == root:
                raise ValueError(f"--data.cache_dir {cache_dir} is inside the data folder {self.root}; "
                                 "choose a folder outside it (the data folder is never written to).")
        self.image_size = image_size
        self.crop_size = crop_size
        self.attributes = list(attributes or [])
        self.num_workers = min(8, os.cpu_count() or 1) if num_workers is None else num_workers
        self.cache_dir = cache_dir
        self.image_shape = (3, image_size, image_size)
        self.num_attributes = len(self.attributes)

    def prepare_data(self) -> None:
        if self.download:  # one process per node; the decoding happens in setup on every rank
            self._check_layout()

    def _check_layout(self) -> None:
        images = os.path.join(self.root, IMAGE_FOLDER)
        partition = os.path.join(self.root, PARTITION_FILE)
        attributes = os.path.join(self.root, ATTRIBUTE_FILE)
        needed = [partition] + ([attributes] if self.attributes else [])
        if self.download and not (os.path.isdir(images) and all(map(os.path.isfile, needed))):
            try:
                torchvision.datasets.CelebA(self.data_dir, split="all", target_type=[], download=True)
            except Exception as err:  # network, quota and md5 failures all end here
                raise RuntimeError(f"CelebA download into {os.path.abspath(self.root)} failed ({err}). Its host, "
                                   "Google Drive, often refuses with a quota error; then " + _MANUAL_HELP) from err
        if not os.path.isdir(images):
            raise FileNotFoundError(f"CelebA: {os.path.abspath(images)} does not exist. Expected {LAYOUT}."
                                    f"{self._layout_hint()} {_DOWNLOAD_HELP}")
        for path in needed:
            if not os.path.isfile(path):
                use = "defines the train/val/test split" if path == partition else "holds --data.attributes"
                raise FileNotFoundError(f"CelebA: {os.path.abspath(path)} is missing; it {use}. Copy the "
                                        f"official {os.path.basename(path)} there. {_DOWNLOAD_HELP}")

    def _layout_hint(self) -> str:
        """Names the right --data.data_dir when the user pointed one level too deep or too high."""
        here = os.path.abspath(self.data_dir)
        if os.path.isfile(here):
            return f" {here} is a file: --data.data_dir takes the folder that holds celeba/."
        if not os.path.isdir(here):
            return f" The folder {here} does not exist."
        if os.path.basename(here) == IMAGE_FOLDER:
            return f" {here} is the image folder itself: use --data.data_dir {os.path.dirname(os.path.dirname(here))}"
        if os.path.isdir(os.path.join(here, IMAGE_FOLDER)):
            return f" {here} is the celeba folder itself: use --data.data_dir {os.path.dirname(here)}"
        for child in sorted(os.listdir(here)):
            if os.path.isdir(os.path.join(here, child, "celeba", IMAGE_FOLDER)):
                return f" Found it one level down: use --data.data_dir {os.path.join(here, child)}"
        return ""

    def load_split(self, split: str) -> dict[str, Tensor]:
        self._check_layout()
        partition = os.path.join(self.root, PARTITION_FILE)
        files = read_partition(partition)[split]
        if not files:
            raise ValueError(f"CelebA: {os.path.abspath(partition)} lists no {split} images (lines '<name>.jpg "
                             f"{_PARTITION_IDS[split]}'). Replace it with the official file.")
        data = {}
        if self.attributes:  # read before the long decoding pass, so a wrong name fails at once
            data["attributes"] = read_attributes(os.path.join(self.root, ATTRIBUTE_FILE), files, self.attributes)
        data["image"] = self._images(split, files)
        return data

    def _images(self, split: str, files: list[str]) -> Tensor:
        folder = os.path.join(self.root, IMAGE_FOLDER)
        present = set(os.listdir(folder))
        missing = [name for name in files if name not in present]
        if missing:
            raise FileNotFoundError(f"CelebA: {len(missing)} images listed in {PARTITION_FILE} are missing from "
                                    f"{os.path.abspath(folder)}, e.g. {', '.join(missing[:3])}. Re-extract "
                                    "img_align_celeba.zip there.")
        key = hashlib.sha1("\n".join(files).encode()).hexdigest()  # a changed partition invalidates the cache
        cache = None
        if self.cache_dir is not None:
            cache = os.path.join(self.cache_dir, f"celeba_{split}_{self.image_size}px_crop{self.crop_size}.pt")
            images = _load_cache(cache, key)
            if images is not None:
                return images
        images = decode_jpegs([os.path.join(folder, n) for n in files], self.crop_size, self.image_size,
                              self.num_workers)
        if cache is not None:
            _save_cache(cache, key, images)
        return images


def _load_cache(path: str, key: str) -> Tensor | None:
    """The cached images if `path` holds those of the files hashed as `key`, else None."""
    if not os.path.isfile(path):
        return None
    try:
        cached = torch.load(path)
        return cached["image"] if cached["files_sha1"] == key else None
    except Exception as err:  # a cache is disposable: decode again rather than fail
        warnings.warn(f"ignoring unreadable CelebA cache {path} ({err})")
        return None


def _save_cache(path: str, key: str, images: Tensor) -> None:
    # Write then rename: a crash, or another rank writing the same file, never leaves half a file behind.
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    os.close(fd)
    try:
        torch.save({"files_sha1": key, "image": images}, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
