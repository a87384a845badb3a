"""The evaluation classifier: network shapes, augmentation, learning, logged names, checkpoint round trip."""

from __future__ import annotations

import pytest
import torch

from lightning_models.metrics.classifier import Classifier, random_translate
from lightning_models.networks.classifier import ClassifierNet


@pytest.mark.parametrize("channels,size", [(1, 16), (1, 28), (3, 32), (1, 64)])
def test_network_shapes(channels, size):
    net = ClassifierNet(channels, num_classes=7, image_size=size, width=4).eval()
    images = torch.rand(5, channels, size, size)
    assert net.features(images).shape == (5, net.num_features) == (5, 16)
    assert net(images).shape == (5, 7)


def test_network_rejects_tiny_images():
    with pytest.raises(ValueError, match="16"):
        ClassifierNet(image_size=8)


def test_random_translate_shifts_each_image_by_its_own_integer_offset():
    torch.manual_seed(0)
    images = torch.zeros(64, 2, 12, 12)
    images[:, :, 5, 6] = 1.0  # one bright pixel per image, both channels
    moved = random_translate(images, 2)
    assert moved.shape == images.shape
    assert torch.equal(moved.sum(dim=(2, 3)), images.sum(dim=(2, 3)))  # a pure shift: nothing lost or blurred
    positions = moved[:, 0].flatten(1).argmax(dim=1)
    dy, dx = positions // 12 - 5, positions % 12 - 6
    assert dy.abs().max() <= 2 and dx.abs().max() <= 2
    assert torch.equal(moved[:, 0], moved[:, 1])  # the same shift for every channel of an image
    assert len(set(zip(dy.tolist(), dx.tolist()))) > 10  # per-image offsets, not one for the batch
    assert torch.equal(random_translate(images, 0), images)


def test_learns_separable_data(trained_classifier):
    assert trained_classifier.test_metrics["test/accuracy"] >= 0.95
    assert trained_classifier.fit_metrics["val/accuracy"] >= 0.95


def test_logged_names(trained_classifier):
    assert {"train/loss", "train/accuracy", "val/loss", "val/accuracy"} <= set(trained_classifier.fit_metrics)
    assert {"test/loss", "test/accuracy"} <= set(trained_classifier.test_metrics)


def test_checkpoint_round_trip(trained_classifier):
    loaded = Classifier.load_from_checkpoint(trained_classifier.path).eval()
    assert loaded.image_shape == (1, 16, 16) and loaded.num_classes == 4 and loaded.hparams.width == 8
    images = trained_classifier.data.split("test")["image"][:32].float() / 255
    with torch.no_grad():
        assert torch.equal(loaded(images), trained_classifier.model(images))
        assert torch.equal(loaded.features(images), trained_classifier.model.features(images))
    assert loaded.features(images).shape == (32, loaded.num_features)


def test_predict_returns_labels(trained_classifier):
    predictions = torch.cat(trained_classifier.trainer.predict(trained_classifier.model, trained_classifier.data))
    labels = trained_classifier.data.split("test")["label"]
    assert predictions.dtype == torch.int64 and predictions.shape == labels.shape
    assert (predictions == labels).float().mean() >= 0.95


def test_image_shape_from_cli_list():
    model = Classifier(image_shape=[1, 20, 20], num_classes=3, width=4)  # jsonargparse may hand over a list
    assert model.image_shape == (1, 20, 20)
    assert model(torch.rand(2, 1, 20, 20)).shape == (2, 3)
    with pytest.raises(ValueError, match="image_shape"):
        Classifier(image_shape=(20, 20))
