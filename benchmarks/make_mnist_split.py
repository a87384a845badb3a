"""Makes a small MNIST-layout data folder from one IDX file pair, for benchmarks and checks on machines that only
hold the official test set.

    python benchmarks/make_mnist_split.py SOURCE_DIR OUTPUT_DIR [NUM_TRAIN] [--num-test N] [--dataset-folder MNIST]

reads `SOURCE_DIR/t10k-{images-idx3,labels-idx1}-ubyte[.gz]`, and writes the first NUM_TRAIN images (default 8000)
as `OUTPUT_DIR/MNIST/raw/train-*-ubyte.gz` and the rest (or only the last N with --num-test, so a smaller training
split keeps the same test images) as `OUTPUT_DIR/MNIST/raw/t10k-*-ubyte.gz`, so that
`MNISTDataModule(data_dir=OUTPUT_DIR)` reads them as the official train/test pair.
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys

import numpy as np
from torch import Tensor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from anywhere

from datamodules.idx import find_idx_file, read_idx  # noqa: E402

NAMES = ("images-idx3-ubyte", "labels-idx1-ubyte")


def write_idx_gz(path: str, array: Tensor) -> None:
    """Writes a uint8 tensor as a gzipped IDX file (magic 0x0000 0x08 ndim, big-endian dims, raw bytes)."""
    data = np.ascontiguousarray(array.numpy(), dtype=np.uint8)
    header = bytes([0, 0, 0x08, data.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in data.shape)
    with gzip.open(path, "wb", compresslevel=6) as f:
        f.write(header + data.tobytes())


def make_split(source_dir: str, output_dir: str, num_train: int, dataset_folder: str = "MNIST",
               num_test: int | None = None) -> str:
    """Writes the split and returns the folder of the written files."""
    paths = [find_idx_file(source_dir, "t10k-" + name) for name in NAMES]
    if None in paths:
        raise FileNotFoundError(f"{source_dir}: expected t10k-{NAMES[0]}[.gz] and t10k-{NAMES[1]}[.gz] there")
    images, labels = (read_idx(p) for p in paths)
    if not 0 < num_train < len(labels):
        raise ValueError(f"num_train must be in (0, {len(labels)}), got {num_train}")
    num_test = len(labels) - num_train if num_test is None else num_test
    if not 0 < num_test <= len(labels) - num_train:
        raise ValueError(f"num_test must be in (0, {len(labels) - num_train}], got {num_test}")
    raw = os.path.join(output_dir, dataset_folder, "raw")
    os.makedirs(raw, exist_ok=True)
    for prefix, rows in (("train", slice(0, num_train)), ("t10k", slice(len(labels) - num_test, None))):
        write_idx_gz(os.path.join(raw, f"{prefix}-{NAMES[0]}.gz"), images[rows])
        write_idx_gz(os.path.join(raw, f"{prefix}-{NAMES[1]}.gz"), labels[rows])
    return raw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source_dir", help="folder holding t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]")
    parser.add_argument("output_dir", help="data_dir to create (files go to OUTPUT_DIR/<dataset-folder>/raw)")
    parser.add_argument("num_train", type=int, nargs="?", default=8000, help="images for the train file")
    parser.add_argument("--num-test", type=int, default=None, help="test images: the last N (default: all the rest)")
    parser.add_argument("--dataset-folder", default="MNIST", help="MNIST or FashionMNIST (torchvision layout)")
    args = parser.parse_args(argv)
    raw = make_split(args.source_dir, args.output_dir, args.num_train, args.dataset_folder, args.num_test)
    print(f"wrote {raw}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
