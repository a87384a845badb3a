"""A small CNN classifier for MNIST-like images; its penultimate layer is the feature space of our Fréchet distance.

Inception-v3 features (the usual FID) are trained on ImageNet photos and say little about 28x28 digits; a classifier
trained on the dataset itself sees what matters there (stroke shapes, class identity) and runs in milliseconds.
"""

from __future__ import annotations

import torch.nn as nn
from torch import Tensor


def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class ClassifierNet(nn.Module):
    """Image (B, C, H, W) in [0, 1] -> class logits (B, num_classes), through `features` (B, num_features).

    Three stages of 3x3 convolutions (`width`, 2x, 4x channels) with two 2x2 max-pools, an adaptive pool to 3x3
    (so any side >= 16 works: 28, 32, 64 ...), a fully connected feature layer and a linear head.

    Args:
        in_channels: image channels (1 for MNIST).
        num_classes: number of classes.
        image_size: side of the input images (>= 16); only checked, the network adapts to the size.
        width: channels of the first stage.
        dropout: dropout before the head (the features themselves are deterministic in eval mode).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28, width: int = 32,
                 dropout: float = 0.3) -> None:
        super().__init__()
        if image_size < 16:
            raise ValueError(f"ClassifierNet needs images of side >= 16, got {image_size}")
        if in_channels < 1 or num_classes < 2 or width < 1:
            raise ValueError(f"ClassifierNet: bad sizes in_channels={in_channels}, num_classes={num_classes}, "
                             f"width={width}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.image_size = image_size
        #: size of the vectors returned by `features`.
        self.num_features = 4 * width
        self.trunk = nn.Sequential(
            _conv_block(in_channels, width), _conv_block(width, width), nn.MaxPool2d(2),
            _conv_block(width, 2 * width), _conv_block(2 * width, 2 * width), nn.MaxPool2d(2),
            _conv_block(2 * width, 4 * width), nn.AdaptiveAvgPool2d(3), nn.Flatten(),
            nn.Linear(4 * width * 9, self.num_features, bias=False), nn.BatchNorm1d(self.num_features),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.num_features, num_classes))

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations (B, num_features) of images (B, C, H, W) in [0, 1]."""
        return self.trunk(x * 2 - 1)  # centred input; the first BatchNorm takes care of the scale

    def forward(self, x: Tensor) -> Tensor:
        """Class logits (B, num_classes) of images (B, C, H, W) in [0, 1]."""
        return self.head(self.features(x))
