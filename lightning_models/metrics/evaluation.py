"""What `cli.py test` reports for a generative model: scores of its samples in the space of a trained classifier.

- `fid_classifier`: Fréchet distance between real test images and samples, in the classifier's feature space
  (torchmetrics' FrechetInceptionDistance with the classifier as its feature extractor).
- `class_coverage`, `min_class_fraction`: how the samples' predicted classes spread over the classes
  (mode collapse shows up as missing classes).
- `conditional_accuracy`: for conditional models, how often the classifier agrees with the requested label.
- `classifier_confidence`: mean max softmax probability (blurry or garbled samples get low confidence).
- `precision_classifier`, `recall_classifier`: improved precision and recall (k-NN manifolds, k = 3): fidelity and
  diversity apart; `kid_classifier`: the kernel distance (KID); `diversity_classifier`: the samples' mean pairwise
  feature distance over the real images' (1 = as varied as the data, 0 = one image repeated).
- for conditional models, per class c (samples asked for c against real images of class c):
  `class_fid_classifier/<c>` with its mean and worst over the classes (`class_fid_classifier_mean`, `_worst`), and
  the within-class diversity ratio `class_diversity_classifier/<c>` (`class_diversity_classifier_mean`, `_worst`):
  a generator that draws one digit per class scores 100% conditional accuracy but a diversity near 0.

Every accumulated quantity is a torchmetrics state, so under DDP each rank updates with its own samples and
`compute()` reduces across ranks with no extra code.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.aggregation import MeanMetric
from torchmetrics.classification import MulticlassAccuracy
from torchmetrics.image.fid import FrechetInceptionDistance

from lightning_models.checkpoints import load_module
from lightning_models.metrics.classifier import Classifier
from lightning_models.metrics.feature_metrics import (LabelledFeatures, frechet_distance, kernel_distance,
                                                      mean_pairwise_distance, precision_recall)

TRAIN_HINT = "Train one with `python cli.py fit --config configs/classifier_mnist.yaml` (or the config of your dataset)"


def load_classifier(path: str) -> Classifier:
    """The Classifier saved at `path` (a checkpoint file, or a run root: its newest run's last.ckpt), on the CPU, in
    eval mode, with frozen weights.

    Every bad path (missing, unreadable, not a checkpoint, another model's, an older layout) is a FileNotFoundError,
    PermissionError or ValueError naming `--model.classifier_path`, the file, what is wrong and how to train one
    (`lightning_models.checkpoints`; weights-only, so a file cannot run code).
    """
    classifier = load_module(Classifier, path, "--model.classifier_path", TRAIN_HINT, map_location="cpu")
    classifier.eval()
    classifier.requires_grad_(False)
    return classifier


class ClassifierFeatures(nn.Module):
    """Feature extractor for torchmetrics' `FrechetInceptionDistance(feature=..., normalize=True)`.

    torchmetrics passes images to a custom extractor unchanged (`normalize` only rescales for its own Inception),
    so this takes float images in [0, 1] as the classifier does, and `num_features` spares torchmetrics its
    299x299 probe. Images of another side than the classifier's are resized to it; RGB images given to a gray
    classifier are scored by their brightest channel (a colored MNIST digit's gray stroke). A (B, num_features)
    input is taken as features computed already, so one classifier pass can serve both FD and the class predictions.

    The classifier is held outside the module tree on purpose: its weights would otherwise be saved in every
    generative model's checkpoint, counted in its parameters, and switched to train mode by Lightning (BatchNorm,
    dropout). It follows the input's device on the first call instead.

    Args:
        classifier: a trained Classifier (see `load_classifier`).
    """

    def __init__(self, classifier: Classifier) -> None:
        super().__init__()
        self.num_features = classifier.num_features
        self.image_shape = classifier.image_shape
        self.__dict__["_classifier"] = classifier.eval().requires_grad_(False)  # not a registered submodule

    @property
    def classifier(self) -> Classifier:
        """The wrapped classifier, on the device of the last input."""
        return self.__dict__["_classifier"]

    def _prepare(self, images: Tensor) -> Tensor:
        classifier = self.classifier
        if next(classifier.parameters()).device != images.device:
            classifier.to(images.device)
        if images.shape[1] == 3 and self.image_shape[0] == 1:
            # colored digits (colored MNIST): scored as their strokes, the brightest channel, which is the gray
            # image exactly for palette colors whose largest channel is 1 (every named color)
            images = images.amax(1, keepdim=True)
        if images.shape[1] != self.image_shape[0]:
            raise ValueError(f"the classifier takes {self.image_shape[0]}-channel images, got shape "
                             f"{tuple(images.shape)}; use a classifier trained on this dataset")
        images = images.float()
        if tuple(images.shape[-2:]) != self.image_shape[1:]:
            images = F.interpolate(images, size=self.image_shape[1:], mode="bilinear", antialias=True,
                                   align_corners=False)
        return images

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        """Features (B, num_features) in float32 of images (B, C, H, W) in [0, 1]."""
        if images.dim() == 2 and images.shape[1] == self.num_features:
            return images.float()
        # autocast off: metrics must not depend on the training precision
        with torch.autocast(images.device.type, enabled=False):
            return self.classifier.features(self._prepare(images))

    @torch.no_grad()
    def logits(self, features: Tensor) -> Tensor:
        """Class logits (B, num_classes) from `forward`'s features."""
        with torch.autocast(features.device.type, enabled=False):
            return self.classifier.net.head(features.float())


class ClassHistogram(Metric):
    """Counts of predicted labels per class, summed across ranks."""

    full_state_update = False

    def __init__(self, num_classes: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.add_state("counts", torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, labels: Tensor) -> None:
        self.counts += torch.bincount(labels.flatten(), minlength=self.num_classes)

    def compute(self) -> Tensor:
        return self.counts


class SampleEvaluator(nn.Module):
    """Accumulates real test images and generated samples, and computes the scores listed in the module doc.

    An `nn.Module` so that its metric states follow the LightningModule's device and sync under DDP. Typical use
    in a test epoch: `update_real(batch["image"], batch["label"])` per test batch, `update_fake(images, labels)`
    for the samples (see `sample_in_chunks`), `compute()` once at the end, then `reset()`.

    Args:
        classifier_path: checkpoint of a trained `Classifier` of the same dataset.
        num_classes: classes of the dataset (checked against the classifier's).
        conditional: whether samples come with requested labels (then `conditional_accuracy` is reported).
        coverage_threshold: a class counts as covered when at least this fraction of the samples is predicted in it.
    """

    def __init__(self, classifier_path: str, num_classes: int, conditional: bool,
                 coverage_threshold: float = 0.05) -> None:
        super().__init__()
        classifier = load_classifier(classifier_path)
        if classifier.num_classes != num_classes:
            raise ValueError(f"classifier {classifier_path!r} has {classifier.num_classes} classes, the data has "
                             f"{num_classes}: use a classifier trained on this dataset. {TRAIN_HINT}.")
        if not 0.0 <= coverage_threshold <= 1.0:
            raise ValueError(f"coverage_threshold must be in [0, 1], got {coverage_threshold}")
        self.num_classes = num_classes
        self.conditional = conditional
        self.coverage_threshold = coverage_threshold
        self.extractor = ClassifierFeatures(classifier)
        self.fid = FrechetInceptionDistance(feature=self.extractor, normalize=True)
        self.histogram = ClassHistogram(num_classes)
        self.confidence = MeanMetric()
        self.conditional_accuracy = MulticlassAccuracy(num_classes, average="micro") if conditional else None
        self.real_set = LabelledFeatures()  # features and true labels of the real images
        self.fake_set = LabelledFeatures()  # features and requested labels (or none) of the samples

    @staticmethod
    def _check_range(images: Tensor, what: str) -> None:
        low, high = images.aminmax()
        if low < -1e-3 or high > 1 + 1e-3:  # catches samples left in [-1, 1] (tanh) instead of [0, 1]
            raise ValueError(f"SampleEvaluator: {what} must be in [0, 1], got values in [{low:.3f}, {high:.3f}]")

    def update_real(self, images: Tensor, labels: Tensor | None = None) -> None:
        """Adds real images (B, C, H, W) in [0, 1] and their labels (B,) to the real side (the per-class scores
        of a conditional evaluator need the labels)."""
        if self.conditional and labels is None:
            raise ValueError("SampleEvaluator(conditional=True).update_real needs the real images' labels")
        self._check_range(images, "real images")
        features = self.extractor(images)
        self.fid.update(features, real=True)
        self.real_set.update(features, labels)

    def update_fake(self, images: Tensor, requested_labels: Tensor | None = None) -> None:
        """Adds generated images (B, C, H, W) in [0, 1]; `requested_labels` (B,) are required iff conditional."""
        if self.conditional and requested_labels is None:
            raise ValueError("SampleEvaluator(conditional=True).update_fake needs the labels the samples were "
                             "drawn for")
        if not self.conditional and requested_labels is not None:
            raise ValueError("SampleEvaluator(conditional=False).update_fake takes no labels")
        self._check_range(images, "generated images")
        features = self.extractor(images)  # one classifier pass for all scores
        self.fid.update(features, real=False)
        self.fake_set.update(features, requested_labels)
        probabilities = self.extractor.logits(features).softmax(dim=1)
        confidence, predicted = probabilities.max(dim=1)
        self.histogram.update(predicted)
        self.confidence.update(confidence)
        if self.conditional_accuracy is not None:
            self.conditional_accuracy.update(predicted, requested_labels.to(predicted.device).long())

    def compute(self) -> dict[str, Tensor]:
        """The scores over everything accumulated on all ranks (0-dim tensors, ready for `self.log_dict`)."""
        num_real, num_fake = int(self.fid.real_features_num_samples), int(self.fid.fake_features_num_samples)
        if num_real < 2 or num_fake < 2:  # checked on this rank's counts, before any collective call
            raise RuntimeError(f"SampleEvaluator needs at least 2 real and 2 generated images, got {num_real} "
                               f"and {num_fake}")
        fractions = self.histogram.compute().double()
        fractions = fractions / fractions.sum().clamp_min(1)
        scores = {
            "fid_classifier": self.fid.compute().float(),
            "class_coverage": (fractions >= self.coverage_threshold).float().mean(),
            "min_class_fraction": fractions.min().float(),
            "classifier_confidence": self.confidence.compute().float(),
        }
        if self.conditional_accuracy is not None:
            scores["conditional_accuracy"] = self.conditional_accuracy.compute().float()
        real, real_labels = self.real_set.compute()
        fake, fake_labels = self.fake_set.compute()
        scores.update(set_scores(real, fake))
        if self.conditional:
            scores.update(class_scores(real, real_labels, fake, fake_labels, self.num_classes))
        return scores

    def reset(self, real: bool = True) -> None:
        """Clears the accumulated samples; `real=False` keeps the real features, to reuse them with new samples."""
        self.fid.reset_real_features = real  # torchmetrics keeps the real side across resets when this is False
        self.fid.reset()
        self.fid.reset_real_features = True
        self.histogram.reset()
        self.confidence.reset()
        self.fake_set.reset()
        if real:
            self.real_set.reset()
        if self.conditional_accuracy is not None:
            self.conditional_accuracy.reset()


def set_scores(real: Tensor, fake: Tensor, k: int = 3) -> dict[str, Tensor]:
    """Precision, recall, KID and the diversity ratio of sample features `fake` against `real` (see the module
    doc); precision and recall need more than `k` points on each side and are left out otherwise."""
    scores = {"kid_classifier": kernel_distance(real, fake),
              "diversity_classifier": mean_pairwise_distance(fake) / mean_pairwise_distance(real)}
    if min(len(real), len(fake)) > k:
        scores["precision_classifier"], scores["recall_classifier"] = precision_recall(real, fake, k)
    return scores


def class_scores(real: Tensor, real_labels: Tensor, fake: Tensor, fake_labels: Tensor,
                 num_classes: int) -> dict[str, Tensor]:
    """Per class c: the Fréchet distance and the diversity ratio of the samples asked for c against the real
    images of class c, each with its mean and worst over the classes. A class with fewer than 2 real images or 2
    samples has no score (tiny test sets); the means are over the classes that have one."""
    fids, ratios = {}, {}
    for c in range(num_classes):
        real_c, fake_c = real[real_labels == c], fake[fake_labels == c]
        if min(len(real_c), len(fake_c)) < 2:
            continue
        fids[c] = frechet_distance(real_c, fake_c)
        ratios[c] = mean_pairwise_distance(fake_c) / mean_pairwise_distance(real_c).clamp_min(1e-12)
    if not fids:
        return {}
    scores = {f"class_fid_classifier/{c}": v for c, v in fids.items()}
    scores |= {f"class_diversity_classifier/{c}": v for c, v in ratios.items()}
    fid_values, ratio_values = torch.stack(list(fids.values())), torch.stack(list(ratios.values()))
    scores |= {"class_fid_classifier_mean": fid_values.mean(), "class_fid_classifier_worst": fid_values.max(),
               "class_diversity_classifier_mean": ratio_values.mean(),
               "class_diversity_classifier_worst": ratio_values.min()}
    return {k: v.float() for k, v in scores.items()}


def sample_in_chunks(sample_fn: Callable[..., Tensor], n: int, batch_size: int, num_classes: int,
                     conditional: bool, device: torch.device | str, seed: int = 0, rank: int = 0,
                     world_size: int = 1) -> Iterator[tuple[Tensor, Tensor | None]]:
    """Draws `n` samples as `(images, labels | None)` chunks of at most `batch_size`.

    Conditional models get balanced labels, `arange(n) % num_classes` in an order shuffled with `seed`, so every
    class is asked for equally and scores do not depend on label frequencies. Under DDP pass `rank` and
    `world_size`: each rank draws its share of the same label list. `sample_fn(k, labels)` is the model's
    `sample`; unconditional models get `labels=None`, as the `sample` contract allows.
    """
    if n < 1 or batch_size < 1:
        raise ValueError(f"sample_in_chunks: n and batch_size must be >= 1, got {n} and {batch_size}")
    labels = torch.arange(n) % num_classes
    labels = labels[torch.randperm(n, generator=torch.Generator().manual_seed(seed))][rank::world_size]
    for chunk in labels.split(batch_size):
        requested = chunk.to(device) if conditional else None
        yield sample_fn(len(chunk), requested), requested
