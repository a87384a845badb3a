"""Fidelity and diversity scores on cases whose answer is known: hand-computed sets, real against real, a
generator that repeats one image (per class), and noise."""

from __future__ import annotations

import pytest
import torch

from lightning_models.metrics.evaluation import SampleEvaluator, class_scores
from lightning_models.metrics.feature_metrics import (frechet_distance, kernel_distance, knn_radii,
                                                      mean_pairwise_distance, precision_recall)


def gaussian(n: int, seed: int, dim: int = 8, shift: float = 0.0) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed)) + shift


# --- the functions, by hand --------------------------------------------------------------------------------------
def test_knn_radii_and_precision_recall_by_hand():
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0], [4.0]])
    assert torch.equal(knn_radii(real, k=1), torch.ones(5))
    assert torch.equal(knn_radii(real, k=2), torch.tensor([2.0, 1.0, 1.0, 1.0, 2.0]))
    fake = torch.tensor([[0.5], [10.0]])
    # 0.5 lies in the real balls, 10 does not; the two fake balls have radius 9.5 and hold every real point
    precision, recall = precision_recall(real, fake, k=1)
    assert float(precision) == 0.5 and float(recall) == 1.0
    # one fake point repeated: its ball has radius 0 and holds only the real point it sits on
    precision, recall = precision_recall(real, torch.tensor([[2.0]] * 4), k=1)
    assert float(precision) == 1.0 and float(recall) == pytest.approx(1 / 5)
    with pytest.raises(ValueError, match="more than 3 points"):
        knn_radii(real[:3], k=3)


def test_precision_recall_real_vs_real_collapsed_and_noise():
    real, other_real = gaussian(1500, 0), gaussian(1500, 1)
    precision, recall = precision_recall(real, other_real)
    assert precision > 0.8 and recall > 0.8  # the ceiling a good generator approaches
    collapsed = other_real[:1].repeat(1500, 1)  # one sample, drawn over and over
    precision, recall = precision_recall(real, collapsed)
    assert precision == 1.0 and recall < 0.01  # perfect fidelity, no diversity
    noise = gaussian(1500, 2, shift=6.0)  # somewhere else entirely
    precision, recall = precision_recall(real, noise)
    assert precision < 0.01 and recall < 0.01
    # half the samples good, half off the data: precision halves, recall stays
    half = torch.cat([other_real[:750], noise[:750]])
    precision, recall = precision_recall(real, half)
    assert 0.4 < precision < 0.5 + 1e-6 and recall > 0.6


def test_mean_pairwise_distance_and_its_ratio():
    assert float(mean_pairwise_distance(torch.tensor([[0.0, 0.0], [3.0, 4.0]]))) == pytest.approx(5.0)
    points = torch.tensor([[0.0], [1.0], [3.0]])  # distances 1, 3, 2
    assert float(mean_pairwise_distance(points)) == pytest.approx(2.0)
    real = gaussian(3000, 0)
    ratio = mean_pairwise_distance(gaussian(3000, 1)) / mean_pairwise_distance(real)
    assert float(ratio) == pytest.approx(1.0, abs=0.03)  # a subset of 2,000 is used: still the same spread
    assert float(mean_pairwise_distance(real[:1].repeat(10, 1))) == 0.0
    assert float(mean_pairwise_distance(0.5 * real) / mean_pairwise_distance(real)) == pytest.approx(0.5)


def test_frechet_and_kernel_distance_known_values():
    real = gaussian(2000, 0)
    shifted = real + torch.tensor([3.0] + [0.0] * 7)  # same covariance, mean moved by 3
    assert float(frechet_distance(real, shifted)) == pytest.approx(9.0, rel=1e-3)
    assert abs(float(frechet_distance(real, real))) < 1e-3
    same = kernel_distance(real, gaussian(2000, 1), subsets=20)
    far = kernel_distance(real, shifted, subsets=20)
    assert abs(float(same)) < 0.02 and float(far) > 50 * max(abs(float(same)), 1e-3)
    assert torch.equal(kernel_distance(real, shifted, subsets=5), kernel_distance(real, shifted, subsets=5))


def test_class_scores_see_collapse_inside_each_class():
    labels = torch.arange(2000) % 4
    centres = 5 * torch.eye(8)[:4]  # class c around 5 e_c
    real = gaussian(2000, 0) + centres[labels]
    other = gaussian(2000, 1) + centres[labels]
    good = class_scores(real, labels, other, labels, num_classes=4)
    assert good["class_diversity_classifier_worst"] > 0.95 and good["class_fid_classifier_worst"] < 0.5
    one_per_class = centres[labels]  # every sample of a class is the same point: the class's mean
    collapsed = class_scores(real, labels, one_per_class, labels, num_classes=4)
    assert collapsed["class_diversity_classifier_mean"] == 0.0
    assert collapsed["class_fid_classifier_mean"] > 5.0  # the covariance term: trace 8 of the missing spread
    swapped = class_scores(real, labels, other, (labels + 1) % 4, num_classes=4)  # right images, wrong labels
    assert swapped["class_fid_classifier_worst"] > 40
    assert set(good) >= {f"class_fid_classifier/{c}" for c in range(4)}
    assert class_scores(real, labels, other[:1], labels[:1], num_classes=4) == {}  # too few samples per class


# --- the evaluator of `cli.py test`, on the quadrant data's classifier ------------------------------------------
@pytest.fixture
def quadrant_sets(trained_classifier):
    """(test images, labels, val images, val labels) of the quadrant data, float in [0, 1]."""
    data = trained_classifier.data
    test, val = data.split("test"), data.split("val")
    return test["image"].float() / 255, test["label"], val["image"].float() / 255, val["label"]


def scores_of(trained_classifier, quadrant_sets, fake, fake_labels):
    images, labels, _, _ = quadrant_sets
    scorer = SampleEvaluator(trained_classifier.path, num_classes=4, conditional=True)
    scorer.update_real(images, labels)
    scorer.update_fake(fake, fake_labels)
    return {k: float(v) for k, v in scorer.compute().items()}


def test_evaluator_real_vs_real_is_the_ceiling_a_collapsed_generator_misses(trained_classifier, quadrant_sets):
    _, _, val, val_labels = quadrant_sets
    real = scores_of(trained_classifier, quadrant_sets, val, val_labels)
    assert real["conditional_accuracy"] > 0.9
    assert real["precision_classifier"] > 0.7 and real["recall_classifier"] > 0.7
    assert 0.8 < real["diversity_classifier"] < 1.25 and real["class_diversity_classifier_worst"] > 0.75

    # one image per class, repeated: perfect conditional accuracy, and every diversity score near 0
    first = torch.stack([val[val_labels == c][0] for c in range(4)])
    collapsed = scores_of(trained_classifier, quadrant_sets, first[val_labels], val_labels)
    assert collapsed["conditional_accuracy"] >= real["conditional_accuracy"] - 0.05
    assert collapsed["recall_classifier"] < 0.1 and collapsed["class_diversity_classifier_worst"] == 0.0
    assert collapsed["diversity_classifier"] > 0.8  # the spread between classes hides it: hence the class scores
    assert collapsed["class_fid_classifier_mean"] > 3 * real["class_fid_classifier_mean"]

    one_image = scores_of(trained_classifier, quadrant_sets, first[:1].expand_as(val), val_labels)
    assert one_image["diversity_classifier"] == 0.0 and one_image["recall_classifier"] < 0.01

    noise = torch.rand(val.shape, generator=torch.Generator().manual_seed(0))
    noisy = scores_of(trained_classifier, quadrant_sets, noise, val_labels)
    assert noisy["precision_classifier"] < 0.1 and noisy["recall_classifier"] < 0.1
    assert noisy["fid_classifier"] > 10 * real["fid_classifier"]
    assert noisy["kid_classifier"] > 10 * real["kid_classifier"]


def test_conditional_evaluator_needs_real_labels(trained_classifier, quadrant_sets):
    images = quadrant_sets[0]
    with pytest.raises(ValueError, match="real images' labels"):
        SampleEvaluator(trained_classifier.path, num_classes=4, conditional=True).update_real(images)
