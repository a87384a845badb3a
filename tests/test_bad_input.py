"""Bad input through the real command line: each case gives one clear error naming what is wrong, a non-zero exit,
and leaves checkpoints as they were. One row per case in README's "When something is wrong" table."""

import os

import pytest
import torch

import cli
from tests.helpers import (CONFIGS, UPSTREAM, config_classes, last_checkpoint, run_cli, run_cli_process, state_of,
                           tiny_args)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
DCGAN = next(c for c in CONFIGS if c.endswith("dcgan_mnist.yaml"))
VAE = next(c for c in CONFIGS if c.endswith("vae_continuous_colored_mnist.yaml"))


def main(args, capsys):
    """(exit code, stderr) of `cli.py <args>` run in this process."""
    try:
        code = cli.main(args)
    except SystemExit as exit_:  # the argument parser exits by itself
        code = exit_.code
    return code, capsys.readouterr().err


@pytest.fixture
def gan_run(mnist_dir, tmp_path):
    root = str(tmp_path / "gan")
    run_cli("fit", tiny_args(DCGAN, mnist_dir, root, "--trainer.max_steps", "2"))
    return root, last_checkpoint(root)


@pytest.mark.parametrize("override, expected", [
    (["--model.class_path", "lightning_models.NoSuchModel"], "NoSuchModel"),
    (["--data.class_path", "datamodules.NoSuchData"], "NoSuchData"),
    (["--model.no_such_option", "1"], "no_such_option"),
    (["--model.latent_dim", "many"], "latent_dim"),
    (["--data.batch_size", "[8]"], "batch_size"),
])
def test_unknown_class_option_or_wrong_type_names_it(override, expected, mnist_dir, tmp_path, capsys):
    code, err = main(["fit", *tiny_args(DCGAN, mnist_dir, str(tmp_path / "runs"), *override)], capsys)
    assert code == 2 and expected in err
    assert not os.path.exists(tmp_path / "runs")  # nothing started


def test_unknown_option_in_a_yaml_file_names_it(mnist_dir, tmp_path, capsys):
    extra = tmp_path / "extra.yaml"
    extra.write_text("model:\n  init_args:\n    latnet_dim: 10\n")
    code, err = main(["fit", *tiny_args(DCGAN, mnist_dir, str(tmp_path / "runs"), "--config", str(extra))], capsys)
    assert code == 2 and "latnet_dim" in err


def test_missing_dataset_names_the_folder_and_how_to_get_it(tmp_path, capsys):
    code, err = main(["fit", *tiny_args(DCGAN, str(tmp_path / "nowhere"), str(tmp_path / "runs"))], capsys)
    assert code == 2 and err.startswith("error: ") and "nowhere" in err and "--data.download true" in err
    assert "Traceback" not in err


def test_corrupt_dataset_file_is_named(mnist_dir, tmp_path, capsys):
    path = os.path.join(mnist_dir, "MNIST", "raw", "train-images-idx3-ubyte.gz")
    with open(path, "r+b") as f:
        f.truncate(100)
    code, err = main(["fit", *tiny_args(DCGAN, mnist_dir, str(tmp_path / "runs"))], capsys)
    assert code == 2 and "train-images-idx3-ubyte" in err


def test_image_size_mismatch_with_checkpoint_is_explained(gan_run, mnist_dir, capsys):
    root, ckpt = gan_run
    before = state_of(ckpt)
    code, err = main(["predict", *tiny_args(DCGAN, mnist_dir, root, "--ckpt_path", ckpt, "--data.image_size", "32")],
                     capsys)
    assert code == 2 and "(1, 28, 28)" in err and "(1, 32, 32)" in err and "--data.image_size" in err
    after = state_of(ckpt)["state_dict"]
    assert all(torch.equal(after[k], v) for k, v in before["state_dict"].items())


def test_checkpoint_with_other_network_sizes_lists_the_options(gan_run, mnist_dir, capsys):
    root, ckpt = gan_run  # trained with latent_dim 8 (tests' tiny options)
    code, err = main(["predict", *tiny_args(DCGAN, mnist_dir, root, "--ckpt_path", ckpt, "--model.latent_dim", "12")],
                     capsys)
    assert code == 2 and "latent_dim: 8 in the checkpoint, 12 now" in err and "config.yaml" in err, err


def test_checkpoint_of_another_model_class_is_refused(gan_run, mnist_dir, tmp_path, capsys):
    _, gan_ckpt = gan_run
    code, err = main(["fit", *tiny_args(VAE, mnist_dir, str(tmp_path / "vae"), "--ckpt_path", gan_ckpt)], capsys)
    assert code == 2 and "holds a lightning_models.GAN" in err and "lightning_models.VAE" in err
    from lightning_models import VAE as VAEClass

    with pytest.raises(ValueError, match="lightning_models.GAN.*VAE"):  # Lightning refuses before any weight loads
        VAEClass.load_from_checkpoint(gan_ckpt)


def test_unwritable_run_folder_fails_before_training(mnist_dir, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")  # a folder cannot be created under a file (root ignores permission bits)
    code, err = main(["fit", *tiny_args(DCGAN, mnist_dir, str(blocker / "runs"))], capsys)
    assert code == 2 and "--trainer.default_root_dir" in err and str(blocker) in err


def test_unwritable_prediction_folder_is_named(gan_run, mnist_dir, tmp_path, capsys):
    root, ckpt = gan_run
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    code, err = main(["predict", *tiny_args(DCGAN, mnist_dir, root, "--ckpt_path", ckpt, "--trainer.callbacks+="
                                            "lightning_models.callbacks.ImageWriter", "--trainer.callbacks.output_dir",
                                            str(blocker / "out"))], capsys)
    assert code == 2 and str(blocker) in err and "output_dir" in err


def test_missing_checkpoint_file_is_named(mnist_dir, tmp_path, capsys):
    code, err = main(["test", *tiny_args(DCGAN, mnist_dir, str(tmp_path / "runs"), "--ckpt_path",
                                         str(tmp_path / "gone.ckpt"))], capsys)
    assert code == 2 and "gone.ckpt" in err


def test_labels_out_of_range_in_sample(gan_run):
    from lightning_models import GAN

    model = GAN.load_from_checkpoint(gan_run[1])
    with pytest.raises(ValueError, match="unconditional"):
        model.sample(2, labels=torch.tensor([0, 1]))
    model.conditional, model.num_classes = True, 10  # the same check every conditional model uses
    with pytest.raises(ValueError, match=r"labels must be in \[0, 9\], got values in \[0, 10\]"):
        model.sample(2, labels=torch.tensor([0, 10]))


def test_real_process_exit_code_and_single_error_line(tmp_path):
    result = run_cli_process("fit", tiny_args(DCGAN, str(tmp_path / "nowhere"), str(tmp_path / "runs")))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("error: ")]


def test_checkpoint_saved_outside_the_cli_also_names_its_class():
    from lightning_models import GAN, VAE as VAEClass

    checkpoint = {"state_dict": {}, "hyper_parameters": {}}
    GAN(latent_dim=8, generator_width=8, discriminator_width=8).on_save_checkpoint(checkpoint)
    with pytest.raises(ValueError, match="holds a lightning_models.gan.GAN, not a lightning_models.vae.VAE"):
        VAEClass().on_load_checkpoint(checkpoint)


UPSTREAM_CONFIGS = [c for c in CONFIGS if config_classes(c)[0] in UPSTREAM]


@pytest.mark.parametrize("config", UPSTREAM_CONFIGS, ids=lambda c: os.path.basename(c)[:-5])
def test_missing_upstream_checkpoint_gives_one_line_naming_the_option(config, mnist_dir, tmp_path, capsys):
    option = UPSTREAM[config_classes(config)[0]][1]
    args = [a for a in tiny_args(config, mnist_dir, str(tmp_path / "runs"))]
    code, err = main(["fit", *args, option, str(tmp_path / "gone.ckpt")], capsys)
    message = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(message) == 1
    assert option in message[0] and "gone.ckpt" in message[0] and "python cli.py fit --config" in message[0]
    assert "Given value" not in err  # not jsonargparse's dump of the whole namespace
