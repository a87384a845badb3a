"""CelebA robustness beyond tests/datamodules/test_celeba.py: damaged partition files, unusable JPEGs, a data_dir
that is a file, and the errors reaching the user through the CLI with the file named (issue 7)."""

from __future__ import annotations

import os

import pytest

from datamodules import CelebADataModule
from tests.helpers import REPO, run_cli, tiny_args


def make(data_dir: str) -> CelebADataModule:
    return CelebADataModule(data_dir=data_dir, batch_size=4, image_size=32, num_workers=0)


def partition_path(root: str) -> str:
    return os.path.join(root, "celeba", "list_eval_partition.txt")


def image_path(root: str, k: int) -> str:
    return os.path.join(root, "celeba", "img_align_celeba", f"{k:06d}.jpg")


def test_malformed_partition_line_names_file_and_line(celeba_dir):
    with open(partition_path(celeba_dir), "a") as f:
        f.write("000099.jpg 7\n")
    with pytest.raises(ValueError, match=r"list_eval_partition.txt, line 25: expected '<name>.jpg <0\|1\|2>'"):
        make(celeba_dir).setup("fit")


@pytest.mark.parametrize("split, stage", [("test", "test"), ("train", "fit")])
def test_split_without_images_is_an_error(celeba_dir, split, stage):
    split_id = {"train": "0", "test": "2"}[split]
    path = partition_path(celeba_dir)
    with open(path) as f:
        kept = [line for line in f if line.split()[1] != split_id]
    with open(path, "w") as f:
        f.writelines(kept)
    with pytest.raises(ValueError, match=f"lists no {split} images") as err:
        make(celeba_dir).setup(stage)
    assert os.path.abspath(path) in str(err.value)


def test_empty_partition_file_is_an_error(celeba_dir):
    open(partition_path(celeba_dir), "w").close()
    with pytest.raises(ValueError, match="list_eval_partition.txt lists no train images"):
        make(celeba_dir).setup("fit")


@pytest.mark.parametrize("damage", ["empty file", "directory"])
def test_unusable_jpeg_is_named(celeba_dir, damage):
    path = image_path(celeba_dir, 2)
    os.remove(path)
    if damage == "empty file":
        open(path, "wb").close()
    else:
        os.mkdir(path)
    with pytest.raises(ValueError, match="cannot decode this JPEG") as err:
        make(celeba_dir).setup("fit")
    assert path in str(err.value) and "img_align_celeba.zip" in str(err.value)


def test_data_dir_that_is_a_file_says_so(tmp_path):
    path = tmp_path / "celeba.zip"
    path.write_bytes(b"PK")
    with pytest.raises(FileNotFoundError, match="is a file: --data.data_dir takes the folder that holds celeba/"):
        make(str(path)).setup("fit")


@pytest.mark.parametrize("damage, expected", [
    ("partition", "list_eval_partition.txt is missing"),
    ("image", "000007.jpg"),
    ("corrupt", "000003.jpg: cannot decode this JPEG"),
])
def test_cli_reports_the_file(celeba_dir, tmp_path, damage, expected):
    if damage == "partition":
        os.remove(partition_path(celeba_dir))
    elif damage == "image":
        os.remove(image_path(celeba_dir, 7))
    else:
        with open(image_path(celeba_dir, 3), "wb") as f:
            f.write(b"\xff\xd8\xff garbage")
    config = os.path.join(REPO, "configs", "celeba_mixed_latent.yaml")
    with pytest.raises((FileNotFoundError, ValueError), match=expected):
        run_cli("fit", tiny_args(config, celeba_dir, str(tmp_path / "runs"), "--trainer.max_steps", "2"))
