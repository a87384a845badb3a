import os

import pytest
import torch

from datamodules import MNISTDataModule
from lightning_models.latent.autoencoder import Autoencoder, load_autoencoder
from tests.helpers import REPO, last_checkpoint, run_cli, tiny_args
from tests.lightning_models.latent.fixtures import autoencoder_ckpt, latent_data  # noqa: F401 (fixtures)

CONFIG = os.path.join(REPO, "configs", "ae_mnist.yaml")


def test_encode_decode_contract():
    model = Autoencoder(width=4, latent_dim=6)
    images = torch.rand(5, 1, 28, 28)
    codes = model.encode(images)
    assert codes.shape == (5, 6) and not codes.requires_grad
    decoded = model.decode(codes)
    assert decoded.shape == images.shape and decoded.min() >= 0 and decoded.max() <= 1
    assert model.training  # encode/decode switch to eval and back
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.encode(images * 2 - 1)
    with pytest.raises(ValueError, match="shape"):
        model.decode(torch.zeros(2, 5))


def test_training_input_is_corrupted_and_invalid_options_are_refused():
    model = Autoencoder(width=4, latent_dim=4, augment_shift=0, input_dropout=0.5)
    images = torch.ones(4, 1, 28, 28)
    zeroed = (model.corrupt(images) == 0).float().mean()
    assert 0.4 < zeroed < 0.6
    with pytest.raises(ValueError, match="input_dropout"):
        Autoencoder(input_dropout=1.0)


def test_fit_reconstructs_and_checkpoint_round_trips(latent_data, tmp_path):
    root = str(tmp_path / "runs")
    run_cli("fit", tiny_args(CONFIG, latent_data, root, "--trainer.max_steps", "40", "--model.width", "8",
                             "--model.lr", "3e-3"))
    ckpt = last_checkpoint(root)
    model, again = Autoencoder.load_from_checkpoint(ckpt), Autoencoder.load_from_checkpoint(ckpt)
    images = MNISTDataModule(data_dir=latent_data).split("test")["image"].float() / 255
    recon = model.decode(model.encode(images))
    torch.testing.assert_close(recon, again.decode(again.encode(images)))
    untrained = Autoencoder(**model.hparams)
    error = torch.nn.functional.mse_loss(recon, images)
    assert error < 0.5 * torch.nn.functional.mse_loss(untrained.decode(untrained.encode(images)), images)
    metrics = run_cli("test", tiny_args(CONFIG, latent_data, root, "--model.width", "8", "--ckpt_path", ckpt))
    assert float(metrics.trainer.callback_metrics["test/mse"]) == pytest.approx(float(error), rel=1e-4)


def test_load_autoencoder_errors_name_option_path_and_fix(tmp_path, autoencoder_ckpt):
    missing = str(tmp_path / "nope.ckpt")
    with pytest.raises(FileNotFoundError) as err:
        load_autoencoder(missing)
    assert "--model.autoencoder_path" in str(err.value) and missing in str(err.value)
    assert "configs/ae_mnist.yaml" in str(err.value)
    with pytest.raises(ValueError, match="--model.autoencoder_path is required"):
        load_autoencoder(None)
    wrong = tmp_path / "wrong.ckpt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "hyper_parameters": {}}, wrong)
    with pytest.raises(ValueError, match="not an Autoencoder checkpoint"):
        load_autoencoder(str(wrong))
    model = load_autoencoder(os.path.dirname(os.path.dirname(os.path.dirname(autoencoder_ckpt))))  # a run root
    assert not model.training and not any(p.requires_grad for p in model.parameters())
