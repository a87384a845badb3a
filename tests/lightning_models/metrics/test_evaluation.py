"""Sample scores in a classifier's space: loading errors, Fréchet distance, coverage, conditional accuracy,
sampling."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from lightning_models.metrics.classifier import Classifier
from lightning_models.metrics.evaluation import ClassifierFeatures, SampleEvaluator, load_classifier, sample_in_chunks


@pytest.fixture
def test_split(trained_classifier):
    """(images float (256, 1, 16, 16) in [0, 1], labels (256,)) of the quadrant data, balanced over 4 classes."""
    split = trained_classifier.data.split("test")
    return split["image"].float() / 255, split["label"]


def evaluator(trained_classifier, conditional=False, **kwargs) -> SampleEvaluator:
    return SampleEvaluator(trained_classifier.path, num_classes=4, conditional=conditional, **kwargs)


# --- loading -------------------------------------------------------------------------------------------------
def test_load_classifier_is_frozen_and_in_eval_mode(trained_classifier):
    classifier = load_classifier(trained_classifier.path)
    assert isinstance(classifier, Classifier) and not classifier.training
    assert not any(p.requires_grad for p in classifier.parameters())


def test_load_classifier_missing_file_names_path_and_fix(tmp_path):
    path = str(tmp_path / "nothing.ckpt")
    with pytest.raises(FileNotFoundError) as info:
        load_classifier(path)
    assert path in str(info.value) and "configs/classifier_mnist.yaml" in str(info.value)


def test_load_classifier_rejects_other_files(tmp_path):
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="notes.ckpt.*not a Classifier checkpoint") as info:
        load_classifier(str(text))
    assert "configs/classifier_mnist.yaml" in str(info.value)

    class Other(pl.LightningModule):  # a valid Lightning checkpoint of some other model
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(2, 2)

    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(Other())
    other = tmp_path / "other.ckpt"
    trainer.save_checkpoint(other)
    with pytest.raises(ValueError, match="other.ckpt.*not a Classifier checkpoint"):
        load_classifier(str(other))


def test_evaluator_checks_num_classes(trained_classifier):
    with pytest.raises(ValueError, match="4 classes"):
        SampleEvaluator(trained_classifier.path, num_classes=10, conditional=False)


# --- the feature extractor --------------------------------------------------------------------------------------
def test_classifier_features_for_torchmetrics(trained_classifier, test_split):
    images, _ = test_split
    extractor = ClassifierFeatures(load_classifier(trained_classifier.path))
    fid = FrechetInceptionDistance(feature=extractor, normalize=True)  # num_features: no 299x299 probe
    assert fid.real_features_sum.shape == (extractor.num_features,) == (32,)
    features = extractor(images[:8])
    assert features.dtype == torch.float32 and features.shape == (8, 32)
    assert torch.allclose(features, trained_classifier.model.features(images[:8]))
    assert torch.equal(extractor(features), features)  # features pass through, so one pass serves FD and labels
    resized = extractor(torch.nn.functional.interpolate(images[:8], size=(32, 32), mode="bilinear"))
    assert resized.shape == (8, 32)  # other image sizes are resized to the classifier's
    with pytest.raises(ValueError, match="1-channel"):
        extractor(torch.rand(2, 2, 16, 16))  # RGB is scored by its stroke (below); other channel counts refused


def test_classifier_is_not_part_of_the_evaluator_state(trained_classifier):
    scorer = evaluator(trained_classifier)
    assert list(scorer.parameters()) == []  # no weights in the generative model's checkpoint or optimizer
    assert not any("net." in key for key in scorer.state_dict())
    scorer.train()  # as Lightning does before fitting: the classifier must stay in eval mode
    assert not scorer.extractor.classifier.training


# --- scores ---------------------------------------------------------------------------------------------------
def test_fid_is_zero_for_identical_sets_and_grows_with_distortion(trained_classifier, test_split):
    images, _ = test_split
    scorer = evaluator(trained_classifier)
    scores = {}
    for name, fake in {
        "same": images,
        "noise_0.1": (images + 0.1 * torch.randn_like(images)).clamp(0, 1),
        "noise_0.4": (images + 0.4 * torch.randn_like(images)).clamp(0, 1),
        "shifted": images.roll(shifts=(4, 4), dims=(2, 3)),
    }.items():
        scorer.update_real(images)
        for chunk in fake.split(100):  # several updates accumulate like several batches
            scorer.update_fake(chunk)
        scores[name] = float(scorer.compute()["fid_classifier"])
        scorer.reset()
    assert abs(scores["same"]) < 1e-3
    assert scores["noise_0.4"] > scores["noise_0.1"] > 100 * max(scores["same"], 1e-4)
    assert scores["shifted"] > 100 * max(scores["same"], 1e-4)


def test_coverage_balanced_and_collapsed(trained_classifier, test_split):
    images, labels = test_split
    scorer = evaluator(trained_classifier)
    scorer.update_real(images)
    scorer.update_fake(images)  # balanced classes, which the trained classifier recognises
    scores = scorer.compute()
    assert scores["class_coverage"] == 1.0
    assert 0.2 < scores["min_class_fraction"] <= 0.25
    assert 0.5 < scores["classifier_confidence"] <= 1.0
    assert "conditional_accuracy" not in scores

    scorer.reset(real=False)  # keeps the real side: a new set of samples only
    scorer.update_fake(images[labels == 2])  # mode collapse: every sample is a "2"
    scores = scorer.compute()
    assert scores["class_coverage"] == 0.25
    assert scores["min_class_fraction"] == 0.0

    scorer.reset()
    with pytest.raises(RuntimeError, match="at least 2 real"):
        scorer.compute()


def test_conditional_accuracy_and_confidence_match_hand_computation(trained_classifier, test_split):
    images, labels = test_split
    requested = labels.clone()
    requested[:60] = (requested[:60] + 1) % 4  # ask for the wrong class on some samples
    scorer = evaluator(trained_classifier, conditional=True)
    scorer.update_real(images, labels)
    for chunk, chunk_labels in zip(images.split(50), requested.split(50)):
        scorer.update_fake(chunk, chunk_labels)
    scores = scorer.compute()
    with torch.no_grad():
        probabilities = trained_classifier.model(images).softmax(dim=1)
    expected_accuracy = (probabilities.argmax(dim=1) == requested).float().mean()
    assert scores["conditional_accuracy"] == pytest.approx(float(expected_accuracy), abs=1e-6)
    assert 0.6 < float(expected_accuracy) < 0.8  # the wrong requests count as misses
    assert scores["classifier_confidence"] == pytest.approx(float(probabilities.max(dim=1).values.mean()), abs=1e-5)


def test_update_fake_checks_its_input(trained_classifier, test_split):
    images, labels = test_split
    with pytest.raises(ValueError, match="labels"):
        evaluator(trained_classifier, conditional=True).update_fake(images)
    with pytest.raises(ValueError, match="no labels"):
        evaluator(trained_classifier).update_fake(images, labels)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        evaluator(trained_classifier).update_fake(images * 2 - 1)  # samples left in tanh's [-1, 1]


# --- drawing samples --------------------------------------------------------------------------------------------
def test_sample_in_chunks_balanced_deterministic_labels():
    calls = []

    def sample(n, labels):
        calls.append((n, labels))
        return torch.zeros(n, 1, 16, 16)

    chunks = list(sample_in_chunks(sample, 100, 32, num_classes=10, conditional=True, device="cpu"))
    assert [len(images) for images, _ in chunks] == [32, 32, 32, 4]
    assert all(torch.equal(labels, called) for (_, labels), (_, called) in zip(chunks, calls))
    labels = torch.cat([labels for _, labels in chunks])
    assert torch.equal(labels.bincount(), torch.full((10,), 10))
    assert not torch.equal(labels, torch.arange(100) % 10)  # shuffled, so every chunk mixes classes
    again = torch.cat([y for _, y in sample_in_chunks(sample, 100, 32, 10, True, "cpu")])
    assert torch.equal(labels, again)
    shards = [torch.cat([y for _, y in sample_in_chunks(sample, 100, 32, 10, True, "cpu", rank=r, world_size=2)])
              for r in range(2)]
    assert torch.equal(torch.cat(shards).sort().values, labels.sort().values)  # ranks split one balanced list

    calls.clear()
    chunks = list(sample_in_chunks(sample, 50, 32, num_classes=10, conditional=False, device="cpu"))
    assert [labels for _, labels in chunks] == [None, None] and calls == [(32, None), (18, None)]


def test_evaluating_a_perfect_conditional_sampler(trained_classifier, test_split):
    """End to end: a "model" whose samples are real images of the requested class scores as a good model should."""
    images, labels = test_split
    gen = torch.Generator().manual_seed(0)

    def sample(n, requested):
        pick = [int(torch.nonzero(labels == c)[torch.randint(64, (1,), generator=gen)]) for c in requested]
        return images[pick]

    scorer = evaluator(trained_classifier, conditional=True)
    scorer.update_real(images, labels)
    for fake, requested in sample_in_chunks(sample, 200, 64, 4, conditional=True, device="cpu"):
        scorer.update_fake(fake, requested)
    scores = scorer.compute()
    assert scores["conditional_accuracy"] >= 0.95 and scores["class_coverage"] == 1.0
    scorer.reset(real=False)
    for fake, requested in sample_in_chunks(sample, 200, 64, 4, conditional=True, device="cpu"):
        scorer.update_fake((fake + 0.4 * torch.randn(fake.shape, generator=gen)).clamp(0, 1), requested)
    assert scores["fid_classifier"] < 0.2 * scorer.compute()["fid_classifier"]  # vs. a noisy sampler


def test_colored_images_are_scored_by_their_stroke(trained_classifier, test_split):
    # a digit painted in any named color has its gray image as brightest channel: same features, same scores
    from datamodules.colored_mnist import DEFAULT_PALETTE, paint

    images, labels = test_split
    colors = torch.arange(len(images)) % len(DEFAULT_PALETTE)
    painted = paint(images, torch.tensor(DEFAULT_PALETTE), colors)
    extractor = ClassifierFeatures(load_classifier(trained_classifier.path))
    assert torch.equal(extractor(painted), extractor(images))
    # a half-bright color is not its stroke: the check is on the brightest channel, not a per-image rescale
    assert not torch.allclose(extractor(painted * 0.5), extractor(images))
