import os

import pytest
import pytorch_lightning as pl
import torch

from datamodules import MNISTDataModule
from lightning_models.latent.few_label import FewLabelClassifier, balanced_label_draw, label_spreading
from lightning_models.latent.split_rows import image_fingerprint
from lightning_models.networks.mlp import MLP
from tests.helpers import REPO, last_checkpoint, run_cli, state_of, tiny_args
from tests.lightning_models.latent.fixtures import autoencoder_ckpt, latent_data  # noqa: F401 (fixtures)

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
    # and a third cluster, far from both, that no label reaches: its certainty is 0, whatever its pseudo-label
    features = torch.cat([features, torch.randn(20, 8, generator=gen) * 0.3 + torch.tensor([0.0, 9.0, *[0.0] * 6])])
    labelled = torch.tensor([0, 1])
    pseudo, certainty = label_spreading(features, labelled, truth[labelled], 2, 5, 0.99, 20)
    assert torch.equal(pseudo[:200], truth)
    assert certainty[200:].abs().max() == 0
    # within a labelled cluster the scores are nearly one-hot (entropy well below log 2's)
    assert certainty[:200].min() > 0.5 and certainty[labelled].min() > 0.9


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
        test = MNISTDataModule(data_dir=latent_data, val_size=8).split("test")  # the whole test split, by hand
        with torch.no_grad():
            predicted = model.eval()(test["image"].float() / 255).argmax(1)
        assert float(metrics["test/accuracy"]) == pytest.approx(float((predicted == test["label"]).float().mean()))


def test_bad_options(autoencoder_ckpt):
    with pytest.raises(ValueError, match="num_labels"):
        FewLabelClassifier(autoencoder_ckpt, num_labels=5)
    with pytest.raises(FileNotFoundError, match="--model.autoencoder_path"):
        FewLabelClassifier("missing/last.ckpt")
    with pytest.raises(ValueError, match="takes images"):
        FewLabelClassifier(autoencoder_ckpt, image_shape=(3, 28, 28))


class RelabelledMNIST(MNISTDataModule):
    """Tiny MNIST whose training batches carry random labels (`scramble`), or whose train split gives one
    labelled image another label (`relabel`: its row)."""

    def __init__(self, scramble: bool = False, relabel: int | None = None, **kwargs) -> None:
        super().__init__(val_size=8, batch_size=8, **kwargs)
        self.scramble, self.relabel = scramble, relabel
        self.label_rng = torch.Generator().manual_seed(123)  # its own: the global random state stays the run's

    def load_split(self, split):
        data = super().load_split(split)
        if split == "train" and self.relabel is not None:
            data = {**data, "label": data["label"].clone()}
            data["label"][self.relabel] = (data["label"][self.relabel] + 1) % 10
        return data

    def transform_batch(self, batch):
        if self.scramble:
            batch = {**batch, "label": torch.randint(0, 10, batch["label"].shape, generator=self.label_rng)}
        return batch


def test_labels_of_the_training_batches_are_never_read(latent_data, autoencoder_ckpt):
    """The labelled images' labels reach the model through the train split, read once to draw them (a
    class-balanced draw needs every label); the batches' labels must change nothing, while one labelled image's
    label does."""

    def fit_weights(datamodule):
        pl.seed_everything(0)
        model = FewLabelClassifier(autoencoder_ckpt, num_labels=10, hidden=[8], freeze_encoder=False)
        batch_labels = []
        model.on_train_batch_start = lambda batch, idx: batch_labels.append(batch["label"])
        trainer = pl.Trainer(max_steps=4, accelerator="cpu", logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
        trainer.fit(model, datamodule)
        return model.state_dict(), torch.cat(batch_labels)

    true, true_labels = fit_weights(RelabelledMNIST(data_dir=latent_data))
    scrambled, scrambled_labels = fit_weights(RelabelledMNIST(scramble=True, data_dir=latent_data))
    assert (true_labels != scrambled_labels).float().mean() > 0.5  # the batches did carry other labels
    assert true.keys() == scrambled.keys() and any(k.startswith("head.") for k in true)
    for key in true:  # head, fine-tuned encoder, BatchNorm statistics, the drawn subset: bit-identical
        assert torch.equal(true[key], scrambled[key]), key
    relabelled, _ = fit_weights(RelabelledMNIST(relabel=int(true["labelled_indices"][0]), data_dir=latent_data))
    assert any(not torch.equal(true[k], relabelled[k]) for k in true if k.startswith("head."))
