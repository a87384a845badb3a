"""CelebADataModule on a 24-image folder in the official layout (see `make_celeba_dir` in tests/conftest.py)."""

from __future__ import annotations

import os

import pytest
import torch

import datamodules.celeba as celeba
from datamodules import CelebADataModule


def make(data_dir: str, **kwargs) -> CelebADataModule:
    return CelebADataModule(data_dir=data_dir, **{"batch_size": 4, "image_size": 32, "num_workers": 0, **kwargs})


def cat(batches: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {key: torch.cat([b[key] for b in batches]) for key in batches[0]}


def image_numbers(images: torch.Tensor) -> list[int]:
    """Which file each served image is: the fixture paints image k green at level 40 + 8 * (k - 1)."""
    levels = images[:, 1].float().mean((1, 2)) * (255 if images.dtype == torch.float32 else 1)
    return [round((level - 40) / 8) + 1 for level in levels.tolist()]


def test_partition_counts_and_batches(celeba_dir, batches_of):
    dm = make(celeba_dir)
    batches = batches_of(dm, "fit", "train")
    assert len(batches) == 16 // 4 and len(dm.split("val")["image"]) == 4
    for batch in batches:
        assert set(batch) == {"image"}  # no labels, no attributes unless asked
        assert batch["image"].shape == (4, 3, 32, 32) and batch["image"].dtype == torch.float32
        assert 0 <= batch["image"].min() and batch["image"].max() <= 1
    assert dm.image_shape == (3, 32, 32) and dm.num_classes == 0
    test = cat(batches_of(dm, "test", "test"))
    assert image_numbers(test["image"]) == [6, 12, 18, 24]  # k % 6 == 0, in file order
    assert image_numbers(dm.split("val")["image"]) == [5, 11, 17, 23]


def test_center_crop_then_resize(celeba_dir):
    cropped = make(celeba_dir, image_size=16).split("val")["image"].float() / 255
    assert cropped.shape == (4, 3, 16, 16)
    assert cropped[:, 0].mean() < 0.05  # the 148 crop lies inside the red frame
    square = make(celeba_dir, crop_size=None).split("val")["image"].float() / 255
    assert square[:, 0].mean() > 0.15  # the full 178 square reaches into it


def test_crop_larger_than_the_image_names_the_file(celeba_dir):
    with pytest.raises(ValueError, match="000001.jpg.*crop_size"):
        make(celeba_dir, crop_size=200).setup("fit")


def test_attributes_are_selected_in_order_and_aligned(celeba_dir, batches_of):
    dm = make(celeba_dir, attributes=["Smiling", "Male"])
    batch = cat(batches_of(dm, "test", "test"))
    numbers = torch.tensor(image_numbers(batch["image"]))
    assert batch["attributes"].dtype == torch.float32 and batch["attributes"].shape == (4, 2)
    assert torch.equal(batch["attributes"][:, 0], (numbers % 3 == 0).float())
    assert torch.equal(batch["attributes"][:, 1], (numbers % 2 == 0).float())
    train = cat(batches_of(dm, "fit", "train"))  # shuffled: rows still travel together
    numbers = torch.tensor(image_numbers(train["image"]))
    assert torch.equal(train["attributes"][:, 1], (numbers % 2 == 0).float())
    assert dm.num_attributes == 2


def test_unknown_attribute_lists_the_valid_names(celeba_dir):
    with pytest.raises(ValueError, match="'Smilling'") as err:
        make(celeba_dir, attributes=["Smilling"]).setup("fit")
    assert "5_o_Clock_Shadow" in str(err.value) and "Smiling" in str(err.value)


def test_parallel_decoding_matches(celeba_dir):
    assert torch.equal(make(celeba_dir, num_workers=2).split("train")["image"],
                       make(celeba_dir).split("train")["image"])


def fail_download(*args, **kwargs):
    raise RuntimeError("Too many users have viewed or downloaded this file recently")


def test_missing_data_folder_names_it_and_the_layout(tmp_path, monkeypatch):
    monkeypatch.setattr(celeba.torchvision.datasets, "CelebA", fail_download)  # must not be called: download=False
    with pytest.raises(FileNotFoundError) as err:
        make(str(tmp_path / "nowhere")).setup("fit")
    message = str(err.value)
    assert str(tmp_path / "nowhere") in message and "img_align_celeba" in message
    assert "list_eval_partition.txt" in message and "quota" in message and "--data.download true" in message


@pytest.mark.parametrize("where, hint", [
    ("celeba/img_align_celeba", "image folder itself"),
    ("celeba", "celeba folder itself"),
    ("..", "one level down"),
])
def test_wrong_data_dir_names_the_right_one(celeba_dir, where, hint):
    with pytest.raises(FileNotFoundError, match=hint) as err:
        make(os.path.normpath(os.path.join(celeba_dir, where))).setup("fit")
    assert f"--data.data_dir {celeba_dir}" in str(err.value)


def test_missing_partition_file_is_named(celeba_dir):
    os.remove(os.path.join(celeba_dir, "celeba", "list_eval_partition.txt"))
    with pytest.raises(FileNotFoundError, match="list_eval_partition.txt is missing"):
        make(celeba_dir).setup("fit")


def test_missing_attribute_file_is_named(celeba_dir):
    os.remove(os.path.join(celeba_dir, "celeba", "list_attr_celeba.txt"))
    make(celeba_dir).setup("fit")  # not needed without attributes
    with pytest.raises(FileNotFoundError, match="list_attr_celeba.txt is missing"):
        make(celeba_dir, attributes=["Male"]).setup("fit")


def test_failed_download_explains_the_quota_problem(tmp_path, monkeypatch):
    monkeypatch.setattr(celeba.torchvision.datasets, "CelebA", fail_download)
    with pytest.raises(RuntimeError, match="quota error") as err:
        make(str(tmp_path), download=True).prepare_data()
    assert "img_align_celeba.zip" in str(err.value) and "Too many users" in str(err.value)


def test_missing_image_is_named(celeba_dir):
    os.remove(os.path.join(celeba_dir, "celeba", "img_align_celeba", "000007.jpg"))
    with pytest.raises(FileNotFoundError, match="000007.jpg"):
        make(celeba_dir).setup("fit")


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_jpeg_is_named(celeba_dir, damage):
    path = os.path.join(celeba_dir, "celeba", "img_align_celeba", "000003.jpg")
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2] if damage == "truncate" else b"not a jpeg at all")
    with pytest.raises(ValueError, match="cannot decode") as err:
        make(celeba_dir).setup("fit")
    assert path in str(err.value)


def test_cache_is_written_outside_the_data_and_reused(celeba_dir, tmp_path, dir_listing, monkeypatch):
    before = dir_listing(celeba_dir)
    cache = tmp_path / "cache"
    first = make(celeba_dir, cache_dir=str(cache)).split("train")["image"]
    assert sorted(os.listdir(cache)) == ["celeba_train_32px_crop148.pt"]  # no temp file left behind
    assert dir_listing(celeba_dir) == before

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the cache was valid")

    with monkeypatch.context() as patch:
        patch.setattr(celeba, "decode_jpegs", no_decoding)
        assert torch.equal(make(celeba_dir, cache_dir=str(cache)).split("train")["image"], first)
    # A different partition changes the split's files: the cache must not be trusted.
    partition = os.path.join(celeba_dir, "celeba", "list_eval_partition.txt")
    with open(partition) as f:
        lines = f.read().splitlines()
    with open(partition, "w") as f:
        f.write("\n".join(line[:-1] + "2" if line.startswith("000001") else line for line in lines) + "\n")
    assert len(make(celeba_dir, cache_dir=str(cache)).split("train")["image"]) == 15


def test_cache_inside_the_data_folder_is_refused(celeba_dir):
    with pytest.raises(ValueError, match="--data.cache_dir"):
        make(celeba_dir, cache_dir=os.path.join(celeba_dir, "celeba", "cache"))


def test_nothing_is_written_into_the_data_dir(celeba_dir, dir_listing, batches_of):
    before = dir_listing(celeba_dir)
    dm = make(celeba_dir, attributes=["Young"])
    dm.prepare_data()
    batches_of(dm, "fit", "train")
    batches_of(dm, "test", "test")
    assert dir_listing(celeba_dir) == before
