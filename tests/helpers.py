"""Helpers shared by the CLI-level tests: tiny overrides per config and running the real CLI."""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import pytest
import pytorch_lightning as pl
import torch
import yaml

import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "*.yaml")))

# Per model class: options that make its networks tiny, so a config trains in seconds on 2 cores.
TINY_MODEL = {
    "GAN": ["--model.generator_width", "8", "--model.discriminator_width", "8", "--model.latent_dim", "8"],
    "Classifier": ["--model.width", "8"],
    "CycleGAN": ["--model.generator_width", "4", "--model.generator_blocks", "1", "--model.discriminator_width", "4",
                 "--model.pool_size", "4"],
    "Pix2Pix": ["--model.generator_width", "4", "--model.discriminator_width", "4"],
    "InfoGAN": ["--model.generator_width", "8", "--model.discriminator_width", "8", "--model.latent_dim", "4",
                "--model.q_hidden", "8", "--model.num_eval_samples", "20"],
    "GANInversion": ["--model.encoder_width", "4", "--model.optim_steps", "3", "--model.restarts", "2"],
    "VAE": ["--model.mlp_hidden", "[16, 8]", "--model.conv_width", "4", "--model.num_eval_samples", "20"],
    "Autoencoder": ["--model.width", "4", "--model.latent_dim", "4"],
    "FewLabelClassifier": ["--model.num_labels", "10", "--model.hidden", "[8]"],
    "LatentGAN": ["--model.generator_width", "8", "--model.discriminator_width", "8", "--model.latent_dim", "4",
                  "--model.num_eval_samples", "20", "--model.num_interpolation_pairs", "4"],
}
# Per datamodule class: options that point it at the fixture data and keep batches small.
TINY_DATA = {
    "MNISTDataModule": ["--data.val_size", "8", "--data.batch_size", "8"],
    "ColoredMNISTDataModule": ["--data.val_size", "8", "--data.batch_size", "8"],
    "PairedColoredMNISTDataModule": ["--data.val_size", "8", "--data.batch_size", "8"],
    "UnpairedColoredMNISTDataModule": ["--data.val_size", "8", "--data.batch_size", "8"],
    "CelebADataModule": ["--data.batch_size", "4", "--data.eval_batch_size", "2", "--data.image_size", "32"],
}

# Per model class that starts from another model's checkpoint: (the upstream config, the option naming its
# checkpoint). `tiny_args` trains the upstream config tiny (once per data folder) and passes its last.ckpt.
UPSTREAM: dict[str, tuple[str, str]] = {"GANInversion": ("dcgan_mnist.yaml", "--model.gan_path")}
UPSTREAM["FewLabelClassifier"] = UPSTREAM["LatentGAN"] = ("ae_mnist.yaml", "--model.autoencoder_path")
_upstream_cache: dict[tuple[str, str], str] = {}


def upstream_checkpoint(config_name: str, data_dir: str) -> str:
    """last.ckpt of `configs/<config_name>` trained for 4 steps on `data_dir`, written next to it (cached)."""
    key = (config_name, os.path.abspath(data_dir))
    if key not in _upstream_cache or not os.path.isfile(_upstream_cache[key]):
        data_dir = os.path.abspath(data_dir)
        root = os.path.join(os.path.dirname(data_dir), f"upstream_{os.path.basename(data_dir)}",
                            config_name.removesuffix(".yaml"))
        run_cli("fit", tiny_args(os.path.join(REPO, "configs", config_name), data_dir, root, "--trainer.max_steps",
                                 "4"))
        _upstream_cache[key] = last_checkpoint(root)
    return _upstream_cache[key]


def config_classes(config: str) -> tuple[str, str]:
    """(model class name, datamodule class name) a config names."""
    with open(config) as f:
        cfg = yaml.safe_load(f)
    return cfg["model"]["class_path"].rsplit(".", 1)[-1], cfg["data"]["class_path"].rsplit(".", 1)[-1]


def tiny_args(config: str, data_dir: str, root: str, *extra: str) -> list[str]:
    """CLI arguments that run `config` on the fixture data in `data_dir`, writing under `root`, without W&B."""
    model, data = config_classes(config)
    upstream = []
    if model in UPSTREAM:
        upstream_config, option = UPSTREAM[model]
        upstream = [option, upstream_checkpoint(upstream_config, data_dir)]
    return ["--config", config, *TINY_MODEL.get(model, []), *TINY_DATA.get(data, []), *upstream,
            "--data.data_dir", data_dir,
            "--trainer.default_root_dir", root, "--trainer.logger", "false", "--trainer.enable_progress_bar",
            "false", "--trainer.enable_model_summary", "false", "--trainer.accelerator", "cpu", *extra]


def run_cli(subcommand: str, args: list[str]) -> cli.GenerativeCLI:
    """Runs `cli.py <subcommand> args` in this process (fast: torch is already imported); returns the CLI,
    whose `.trainer.callback_metrics` hold what was logged."""
    return cli.GenerativeCLI(args=[subcommand, *args])


def run_cli_process(subcommand: str, args: list[str], env: dict | None = None, timeout: int = 300):
    """Runs `python cli.py <subcommand> args` in a fresh process (needed for DDP and crashes)."""
    return subprocess.run([sys.executable, os.path.join(REPO, "cli.py"), subcommand, *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def last_checkpoint(root: str) -> str:
    (path,) = glob.glob(os.path.join(root, "*", "checkpoints", "last.ckpt"))
    return path


def state_of(path: str) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


class DumpWeights(pl.Callback):
    """Test helper: each rank writes its module's parameters to `<out_dir>/rank<r>_{start,end}.pt`."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir

    def _dump(self, trainer, pl_module, tag: str) -> None:
        os.makedirs(self.out_dir, exist_ok=True)
        torch.save({k: v.detach().cpu().clone() for k, v in pl_module.named_parameters()},
                   os.path.join(self.out_dir, f"rank{trainer.global_rank}_{tag}.pt"))

    def on_train_start(self, trainer, pl_module) -> None:
        self._dump(trainer, pl_module, "start")

    def on_train_end(self, trainer, pl_module) -> None:
        self._dump(trainer, pl_module, "end")


@pytest.fixture(autouse=True)
def one_thread():
    """Autouse where a test module imports it (the translation and inversion tests): networks of 4 channels gain
    nothing from a second thread, and on a shared 2-core machine two OpenMP threads spin-wait for each other (10x
    slower here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
