"""ImageFolderDataModule: a folder of image files, decoded once, resized, gray or RGB, with clear errors."""

import pytest
import torch
from PIL import Image

from datamodules import ImageFolderDataModule


def write_images(folder, sizes):
    folder.mkdir()
    for i, (w, h) in enumerate(sizes):
        pixels = torch.full((h, w, 3), 40 * (i + 1), dtype=torch.uint8)
        pixels[..., 0] = 200  # a red channel, so gray and RGB differ
        Image.fromarray(pixels.numpy()).save(folder / f"img_{i}.png")
    (folder / "notes.txt").write_text("not an image")


def test_reads_resizes_and_serves_every_image_of_the_folder(tmp_path, batches_of):
    write_images(tmp_path / "imgs", [(40, 40), (28, 28), (50, 30)])
    dm = ImageFolderDataModule(str(tmp_path / "imgs"), batch_size=2, image_size=28)
    assert dm.image_shape == (1, 28, 28) and dm.num_classes == 0
    batches = batches_of(dm, "predict", "predict")
    images = torch.cat([b["image"] for b in batches])
    assert [len(b["image"]) for b in batches] == [2, 1] and images.shape == (3, 1, 28, 28)
    assert set(batches[0]) == {"image"}
    # uniform images stay uniform after resizing; gray = 0.299 R + 0.587 G + 0.114 B (PIL), in file-name order
    expected = torch.tensor([(0.299 * 200 + 0.701 * 40 * (i + 1)) / 255 for i in range(3)])
    torch.testing.assert_close(images.mean((1, 2, 3)), expected, atol=2 / 255, rtol=0)
    rgb = ImageFolderDataModule(str(tmp_path / "imgs"), image_size=16, channels=3)
    rgb.setup("test")
    assert rgb.split("test")["image"].shape == (3, 3, 16, 16)
    assert rgb.split("test")["image"][0, 0].eq(200).all()


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="--data.data_dir .*nowhere.*no such folder"):
        ImageFolderDataModule(str(tmp_path / "nowhere")).setup("predict")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no image files"):
        ImageFolderDataModule(str(tmp_path / "empty")).setup("predict")
    with pytest.raises(ValueError, match="--data.channels"):
        ImageFolderDataModule(str(tmp_path), channels=2)
