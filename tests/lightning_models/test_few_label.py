import os

import pytest
import torch

from datamodules import MNISTDataModule
from lightning_models.few_label import FewLabelClassifier, balanced_label_draw, label_spreading
from lightning_models.split_rows import image_fingerprint
from tests.helpers import REPO, last_checkpoint, run_cli, state_of, tiny_args
from tests.lightning_models.latent_fixtures import autoencoder_ckpt, latent_data  # noqa: F401 (fixtures)

CONFIG = os.path.join(REPO, "configs", "few_label_mnist.yaml")


def test_label_draw_is_balanced_and_reproducible():
    labels = torch.randint(0, 10, (2000,), generator=torch.Generator().manual_seed(1))
    drawn = balanced_label_draw(labels, 50, 10, seed=3)
    assert torch.equal(drawn, balanced_label_draw(labels, 50, 10, seed=3))
    assert len(drawn.unique()) == 50
    assert torch.bincount(labels[drawn], minlength=10).tolist() == [5] * 10
    assert not torch.equal(drawn, balanced_label_draw(labels, 50, 10, seed=4))
    counts = torch.bincount(labels[balanced_label_draw(labels, 53, 10, seed=0)], minlength=10)
    assert counts.sum() == 53 and set(counts.tolist()) == {5, 6}
    with pytest.raises(ValueError, match="class 9 has only 1"):
        balanced_label_draw(torch.cat([torch.arange(9).repeat(10), torch.tensor([9])]), 20, 10, seed=0)


def test_fingerprint_and_label_spreading():
    images = torch.randint(0, 256, (100, 1, 28, 28), generator=torch.Generator().manual_seed(0)).float() / 255
    keys = image_fingerprint(images)
    assert len(keys.unique()) == 100 and torch.equal(image_fingerprint(images[[5, 7]]), keys[[5, 7]])
    # two well-separated clusters, one label each: every point gets its cluster's label
    gen = torch.Generator().manual_seed(0)
    truth = torch.arange(200) % 2
    features = torch.randn(200, 8, generator=gen) * 0.3 + torch.where(truth[:, None] == 1, 3.0, -3.0)
    features[:, 1:] += torch.randn(200, 7, generator=gen) * 0.3
    labelled = torch.tensor([0, 1])
    pseudo, certainty = label_spreading(features, labelled, truth[labelled], 2, 5, 0.99, 20)
    assert torch.equal(pseudo, truth)
    assert certainty.min() >= 0 and certainty.max() <= 1


def encoder_state(state_dict, prefix):
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


@pytest.mark.parametrize("freeze", [True, False])
def test_fit_frozen_encoder_unchanged_and_test_accuracy(freeze, latent_data, autoencoder_ckpt, tmp_path):
    root = str(tmp_path / "runs")
    args = tiny_args(CONFIG, latent_data, root, "--model.autoencoder_path", autoencoder_ckpt,
                     "--model.freeze_encoder", str(freeze).lower())
    run_cli("fit", [*args, "--trainer.max_steps", "6"])
    ckpt = last_checkpoint(root)
    before = encoder_state(state_of(autoencoder_ckpt)["state_dict"], "encoder.")
    after = encoder_state(state_of(ckpt)["state_dict"], "encoder.")
    assert before.keys() == after.keys() and any("running_mean" in k for k in after)  # BatchNorm stats included
    same = all(torch.equal(before[k], after[k]) for k in before)
    assert same == freeze
    model = FewLabelClassifier.load_from_checkpoint(ckpt)
    assert model.hparams.autoencoder_hparams["latent_dim"] == 4
    # the drawn labelled subset is saved, and is the seeded balanced draw of the train split
    train_labels = MNISTDataModule(data_dir=latent_data, val_size=8).split("train")["label"]
    expected = balanced_label_draw(train_labels, 10, 10, seed=0)
    assert torch.equal(model.labelled_indices, expected)
    if freeze:
        metrics = run_cli("test", [*args, "--ckpt_path", ckpt]).trainer.callback_metrics
        assert 0.0 <= float(metrics["test/accuracy"]) <= 1.0


def test_bad_options(autoencoder_ckpt):
    with pytest.raises(ValueError, match="num_labels"):
        FewLabelClassifier(autoencoder_ckpt, num_labels=5)
    with pytest.raises(FileNotFoundError, match="--model.autoencoder_path"):
        FewLabelClassifier("missing/last.ckpt")
    with pytest.raises(ValueError, match="takes images"):
        FewLabelClassifier(autoencoder_ckpt, image_shape=(3, 28, 28))
