"""GANInversion: frozen generator, encoder-only gradients, checkpoints without the GAN file, clear errors, and
every predict task and `test` through the real CLI on tiny data."""

import math
import os
import shutil

import pytest
import torch
from PIL import Image

from lightning_models import GAN, GANInversion
from lightning_models.inversion.inversion import load_generator_checkpoint
from lightning_models.inversion.restoration import center_mask, corrupt
from tests.conftest import make_mnist_dir
from tests.helpers import REPO, last_checkpoint, run_cli, state_of, tiny_args, upstream_checkpoint
from tests.lightning_models.inversion.fixtures import known_inverter, psnr, range_images

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
CONFIG = os.path.join(REPO, "configs", "inversion_mnist.yaml")


@pytest.fixture(scope="module")
def data_and_gan(tmp_path_factory):
    """(tiny MNIST data_dir, a tiny DCGAN checkpoint trained 4 steps on it), shared by this file's tests."""
    data = make_mnist_dir(str(tmp_path_factory.mktemp("inversion") / "data"))
    return data, upstream_checkpoint("dcgan_mnist.yaml", data)


@pytest.fixture(scope="module")
def trained(data_and_gan, tmp_path_factory):
    """last.ckpt of the inversion config trained 4 steps through the CLI."""
    data, _ = data_and_gan
    root = str(tmp_path_factory.mktemp("inversion_runs"))
    run_cli("fit", tiny_args(CONFIG, data, root, "--trainer.max_steps", "4"))
    return last_checkpoint(root)


def test_generator_is_the_gans_ema_generator_and_stays_frozen(data_and_gan, trained):
    _, gan_path = data_and_gan
    gan_state, ckpt_state = state_of(gan_path)["state_dict"], state_of(trained)["state_dict"]
    assert int(gan_state["generator_ema.n_averaged"]) > 0
    generator_keys = [k for k in ckpt_state if k.startswith("generator.")]
    assert generator_keys
    for key in generator_keys:  # fit left every generator weight (and BatchNorm statistic) as the GAN's EMA
        torch.testing.assert_close(ckpt_state[key], gan_state["generator_ema.module." + key[len("generator."):]])


def test_gradients_reach_only_the_encoder(data_and_gan):
    _, gan_path = data_and_gan
    model = GANInversion(gan_path=gan_path, encoder_width=4).train()
    assert not model.generator.training and model.encoder.training
    batch = {"image": torch.rand(4, 1, 28, 28), "label": torch.zeros(4, dtype=torch.long)}
    model.training_step(batch, 0).backward()
    assert all(p.grad is None for p in model.generator.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())
    optimizer = model.configure_optimizers()
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == {id(p) for p in model.encoder.parameters()}


def test_feature_loss_reaches_only_the_encoder(data_and_gan):
    data, gan_path = data_and_gan
    with pytest.raises(ValueError, match="--model.feature_weight > 0 needs --model.classifier_path"):
        GANInversion(gan_path=gan_path, feature_weight=1.0)
    classifier_path = upstream_checkpoint("classifier_mnist.yaml", data)
    model = GANInversion(gan_path=gan_path, encoder_width=4, feature_weight=1.0, reconstruction_weight=0.0,
                         latent_weight=0.0, classifier_path=classifier_path).train()
    model.on_fit_start()
    classifier = model.__dict__["_features"].classifier
    batch = {"image": torch.rand(4, 1, 28, 28), "label": torch.zeros(4, dtype=torch.long)}
    loss = model.training_step(batch, 0)
    assert loss > 0
    loss.backward()
    assert all(p.grad is None for p in [*model.generator.parameters(), *classifier.parameters()])
    assert all(p.grad is not None for p in model.encoder.parameters())
    assert not any(k.startswith("_features") or "classifier" in k for k in model.state_dict())


def test_checkpoint_loads_without_the_gan_file(data_and_gan, trained, tmp_path):
    _, gan_path = data_and_gan
    gan_copy = tmp_path / "gan.ckpt"
    shutil.copy(gan_path, gan_copy)
    model = GANInversion(gan_path=str(gan_copy), encoder_width=4)
    path = tmp_path / "inversion.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": "2.6.6"}, path)
    os.remove(gan_copy)
    loaded = GANInversion.load_from_checkpoint(str(path))  # no arguments, GAN file gone
    images = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    model.eval(), loaded.eval()
    torch.testing.assert_close(loaded.decode(loaded.encode(images)), model.decode(model.encode(images)))
    ema = GAN.load_from_checkpoint(gan_path).generator_ema.module.eval()
    z = torch.randn(3, loaded.latent_dim)
    torch.testing.assert_close(loaded.generator(z), ema(z))


def test_missing_or_wrong_gan_checkpoint_errors(data_and_gan, tmp_path):
    data, _ = data_and_gan
    missing = str(tmp_path / "nope.ckpt")
    message = r"--model.gan_path .*nope.ckpt.: no such GAN checkpoint.*configs/dcgan_mnist.yaml"
    with pytest.raises(FileNotFoundError, match=message):
        GANInversion(gan_path=missing)
    with pytest.raises(ValueError, match=message):  # the CLI reports it among the model's validation errors
        run_cli("fit", tiny_args(CONFIG, data, str(tmp_path / "runs"), "--model.gan_path", missing))
    junk = tmp_path / "junk.ckpt"
    junk.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="is not a GAN checkpoint.*dcgan_mnist.yaml"):
        load_generator_checkpoint(str(junk))
    torch.save({"state_dict": {}, "hyper_parameters": {"width": 8}}, tmp_path / "classifier.ckpt")
    with pytest.raises(ValueError, match="is not a GAN checkpoint"):
        load_generator_checkpoint(str(tmp_path / "classifier.ckpt"))


def test_inpainting_keeps_known_pixels_and_denoising_improves():
    # the linear generator of inversion/fixtures.py: its range holds the images, so both answers are known
    model = known_inverter(optim_steps=100, restarts=2, predict_task="inpaint", mask="blocks", num_blocks=2,
                           block_size=5)
    images = range_images(model, 3)
    with torch.inference_mode():
        out = model.predict_step({"image": images}, 0)
    assert out["strips"].shape == (1, 3, 2 + 3 * 30, 2 + 4 * 28 + 2)  # one grid, a row per image
    mask = model.make_mask(3, torch.Generator().manual_seed(0))  # the same seed as predict batch 0
    restored = out["restored"]
    assert torch.equal(restored * mask, images * mask)  # the known pixels are kept
    assert ((1 - mask).flatten(1).sum(1) >= 25).all()  # each image has holes (its blocks may overlap)...
    torch.testing.assert_close(restored, images, atol=1e-2, rtol=0)  # ...filled with the truth: the rest fix z
    for i in range(3):  # row i of the grid: original | ... | restored
        row = out["strips"][0, :1, 2 + 30 * i : 30 + 30 * i, 2 : 2 + 4 * 28]
        torch.testing.assert_close(row[..., :28], images[i])
        torch.testing.assert_close(row[..., 84:], restored[i])

    model = known_inverter(model.generator, optim_steps=100, restarts=2, predict_task="denoise", sigma=0.3)
    noisy = corrupt(images, "denoise", 0.3, generator=torch.Generator().manual_seed(0))  # predict's, batch 0
    with torch.inference_mode():
        denoised = model.predict_step({"image": images}, 0)["restored"]
    # the least-squares fit (no prior) of the noisy image is its projection onto the range
    projection = model.decode(model.generator.least_squares(noisy * 2 - 1))
    torch.testing.assert_close(denoised, projection, atol=1e-2, rtol=0)
    # which keeps 8 of the 784 dimensions of the noise: 10 log10(784 / 8) = 19.9 dB in expectation, measured
    # +21.0 dB on these 3 images; skipping the fit (the untrained encoder's guess, an image of the range) +11.4
    assert psnr(denoised, images) - psnr(noisy, images) > 15


def test_invert_combines_the_restarts_images_and_rejects_a_bad_combine_option(data_and_gan):
    _, gan_path = data_and_gan
    for options, message in [({"combine": "median"}, "--model.combine must be best or mean, got 'median'"),
                             ({"combine_temperature": -1.0}, "--model.combine_temperature must be > 0"),
                             ({"combine_top_k": 0}, "--model.combine_top_k must be >= 1")]:
        with pytest.raises(ValueError, match=message):
            GANInversion(gan_path=gan_path, **options)
    model = GANInversion(gan_path=gan_path, encoder_width=4, optim_steps=3, restarts=3,
                         combine_temperature=0.05).eval()
    mask = center_mask((1, 28, 28), 10)
    observed = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * mask
    seed = lambda: torch.Generator().manual_seed(1)  # noqa: E731  the same restarts in every call
    latents, images, losses = model.invert_restarts(observed, "hybrid", mask, "l2", seed())
    assert latents.shape == (3, 2, model.latent_dim) and images.shape == (3, 2, 1, 28, 28) and losses.shape == (3, 2)
    for r in range(3):
        torch.testing.assert_close(images[r], model.decode(latents[r]))
    winner = losses.argmin(0), torch.arange(2)
    z, best = model.invert(observed, "hybrid", mask, "l2", seed())  # combine="best"
    torch.testing.assert_close(z, latents[winner])
    torch.testing.assert_close(best, images[winner])
    z, mean = model.invert(observed, "hybrid", mask, "l2", seed(), combine="mean")
    torch.testing.assert_close(z, latents[winner])  # the latents are the best restart's either way
    weights = torch.softmax(-losses / 0.05, dim=0)[..., None, None, None]
    torch.testing.assert_close(mean, (weights * images).sum(0))
    assert not torch.allclose(mean, best)


@pytest.mark.parametrize("task", ["reconstruct", "denoise", "inpaint"])
def test_predict_tasks_through_the_cli(task, data_and_gan, trained, tmp_path):
    data, _ = data_and_gan
    out = str(tmp_path / "pred")
    run_cli("predict", tiny_args(CONFIG, data, str(tmp_path / "runs"), "--ckpt_path", trained,
                                 "--model.predict_task", task, "--trainer.limit_predict_batches", "2",
                                 "--data.eval_batch_size", "4", "--trainer.callbacks.output_dir", out))
    assert sorted(os.listdir(out)) == ["restored", "strips"]
    for name in ("restored", "strips"):
        assert sorted(os.listdir(os.path.join(out, name))) == ["batch_0000.png", "batch_0001.png"]
    with Image.open(os.path.join(out, "strips", "batch_0000.png")) as strip:  # a row per image, 4 panels each
        assert strip.size == (2 + 4 * 28 + 2, 2 + 4 * (28 + 2))  # 4 images, padding 2 (the writer adds none to one)
        pixels = torch.tensor(list(strip.convert("L").getdata()), dtype=torch.float).view(strip.size[1], -1)
    original, corrupted = pixels[2:30, 2:30], pixels[2:30, 30:58]  # the first image's first two panels
    if task == "reconstruct":
        assert torch.equal(corrupted, original)
    elif task == "denoise":
        assert (corrupted - original).abs().mean() > 0.1 * 255  # noise of std 0.3 (clipped)
    else:  # the centred 10x10 hole is shown mid-gray, the rest is the original
        assert (corrupted[9:19, 9:19] == 128).all() and torch.equal(corrupted[:9], original[:9])


def test_predict_on_a_folder_with_a_mask_file_and_a_wrong_mask(data_and_gan, trained, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        Image.fromarray((torch.rand(40, 40) * 255).byte().numpy()).save(folder / f"photo_{i}.png")
    good, bad = tmp_path / "mask.png", tmp_path / "bad_mask.png"
    pixels = torch.full((28, 28), 255, dtype=torch.uint8)
    pixels[5:15, 5:15] = 0
    Image.fromarray(pixels.numpy()).save(good)
    Image.fromarray(torch.zeros(20, 20, dtype=torch.uint8).numpy()).save(bad)
    out = str(tmp_path / "pred")
    _, gan_path = data_and_gan
    base = ["--config", CONFIG, "--data", "datamodules.ImageFolderDataModule", "--data.data_dir", str(folder),
            "--model.gan_path", gan_path, "--model.encoder_width", "4", "--model.optim_steps", "3",
            "--model.restarts", "2", "--trainer.default_root_dir", str(tmp_path / "runs"), "--trainer.logger",
            "false", "--trainer.accelerator", "cpu", "--ckpt_path", trained, "--model.predict_task", "inpaint",
            "--model.mask", "file", "--trainer.callbacks.output_dir", out]
    run_cli("predict", [*base, "--model.mask_path", str(good)])
    assert os.listdir(os.path.join(out, "restored")) == ["batch_0000.png"]
    with pytest.raises(ValueError, match=r"--model.mask_path .*bad_mask.png.* 20x20 .* 28x28"):
        run_cli("predict", [*base, "--model.mask_path", str(bad)])


def test_cli_test_reports_every_score(data_and_gan, trained, tmp_path):
    data, _ = data_and_gan
    cli = run_cli("test", tiny_args(CONFIG, data, str(tmp_path / "runs"), "--ckpt_path", trained,
                                    "--data.eval_batch_size", "4", "--trainer.limit_test_batches", "2"))
    metrics = cli.trainer.callback_metrics
    expected = ["psnr_encoder", "psnr_optim", "psnr_hybrid", "ssim_hybrid", "loss_optim", "psnr_denoise_sigma0.3",
                "psnr_noisy_sigma0.5", "psnr_inpaint_hole", "psnr_meanfill_hole", "ssim_inpaint"]
    assert {f"test/{name}" for name in expected} <= set(metrics)
    # (the scores' values on known answers: test_inversion_eval.py) The losses are per-image squared errors in
    # [-1, 1], 4x those in [0, 1], and the PSNRs per-image means of 10 log10(1 / error): by Jensen's inequality
    # the mean PSNR is at least the PSNR of the mean error, equal only when every image has the same error.
    for how in ("optim", "hybrid"):
        assert metrics[f"test/psnr_{how}"] >= 10 * torch.log10(4 / metrics[f"test/loss_{how}"]) - 1e-4, how
    # clamping to [0, 1] only brings a noisy pixel closer to the truth: PSNR >= 10 log10(1 / sigma^2), less a
    # margin for the spread of the noise's mean square over 784 pixels and 8 images (0.1 dB)
    for sigma in (0.3, 0.5):
        assert metrics[f"test/psnr_noisy_sigma{sigma}"] >= -20 * math.log10(sigma) - 0.2, sigma
    assert metrics["test/psnr_noisy_sigma0.3"] > metrics["test/psnr_noisy_sigma0.5"]
