"""A folder of image files as a datamodule: your own images for `cli.py predict` (e.g. to denoise or inpaint
them with `GANInversion`), decoded once into uint8 tensors like every other datamodule."""

from __future__ import annotations

import os

import torch
from torch import Tensor

from datamodules.base import ImageDataModule

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def read_image_folder(folder: str, image_size: int, channels: int) -> Tensor:
    """uint8 (N, channels, image_size, image_size) of the images in `folder`, sorted by file name; each is
    converted to gray (1 channel) or RGB (3) and resized (bilinear) to a square of side `image_size`."""
    from PIL import Image

    if not os.path.isdir(folder):
        raise FileNotFoundError(f"--data.data_dir {folder!r}: no such folder. Point it at a folder of image files "
                                f"({', '.join(EXTENSIONS)})")
    names = sorted(n for n in os.listdir(folder)
                   if n.lower().endswith(EXTENSIONS) and os.path.isfile(os.path.join(folder, n)))
    if not names:
        raise FileNotFoundError(f"--data.data_dir {folder!r} holds no image files ({', '.join(EXTENSIONS)})")
    images, broken = [], []
    for name in names:
        try:
            with Image.open(os.path.join(folder, name)) as image:
                image = image.convert("L" if channels == 1 else "RGB").resize((image_size, image_size),
                                                                              Image.Resampling.BILINEAR)
                pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:  # PIL's corrupt/truncated
            broken.append(f"{name} ({err})")
            continue
        images.append(pixels.view(image_size, image_size, channels).permute(2, 0, 1))
    if broken:  # all of them at once, so one fix is enough
        listed = "; ".join(broken[:5]) + (f"; and {len(broken) - 5} more" if len(broken) > 5 else "")
        raise ValueError(f"--data.data_dir {folder!r}: {len(broken)} of {len(names)} image files cannot be decoded "
                         f"(corrupt or truncated): {listed}. Replace them with whole copies, or move them out of the "
                         "folder.")
    return torch.stack(images)


class ImageFolderDataModule(ImageDataModule):
    """Every image file of `data_dir` (sorted by name), as `{"image"}` batches without labels; every split
    (train, val, test, predict) is the whole folder.

    Args:
        data_dir: the folder of images.
        image_size: side the images are resized to (the model's: 28 for the MNIST models).
        channels: 1 (converted to gray, as MNIST) or 3 (RGB).
    """

    def __init__(self, data_dir: str = "images", batch_size: int = 64, eval_batch_size: int | None = None,
                 image_size: int = 28, channels: int = 1, download: bool = False, seed: int = 0) -> None:
        super().__init__(data_dir, batch_size, eval_batch_size, download, seed)
        if channels not in (1, 3):
            raise ValueError(f"--data.channels must be 1 (gray) or 3 (RGB), got {channels}")
        if image_size < 8:
            raise ValueError(f"--data.image_size must be >= 8, got {image_size}")
        self.image_shape = (channels, image_size, image_size)

    def load_split(self, split: str) -> dict[str, Tensor]:
        if split != "test":
            return self.split("test")  # one folder: decoded once, shared by every split
        return {"image": read_image_folder(self.data_dir, self.image_shape[1], self.image_shape[0])}
