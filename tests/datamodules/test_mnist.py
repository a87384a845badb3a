"""MNISTDataModule: reading the torchvision layout, errors that name the file, splits, batches."""

from __future__ import annotations

import gzip
import os
import shutil
import socket
import urllib.error
import urllib.request

import pytest
import torch

from datamodules import MNISTDataModule, mnist
from datamodules.idx import read_idx

RAW = os.path.join("MNIST", "raw")


def make(data_dir: str, **kwargs) -> MNISTDataModule:
    """A small-batch MNISTDataModule that never uses the network (downloads are tested below with a stand-in)."""
    return MNISTDataModule(data_dir=data_dir, **{"batch_size": 8, "val_size": 16, "download": False, **kwargs})


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


# --- fetched on first use (`download` is on by default); no test uses the network ----------------------------------
def stand_in_torchvision(monkeypatch, dataset: str, source_dir: str, fail: Exception | None = None) -> list[str]:
    """Replaces torchvision's dataset class of `dataset` by one that "downloads" by copying the fixture files of
    `source_dir` (or writes half a file and raises `fail`, as a dropped connection does); returns the roots it
    was given."""
    tv_class, folder, names = mnist.DATASETS[dataset]
    calls = []

    def download(root, train=True, download=False):
        calls.append(root)
        raw = os.path.join(root, folder, "raw")
        os.makedirs(raw, exist_ok=True)
        for name in sorted(os.listdir(os.path.join(source_dir, folder, "raw"))):
            shutil.copy(os.path.join(source_dir, folder, "raw", name), raw)
            if fail is not None:
                with open(os.path.join(raw, name), "r+b") as f:
                    f.truncate(10)
                raise fail

    monkeypatch.setitem(mnist.DATASETS, dataset, (download, folder, names))
    return calls


@pytest.mark.parametrize("dataset, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_missing_files_are_fetched_on_first_use(dataset, folder, mnist_dir, tmp_path, monkeypatch, dir_listing):
    calls = stand_in_torchvision(monkeypatch, dataset, mnist_dir)
    data = tmp_path / "fresh"
    dm = MNISTDataModule(dataset=dataset, data_dir=str(data), batch_size=8, val_size=16)  # the default: download
    assert dm.download
    dm.prepare_data()
    dm.setup("fit")
    assert len(calls) == 1 and os.path.dirname(calls[0]) == str(data)  # fetched beside the folder, moved in
    assert sorted(os.listdir(data)) == [folder]  # nothing else left behind (the temporary folder is gone)
    expected = make(mnist_dir, dataset=dataset).split("train")["image"]
    assert torch.equal(dm.split("train")["image"], expected)
    before = dir_listing(str(data))
    again = MNISTDataModule(dataset=dataset, data_dir=str(data), batch_size=8, val_size=16)
    again.prepare_data()
    again.setup("fit")
    assert len(calls) == 1 and dir_listing(str(data)) == before  # present files are never fetched again


def test_failed_download_is_one_line_and_leaves_nothing_behind(mnist_dir, tmp_path, monkeypatch):
    offline = RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://mirror/, got:\n"
                           "<urlopen error [Errno -3] Temporary failure in name resolution>\n")
    stand_in_torchvision(monkeypatch, "mnist", mnist_dir, fail=offline)
    fresh, existing = tmp_path / "fresh", tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    for data in (fresh, existing):
        with pytest.raises(FileNotFoundError) as err:
            MNISTDataModule(data_dir=str(data)).prepare_data()
        message = str(err.value)
        assert "\n" not in message and message.startswith("mnist: could not download the missing files into")
        assert str(data / "MNIST" / "raw") in message and "Temporary failure in name resolution" in message
        assert "--data.download false" in message
    assert not fresh.exists()  # the folders the download made, and its half file, are gone
    assert os.listdir(existing) == ["notes.txt"]


def test_without_network_the_error_names_the_cause(tmp_path, monkeypatch):
    # the real torchvision class, with every URL failing as a DNS lookup does offline (nothing is sent)
    def offline(request, *args, **kwargs):
        raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(FileNotFoundError, match="could not download .*Temporary failure in name resolution"):
        MNISTDataModule(dataset="fashion_mnist", data_dir=str(tmp_path / "data")).setup("test")
    assert not (tmp_path / "data").exists()


def test_download_false_never_calls_torchvision(tmp_path, monkeypatch):
    calls = stand_in_torchvision(monkeypatch, "mnist", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="missing train-images-idx3-ubyte.gz"):
        make(str(tmp_path)).setup("fit")
    assert calls == []
