"""LightningDataModules of the collection; each serves float images in [0, 1] on the training device."""

from datamodules.base import ImageDataModule
from datamodules.celeba import CelebADataModule
from datamodules.colored_mnist import (
    ColoredMNISTDataModule,
    PairedColoredMNISTDataModule,
    UnpairedColoredMNISTDataModule,
)
from datamodules.image_folder import ImageFolderDataModule
from datamodules.mnist import MNISTDataModule

__all__ = [
    "CelebADataModule",
    "ColoredMNISTDataModule",
    "ImageDataModule",
    "ImageFolderDataModule",
    "MNISTDataModule",
    "PairedColoredMNISTDataModule",
    "UnpairedColoredMNISTDataModule",
]
