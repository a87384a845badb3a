import os
import shutil

import pytest
import torch

from lightning_models.latent.interpolation import interpolate
from lightning_models.latent.latent_gan import LatentGAN
from tests.helpers import REPO, last_checkpoint, run_cli, state_of, tiny_args, upstream_checkpoint
from tests.lightning_models.latent.fixtures import autoencoder_ckpt, latent_data  # noqa: F401 (fixtures)

CGAN = os.path.join(REPO, "configs", "latent_cgan_mnist.yaml")


def test_interpolation_paths():
    a, b = torch.randn(4, 16), torch.randn(4, 16)
    for kind in ("linear", "slerp"):
        path = interpolate(a, b, 5, kind)
        assert path.shape == (4, 5, 16)
        torch.testing.assert_close(path[:, 0], a)
        torch.testing.assert_close(path[:, -1], b)
    torch.testing.assert_close(interpolate(a, b, 3, "linear")[:, 1], (a + b) / 2)
    unit_a, unit_b = torch.nn.functional.normalize(a, dim=1), torch.nn.functional.normalize(b, dim=1)
    norms = interpolate(unit_a, unit_b, 7, "slerp").norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones_like(norms))  # slerp stays on the sphere, lerp cuts through it
    assert interpolate(unit_a, unit_b, 7, "linear").norm(dim=-1)[:, 3].max() < 1
    torch.testing.assert_close(interpolate(a, 2 * a, 3, "slerp"), interpolate(a, 2 * a, 3, "linear"))  # parallel
    with pytest.raises(ValueError, match="kind"):
        interpolate(a, b, 3, "cubic")


def test_missing_or_wrong_autoencoder_checkpoint_is_a_clear_error(latent_data, tmp_path):
    missing = str(tmp_path / "no_ae" / "last.ckpt")
    with pytest.raises((FileNotFoundError, ValueError)) as err:  # the CLI lists the model's error in its own
        run_cli("fit", tiny_args(CGAN, latent_data, str(tmp_path / "runs"), "--model.autoencoder_path", missing))
    message = str(err.value)
    assert "--model.autoencoder_path" in message and missing in message
    assert "python cli.py fit --config configs/ae_mnist.yaml" in message
    classifier = upstream_checkpoint("classifier_mnist.yaml", latent_data)  # a checkpoint, but not an autoencoder's
    with pytest.raises(ValueError, match="not an Autoencoder checkpoint"):
        LatentGAN(classifier)


def test_fit_keeps_autoencoder_frozen_and_checkpoint_is_self_contained(latent_data, autoencoder_ckpt, tmp_path):
    ae_copy = str(tmp_path / "ae.ckpt")
    shutil.copy(autoencoder_ckpt, ae_copy)
    root = str(tmp_path / "runs")
    classifier = upstream_checkpoint("classifier_mnist.yaml", latent_data)
    args = tiny_args(CGAN, latent_data, root, "--model.autoencoder_path", ae_copy, "--model.classifier_path",
                     classifier)
    run_cli("fit", [*args, "--trainer.max_steps", "6"])
    ckpt = last_checkpoint(root)
    ae_state = state_of(ae_copy)["state_dict"]
    gan_state = state_of(ckpt)["state_dict"]
    for key, value in ae_state.items():  # the autoencoder is in the checkpoint, unchanged (BatchNorm stats too)
        assert torch.equal(gan_state[f"autoencoder.{key}"], value), key

    model = LatentGAN.load_from_checkpoint(ckpt)
    codes = model.real_inputs({"image": torch.rand(4, 1, 28, 28), "label": torch.arange(4)})[0]
    assert codes.shape == (4, model.hparams.autoencoder_hparams["latent_dim"])
    os.remove(ae_copy)  # loading must not need the autoencoder file any more
    again = LatentGAN.load_from_checkpoint(ckpt)
    labels = torch.tensor([0, 3, 7])
    torch.testing.assert_close(model.sample(3, labels, generator=torch.Generator().manual_seed(1)),
                               again.sample(3, labels, generator=torch.Generator().manual_seed(1)))
    # samples are the decoder's images of the generator's codes
    z = model.draw_latent(3, torch.Generator().manual_seed(1))
    model.eval()
    expected = model.autoencoder.decode(model.generator_ema.module(z, labels))
    torch.testing.assert_close(model.sample(3, labels, generator=torch.Generator().manual_seed(1)), expected)

    # the CLI builds the model from the config before it loads the checkpoint: point it at an autoencoder again
    args = tiny_args(CGAN, latent_data, root, "--model.classifier_path", classifier)
    metrics = run_cli("test", [*args, "--ckpt_path", ckpt]).trainer.callback_metrics
    for space in ("noise", "latent"):
        for kind in ("linear", "slerp"):
            value = float(metrics[f"test/interpolation_confidence_{space}_{kind}"])
            assert 0.1 <= value <= 1.0  # a mean max-softmax over 10 classes
    assert "test/conditional_accuracy" in metrics

    out = str(tmp_path / "pred")
    run_cli("predict", [*args, "--ckpt_path", ckpt, "--trainer.limit_predict_batches", "1",
                        "--trainer.callbacks.output_dir", out])
    written = set(os.listdir(out))
    assert {"interpolate_noise_linear", "interpolate_noise_slerp", "interpolate_latent_linear",
            "interpolate_latent_slerp", "class_0"} <= written


def test_mlp_label_conditions():
    from lightning_models.networks.mlp import MLP

    x = torch.randn(6, 5)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    for condition in ("concat", "projection"):
        critic = MLP(5, 1, (8,), num_classes=3, activation="leaky_relu", spectral=True, condition=condition)
        out = critic(x, labels)
        assert out.shape == (6,)
        assert not torch.allclose(out, critic(x, (labels + 1) % 3))  # the label changes the logit
    with pytest.raises(ValueError, match="projection"):
        MLP(5, 4, (8,), num_classes=3, condition="projection")


@pytest.mark.parametrize("cache_codes", [True, False])
def test_training_codes_are_encoded_once_and_looked_up(latent_data, autoencoder_ckpt, cache_codes):
    import pytorch_lightning as pl

    from datamodules import ColoredMNISTDataModule, MNISTDataModule
    from lightning_models.latent.split_rows import serves_split_images_unchanged

    torch.manual_seed(0)
    model = LatentGAN(autoencoder_ckpt, generator_width=16, discriminator_width=16, cache_codes=cache_codes,
                      classifier_path=None)
    dm = MNISTDataModule(data_dir=latent_data, batch_size=8, val_size=8)
    calls = []
    model.autoencoder.encoder.register_forward_hook(lambda module, args, out: calls.append(len(args[0])))
    trainer = pl.Trainer(max_steps=6, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         num_sanity_val_steps=0)
    trainer.fit(model, dm)
    train_images = dm.split("train")["image"]
    # cached: one pass over the split when fit starts, none per step; else one per batch (3 batches of 8)
    assert calls == ([len(train_images)] if cache_codes else [8, 8, 8])
    assert "_code_cache" not in model.__dict__  # dropped when fit ends

    model.cache_training_codes(train_images)
    batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    calls.clear()
    looked_up = model.real_inputs(batch)[0]
    assert calls == []
    torch.testing.assert_close(looked_up, model.autoencoder.encoder(batch["image"]), atol=1e-5, rtol=1e-5)
    other = torch.rand(4, 1, 28, 28)  # not in the split: encoded
    torch.testing.assert_close(model.real_inputs({"image": other, "label": torch.arange(4)})[0],
                               model.autoencoder.encoder(other))
    assert serves_split_images_unchanged(dm)
    assert not serves_split_images_unchanged(ColoredMNISTDataModule(data_dir=latent_data))  # painted per batch
