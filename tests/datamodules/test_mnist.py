"""MNISTDataModule: reading the torchvision layout, errors that name the file, splits, batches."""

from __future__ import annotations

import gzip
import os
import shutil

import pytest
import torch

from datamodules import MNISTDataModule
from datamodules.idx import read_idx

RAW = os.path.join("MNIST", "raw")


def make(data_dir: str, **kwargs) -> MNISTDataModule:
    return MNISTDataModule(data_dir=data_dir, **{"batch_size": 8, "val_size": 16, **kwargs})


def test_splits_sizes_and_batches(mnist_dir, batches_of):
    dm = make(mnist_dir)
    batches = batches_of(dm, "fit", "train")
    assert len(batches) == 48 // 8 == len(dm.train_dataloader())
    for batch in batches:
        assert batch["image"].shape == (8, 1, 28, 28) and batch["image"].dtype == torch.float32
        assert 0 <= batch["image"].min() and batch["image"].max() <= 1 and batch["image"].max() > 0.5
        assert batch["label"].dtype == torch.int64
    assert len(dm.split("val")["label"]) == 16
    dm.setup("test")
    assert len(dm.split("test")["label"]) == 32
    assert dm.image_shape == (1, 28, 28) and dm.num_classes == 10


def test_train_and_val_partition_the_training_file(mnist_dir):
    dm = make(mnist_dir)
    dm.setup("fit")
    full = read_idx(os.path.join(mnist_dir, RAW, "train-images-idx3-ubyte.gz"))
    served = torch.cat([dm.split("train")["image"], dm.split("val")["image"]])[:, 0]
    rows = lambda t: sorted(bytes(r.flatten().tolist()) for r in t)  # noqa: E731
    assert rows(served) == rows(full)  # every training image exactly once across train + val


def test_split_is_deterministic_per_seed(mnist_dir):
    val = lambda seed: make(mnist_dir, seed=seed).split("val")["image"]  # noqa: E731
    assert torch.equal(val(0), val(0))
    assert not torch.equal(val(0), val(1))


def test_image_size_resizes_once(mnist_dir, batches_of):
    dm = make(mnist_dir, image_size=32)
    batch = batches_of(dm, "validate", "val")[0]
    assert batch["image"].shape == (8, 1, 32, 32) and dm.image_shape == (1, 32, 32)


def test_fashion_mnist_reads_its_own_folder(mnist_dir):
    dm = make(mnist_dir, dataset="fashion_mnist")
    expected = read_idx(os.path.join(mnist_dir, "FashionMNIST", "raw", "t10k-images-idx3-ubyte.gz"))
    assert torch.equal(dm.split("test")["image"][:, 0], expected)
    assert not torch.equal(make(mnist_dir).split("test")["image"], dm.split("test")["image"])
    assert dm.class_names[9] == "Ankle boot"


def test_extracted_files_are_read_too(mnist_dir, tmp_path):
    other = tmp_path / "extracted"
    os.makedirs(other / RAW)
    for name in os.listdir(os.path.join(mnist_dir, RAW)):
        with gzip.open(os.path.join(mnist_dir, RAW, name)) as src, open(other / RAW / name[:-3], "wb") as dst:
            shutil.copyfileobj(src, dst)
    assert torch.equal(make(str(other)).split("test")["image"], make(mnist_dir).split("test")["image"])


def test_missing_file_names_folder_and_file(mnist_dir):
    os.remove(os.path.join(mnist_dir, RAW, "t10k-labels-idx1-ubyte.gz"))
    with pytest.raises(FileNotFoundError) as err:
        make(mnist_dir).setup("test")
    message = str(err.value)
    assert os.path.abspath(os.path.join(mnist_dir, RAW)) in message
    assert "t10k-labels-idx1-ubyte.gz" in message and "--data.download true" in message


def test_empty_data_dir_lists_every_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz"):
        make(str(tmp_path)).setup("fit")


def test_truncated_gz_raises_value_error_naming_the_file(mnist_dir):
    path = os.path.join(mnist_dir, RAW, "train-images-idx3-ubyte.gz")
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz") as err:
        make(mnist_dir).setup("fit")
    assert "corrupt or truncated" in str(err.value)


def test_bad_magic_raises_value_error_naming_the_file(mnist_dir):
    path = os.path.join(mnist_dir, RAW, "t10k-images-idx3-ubyte.gz")
    with gzip.open(path, "wb") as f:
        f.write(b"<html>quota exceeded</html>")
    with pytest.raises(ValueError, match="magic") as err:
        make(mnist_dir).setup("test")
    assert path in str(err.value)


def test_bad_options_are_rejected(mnist_dir):
    with pytest.raises(ValueError, match="--data.dataset"):
        make(mnist_dir, dataset="cifar10")
    with pytest.raises(ValueError, match="--data.val_size"):
        make(mnist_dir, val_size=64).setup("fit")


def test_nothing_is_written_into_the_data_dir(mnist_dir, dir_listing, batches_of):
    before = dir_listing(mnist_dir)
    dm = make(mnist_dir)
    dm.prepare_data()
    batches_of(dm, "fit", "train")
    batches_of(dm, "test", "test")
    assert dir_listing(mnist_dir) == before
