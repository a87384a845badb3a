"""Bad input through the real command line: each case gives one clear error naming what is wrong, a non-zero exit,
and leaves checkpoints as they were. One row per case in docs/troubleshooting.md's "When something is wrong" table."""

import io
import os
import socket
import urllib.error
import urllib.request

import pytest
import torch
from PIL import Image

import cli
from tests.helpers import (CONFIGS, TINY_MODEL, UPSTREAM, config_classes, last_checkpoint, run_cli, run_cli_process,
                           state_of, tiny_args, upstream_checkpoint)

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
    code, err = main(["fit", *tiny_args(DCGAN, str(tmp_path / "nowhere"), str(tmp_path / "runs"),
                                        "--data.download", "false")], capsys)
    assert code == 2 and err.startswith("error: ") and "nowhere" in err and "--data.download true" in err
    assert "Traceback" not in err


def test_corrupt_dataset_file_is_named(mnist_dir, tmp_path, capsys):
    path = os.path.join(mnist_dir, "MNIST", "raw", "train-images-idx3-ubyte.gz")
    with open(path, "r+b") as f:
        f.truncate(100)
    code, err = main(["fit", *tiny_args(DCGAN, mnist_dir, str(tmp_path / "runs"))], capsys)
    assert code == 2 and "train-images-idx3-ubyte" in err


def test_download_without_network_gives_one_line_naming_the_folder_and_fix(tmp_path, monkeypatch, capsys):
    # No network, simulated: every URL torchvision opens fails as a DNS lookup does offline (nothing is sent).
    attempts = []

    def offline(request, *args, **kwargs):
        attempts.append(getattr(request, "full_url", request))
        raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    data = tmp_path / "data"
    code, err = main(["fit", *tiny_args(DCGAN, str(data), str(tmp_path / "runs"), "--data.download", "true")], capsys)
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert attempts and code == 2 and len(errors) == 1, err
    assert "could not download" in errors[0] and str(data / "MNIST" / "raw") in errors[0]
    assert "Temporary failure in name resolution" in errors[0] and "train-images-idx3-ubyte.gz" in errors[0]
    assert "--data.download false never tries" in errors[0] and "Traceback" not in err
    assert not data.exists()  # the folders the failed download made are gone again


def png_bytes():
    buffer = io.BytesIO()
    Image.fromarray(torch.full((40, 40, 3), 120, dtype=torch.uint8).numpy()).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes():
    buffer = io.BytesIO()
    Image.fromarray((torch.rand(40, 40, 3) * 255).byte().numpy()).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


@pytest.mark.parametrize("name, content", [
    ("scan.png", lambda: b"\x89PNG\r\n\x1a\n" + b"garbage" * 20),  # a PNG signature, then nothing decodable
    ("photo.jpg", lambda: jpeg_bytes()[:400]),  # a JPEG cut short (an interrupted copy)
], ids=["corrupt_png", "truncated_jpeg"])
def test_undecodable_image_in_a_folder_is_named(name, content, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "good.png").write_bytes(png_bytes())
    (folder / name).write_bytes(content())
    args = ["--config", DCGAN, *TINY_MODEL["GAN"], "--data", "datamodules.ImageFolderDataModule", "--data.data_dir",
            str(folder), "--trainer.default_root_dir", str(tmp_path / "runs"), "--trainer.logger", "false",
            "--trainer.accelerator", "cpu", "--trainer.max_steps", "2"]
    code, err = main(["fit", *args], capsys)
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(errors) == 1, err
    assert "1 of 2 image files cannot be decoded" in errors[0] and name in errors[0] and "good.png" not in errors[0]
    assert "move them out of the folder" in errors[0] and "Traceback" not in err


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
    assert code == 2 and "holds a lightning_models.gan.GAN" in err and "lightning_models.vae.VAE" in err
    from lightning_models import VAE as VAEClass

    with pytest.raises(ValueError, match="lightning_models.gan.GAN.*VAE"):  # Lightning refuses before any weight loads
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
    result = run_cli_process("fit", tiny_args(DCGAN, str(tmp_path / "nowhere"), str(tmp_path / "runs"),
                                              "--data.download", "false"))  # tests never use the network
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


# --- the table of docs/troubleshooting.md's "When something is wrong": one row per input -----------------------------
# Each row runs a refused command through the real CLI with a W&B logger (offline, writing into the row's folder).
# It must exit with the row's code, print one `error:` line that starts with the row's words (FILE: the offending
# path as Python quotes it) as the last thing on screen, and leave nothing on disk: no W&B run, run folder,
# checkpoint or data folder. docs/troubleshooting.md lists the same rows (test_readme_lists_every_row).
CLASSIFIER = next(c for c in CONFIGS if c.endswith("classifier_mnist.yaml"))
INVERSION = next(c for c in CONFIGS if c.endswith("inversion_mnist.yaml"))
LATENT_GAN = next(c for c in CONFIGS if c.endswith("latent_gan_mnist.yaml"))


class Payload:
    """Pickles as a call to `open(marker, "w")`: loading it without `weights_only` creates the marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, "w")


def write_bad_file(kind: str, path, gan: str, marker: str) -> None:
    """Writes a bad checkpoint of `kind` at `path` (`gan`: a good checkpoint to damage or copy)."""
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("model:\n  class_path: lightning_models.GAN\n")
    elif kind == "truncated":
        with open(gan, "rb") as f:
            data = f.read()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "plain_dict":
        torch.save({"generator": {"weight": torch.zeros(2)}}, path)
    elif kind == "code":
        torch.save({"state_dict": {"w": Payload(marker)}, "pytorch-lightning_version": "2.6.6"}, path)
    elif kind == "folder":
        path.mkdir()
    elif kind in ("unreadable", "weights_only", "old_weights", "old_options", "old_value"):
        saved = torch.load(gan, map_location="cpu", weights_only=True)
        if kind == "weights_only":  # what ModelCheckpoint(save_weights_only=True) writes
            for key in ("optimizer_states", "lr_schedulers", "loops", "callbacks"):
                saved.pop(key, None)
        elif kind == "old_weights":  # an older layout: the networks' weights under other names
            saved["state_dict"] = {k.replace("generator.", "netG."): v for k, v in saved["state_dict"].items()}
        elif kind == "old_options":  # an older layout: an option that no longer exists
            saved["hyper_parameters"]["ngf"] = 64
        elif kind == "old_value":  # an option value that was renamed ("input" is now "concat")
            saved["hyper_parameters"]["discriminator_condition"] = "input"
        torch.save(saved, path)
    else:
        raise ValueError(kind)


class Setup:
    """What a row's command builds on: the shared tiny MNIST (`data`) and tiny DCGAN checkpoint (`gan`), the
    row's own folder (`tmp`), and `file`, the bad input once `bad` or `path` made it."""

    def __init__(self, shared, tmp, monkeypatch) -> None:
        self.data, self.gan, self.tmp, self.monkeypatch = shared.data, shared.gan, tmp, monkeypatch
        self.file = ""
        self.marker = tmp / "payload_ran"

    def path(self, name: str) -> str:
        """A path in the row's folder that does not exist."""
        return self.path_of(str(self.tmp / name))

    def path_of(self, path: str) -> str:
        """An existing file as the row's bad input (a good checkpoint where it does not belong)."""
        self.file = path
        return path

    def blocker(self, name: str) -> str:
        """A folder path under a file: it cannot be created, not even by root."""
        blocker = self.tmp / "a_file"
        blocker.write_text("")
        return self.path_of(str(blocker / name))

    def bad(self, kind: str) -> str:
        path = self.tmp / f"{kind}.ckpt"
        write_bad_file(kind, path, self.gan, str(self.marker))
        if kind == "unreadable":  # the tests may run as root, which reads any file: refuse it as a user would
            path.chmod(0)
            from lightning_models import checkpoints

            def refuse(name, *args, **kwargs):
                if os.fspath(name) == str(path):
                    raise PermissionError(13, "Permission denied", str(name))
                return open(name, *args, **kwargs)

            self.monkeypatch.setattr(checkpoints, "open", refuse, raising=False)
        self.file = str(path)
        return self.file

    def args(self, config: str, *extra: str, data: str | None = None) -> list[str]:
        return tiny_args(config, data or self.data, str(self.tmp / "runs"), *extra)

    def offline(self) -> None:
        def fail(request, *args, **kwargs):
            raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

        self.monkeypatch.setattr(urllib.request, "urlopen", fail)


def gan_test(s: Setup, *extra: str) -> list[str]:
    return ["test", *s.args(DCGAN, *extra)]


BAD_INPUTS = [  # id, input (README's words), command, exit code, first words of the message
    ("ckpt_missing", "`--ckpt_path` to a file that does not exist",
     lambda s: gan_test(s, "--ckpt_path", s.path("gone.ckpt")), 2, "--ckpt_path FILE: no such GAN checkpoint"),
    ("ckpt_last_none", "`--ckpt_path last` with no run under `default_root_dir`",
     lambda s: gan_test(s, "--ckpt_path", "last"), 2, "--ckpt_path last: no run under"),
    ("ckpt_folder", "`--ckpt_path` to a folder without checkpoints",
     lambda s: gan_test(s, "--ckpt_path", s.bad("folder")), 2,
     "--ckpt_path FILE is a folder with no checkpoint in it"),
    ("ckpt_unreadable", "a checkpoint without read permission",
     lambda s: gan_test(s, "--ckpt_path", s.bad("unreadable")), 2, "--ckpt_path FILE cannot be read"),
    ("ckpt_empty", "an empty checkpoint file",
     lambda s: gan_test(s, "--ckpt_path", s.bad("empty")), 2,
     "--ckpt_path FILE is not a GAN checkpoint: the file is empty"),
    ("ckpt_text", "a text file passed as a checkpoint",
     lambda s: gan_test(s, "--ckpt_path", s.bad("text")), 2,
     "--ckpt_path FILE is not a GAN checkpoint: it is a text file"),
    ("ckpt_truncated", "a truncated checkpoint (an interrupted copy)",
     lambda s: gan_test(s, "--ckpt_path", s.bad("truncated")), 2,
     "--ckpt_path FILE is not a GAN checkpoint: the file is truncated or corrupt"),
    ("ckpt_plain_dict", "a plain `torch.save` dict",
     lambda s: gan_test(s, "--ckpt_path", s.bad("plain_dict")), 2,
     "--ckpt_path FILE is not a GAN checkpoint: it is a plain torch.save dict"),
    ("ckpt_code", "a pickle that would run code (a `__reduce__` payload): it does not run",
     lambda s: gan_test(s, "--ckpt_path", s.bad("code")), 2,
     "--ckpt_path FILE is not a GAN checkpoint: it holds Python objects"),
    ("ckpt_other_class", "a checkpoint of another model class",
     lambda s: ["test", *s.args(CLASSIFIER, "--ckpt_path", s.path_of(s.gan))], 2,
     "--ckpt_path FILE holds a lightning_models.gan.GAN, but the config's model is lightning_models.metrics.Classifier"),
    ("ckpt_old_weights", "a checkpoint of an older layout (weights under other names)",
     lambda s: gan_test(s, "--ckpt_path", s.bad("old_weights")), 2,
     "--ckpt_path FILE: its weights do not fit a GAN built from its options"),
    ("ckpt_old_options", "a checkpoint of an older layout (an option that no longer exists)",
     lambda s: gan_test(s, "--ckpt_path", s.bad("old_options")), 2,
     "--ckpt_path FILE was written by another version of this code"),
    ("ckpt_old_value", "a checkpoint of an older layout (an option value that was renamed)",
     lambda s: gan_test(s, "--ckpt_path", s.bad("old_value")), 2,
     "--ckpt_path FILE was written with an option value this version of the code does not accept"),
    ("ckpt_weights_only", "`fit --ckpt_path` to a weights-only checkpoint",
     lambda s: ["fit", *s.args(DCGAN, "--ckpt_path", s.bad("weights_only"))], 2,
     "--ckpt_path FILE holds weights only"),
    ("ckpt_image_shape", "a checkpoint trained on another image shape (`--data.image_size 32`)",
     lambda s: gan_test(s, "--ckpt_path", s.path_of(s.gan), "--data.image_size", "32"), 2,
     "--ckpt_path FILE: this checkpoint was trained on images of shape (1, 28, 28)"),
    ("ckpt_sizes", "a checkpoint with other network sizes (`--model.latent_dim 12`)",
     lambda s: gan_test(s, "--ckpt_path", s.path_of(s.gan), "--model.latent_dim", "12"), 2,
     "--ckpt_path FILE: this checkpoint's networks have other sizes"),
    ("classifier_missing", "`--model.classifier_path` (`test`) that does not exist",
     lambda s: gan_test(s, "--ckpt_path", s.gan, "--model.classifier_path", s.path("gone.ckpt")), 2,
     "--model.classifier_path FILE: no such Classifier checkpoint"),
    ("classifier_none", "`test` of a GAN with `--model.classifier_path null`",
     lambda s: gan_test(s, "--ckpt_path", s.gan, "--model.classifier_path", "null"), 2,
     "--model.classifier_path: test on GAN needs a classifier checkpoint"),
    ("classifier_text", "`--model.classifier_path` to a text file",
     lambda s: gan_test(s, "--ckpt_path", s.gan, "--model.classifier_path", s.bad("text")), 2,
     "--model.classifier_path FILE is not a Classifier checkpoint: it is a text file"),
    ("classifier_other_class", "`--model.classifier_path` to another model's checkpoint",
     lambda s: gan_test(s, "--ckpt_path", s.gan, "--model.classifier_path", s.path_of(s.gan)), 2,
     "--model.classifier_path FILE holds a lightning_models.gan.GAN, not a Classifier checkpoint"),
    ("gan_path_empty", "`--model.gan_path` (inversion) to an empty file",
     lambda s: ["fit", *s.args(INVERSION, "--model.gan_path", s.bad("empty"))], 2,
     "--model.gan_path FILE is not a GAN checkpoint: the file is empty"),
    ("gan_path_other_class", "`--model.gan_path` to another model's checkpoint",
     lambda s: ["fit", *s.args(INVERSION, "--model.gan_path", s.path_of(upstream_checkpoint("ae_mnist.yaml", s.data)))],
     2, "--model.gan_path FILE holds a lightning_models.latent.Autoencoder, not a GAN checkpoint"),
    ("autoencoder_code", "`--model.autoencoder_path` (latent models) to a pickle that would run code",
     lambda s: ["fit", *s.args(LATENT_GAN, "--model.autoencoder_path", s.bad("code"))], 2,
     "--model.autoencoder_path FILE is not an Autoencoder checkpoint: it holds Python objects"),
    ("autoencoder_other_class", "`--model.autoencoder_path` to another model's checkpoint",
     lambda s: ["fit", *s.args(LATENT_GAN, "--model.autoencoder_path", s.path_of(s.gan))], 2,
     "--model.autoencoder_path FILE holds a lightning_models.gan.GAN, not an Autoencoder checkpoint"),
    ("val_size", "`--data.val_size` as large as the training file",
     lambda s: ["fit", *s.args(DCGAN, "--data.val_size", "5000")], 2, "--data.val_size must be in [0,"),
    ("data_missing", "missing dataset files with `--data.download false`",
     lambda s: ["fit", *s.args(DCGAN, "--data.download", "false", data=str(s.tmp / "data"))], 2,
     "mnist: missing train-images-idx3-ubyte.gz"),
    ("data_offline", "missing dataset files and no network (download is on by default)",
     lambda s: (s.offline(), ["fit", *s.args(DCGAN, data=str(s.tmp / "data"))])[1], 2,
     "mnist: could not download the missing files into"),
    ("run_folder", "a run folder that cannot be created (`--trainer.default_root_dir`)",
     lambda s: ["fit", *s.args(DCGAN, "--trainer.default_root_dir", s.blocker("runs"))], 2,
     "cannot write the run's checkpoints to"),
    ("predict_folder", "a prediction folder that cannot be created (the ImageWriter's `output_dir`)",
     lambda s: ["predict", *s.args(DCGAN, "--ckpt_path", s.gan, "--trainer.callbacks.output_dir", s.blocker("out"))],
     2, "cannot write predictions to"),
]


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    from types import SimpleNamespace

    from tests.conftest import make_mnist_dir

    data = make_mnist_dir(str(tmp_path_factory.mktemp("bad_input_shared") / "data"))
    return SimpleNamespace(data=data, gan=upstream_checkpoint("dcgan_mnist.yaml", data))


def with_wandb(args: list[str], folder) -> list[str]:
    """`args` with the config's W&B logger on (offline, into `folder`) instead of `--trainer.logger false`."""
    i = args.index("--trainer.logger")
    return [*args[:i], *args[i + 2:], "--trainer.logger.init_args.save_dir", str(folder)]


@pytest.mark.parametrize("command, code, starts", [row[2:] for row in BAD_INPUTS], ids=[row[0] for row in BAD_INPUTS])
def test_bad_input_table(command, code, starts, shared, tmp_path, monkeypatch, capsys, dir_listing):
    monkeypatch.setenv("WANDB_MODE", "offline")
    setup = Setup(shared, tmp_path, monkeypatch)
    args = with_wandb(command(setup), tmp_path / "wandb")
    shared_root = os.path.dirname(shared.data)
    before = dir_listing(str(tmp_path)), dir_listing(shared_root)
    exit_code, err = main(args, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert exit_code == code and len(errors) == 1, err
    assert errors[0].startswith("error: " + starts.replace("FILE", repr(setup.file))), errors[0]
    assert lines[-2:] == [errors[0], "(set GENERATIVE_TRACEBACK=1 to see the traceback)"], err  # the error is last
    assert "Traceback" not in err and "wandb" not in err.lower()
    assert (dir_listing(str(tmp_path)), dir_listing(shared_root)) == before  # nothing written anywhere
    assert not setup.marker.exists()  # the payload did not run


def test_the_payload_would_run_without_weights_only(tmp_path):
    # the `code` rows prove something only if their file really runs code when loaded the unsafe way
    marker = tmp_path / "payload_ran"
    write_bad_file("code", tmp_path / "code.ckpt", "", str(marker))
    torch.load(tmp_path / "code.ckpt", weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("kind, error, reason", [
    ("folder", FileNotFoundError, "is a folder with no checkpoint in it"),
    ("unreadable", PermissionError, "cannot be read (Permission denied)"),
    ("empty", ValueError, "is not a GAN checkpoint: the file is empty"),
    ("text", ValueError, "is not a GAN checkpoint: it is a text file"),
    ("truncated", ValueError, "is not a GAN checkpoint: the file is truncated or corrupt"),
    ("plain_dict", ValueError, "is not a GAN checkpoint: it is a plain torch.save dict"),
    ("code", ValueError, "is not a GAN checkpoint: it holds Python objects (io.open)"),
    ("old_weights", ValueError, ": its weights do not fit a GAN built from its options"),
    ("old_value", ValueError, ": it was written with an option value this version of the code does not accept "
                              '(Parser key "module.discriminator_condition": Expected a typing.Literal'),
])
def test_load_from_checkpoint_refuses_each_bad_file(kind, error, reason, shared, tmp_path, monkeypatch):
    from lightning_models import GAN

    setup = Setup(shared, tmp_path, monkeypatch)
    path = setup.bad(kind)
    with pytest.raises(error) as info:
        GAN.load_from_checkpoint(path)
    assert str(info.value).startswith(f"checkpoint {path!r}{'' if reason[0] == ':' else ' '}{reason}"), info.value
    assert "\n" not in str(info.value) and not setup.marker.exists()
    run_root = os.path.dirname(os.path.dirname(os.path.dirname(shared.gan)))
    assert GAN.load_from_checkpoint(run_root).hparams.latent_dim == 8  # while a run root loads its last.ckpt


def test_readme_lists_every_row():
    with open(os.path.join(os.path.dirname(CONFIGS[0]), "..", "docs", "troubleshooting.md")) as f:
        readme = f.read()
    section = readme[readme.index("## When something is wrong"):]
    section = section[: section.index("\n## ", 1)]
    for _, text, _, code, starts in BAD_INPUTS:
        assert f"| {text} | {code} | `{starts}` |" in section, text
