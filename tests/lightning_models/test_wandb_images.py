"""W&B shows the pictures: a tiny training through the CLI with an offline `WandbLogger`, then the PNGs that the
W&B run wrote (`<save_dir>/wandb/offline-run-*/files/media/images/`) are compared, as 8-bit pixels, with the
images written to disk (`<run>/samples/`) or, for the pictures only sent to the loggers (the VAE's latent plots),
with what torchvision's `save_image` writes for the same grid. (wandb 0.31 writes an all-black PNG for a float
tensor in [0, 1], which is what the loggers used to get.)"""

from __future__ import annotations

import glob
import os
import re

import numpy as np
import pytest
from PIL import Image
from torchvision.utils import save_image

from lightning_models import callbacks
from lightning_models.vae import latent_plots as plots
from tests.helpers import REPO, run_cli, tiny_args

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def wandb_args(config: str, data_dir: str, root: str, *extra: str) -> list[str]:
    """`tiny_args` with the config's own WandbLogger kept, offline, writing under `root`."""
    args = tiny_args(os.path.join(REPO, "configs", config), data_dir, root, *extra)
    i = args.index("--trainer.logger")
    del args[i : i + 2]  # tiny_args turns the logger off
    return [*args, "--trainer.logger.init_args.save_dir", root, "--trainer.logger.init_args.offline", "true"]


def run_with_wandb(args: list[str]) -> str:
    """Runs `cli.py fit args`, finishes the W&B run (as process exit does) and returns its media image folder."""
    import wandb

    try:
        cli = run_cli("fit", args)
    finally:
        wandb.finish()
    (run,) = glob.glob(os.path.join(cli.trainer.logger.save_dir, "wandb", "offline-run-*"))
    return os.path.join(run, "files", "media", "images")


def pixels(path: str) -> np.ndarray:
    return np.asarray(Image.open(path))


def wandb_images(media: str, key: str) -> list[np.ndarray]:
    """The W&B images logged under `key` (e.g. `samples/grid`), in the order logged (W&B's step in the name)."""
    paths = glob.glob(os.path.join(media, f"{key}_*.png"))
    step = lambda p: int(re.fullmatch(r".*_(\d+)_[0-9a-f]+\.png", p).group(1))  # noqa: E731
    return [pixels(p) for p in sorted(paths, key=step)]


def assert_same_pictures(on_wandb: list[np.ndarray], expected: list[np.ndarray]) -> None:
    assert len(on_wandb) == len(expected) > 0
    for got, want in zip(on_wandb, expected):
        assert got.dtype == want.dtype == np.uint8 and got.shape == want.shape
        assert want.max() > 0 and want.std() > 0  # a picture, not a blank
        np.testing.assert_array_equal(got, want)


@pytest.fixture
def wandb_offline(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


def test_sample_grids_on_wandb_are_the_pngs_on_disk(wandb_offline, mnist_dir, tmp_path):
    root = str(tmp_path / "runs")
    # 2 batches = 4 optimizer steps: SampleGrid writes a grid after the first batch (step 2) and at the end (step 4)
    media = run_with_wandb(wandb_args("dcgan_mnist.yaml", mnist_dir, root, "--trainer.max_steps", "4"))
    on_disk = sorted(glob.glob(os.path.join(root, "*", "samples", "step_*.png")))
    assert [os.path.basename(p) for p in on_disk] == ["step_0000002.png", "step_0000004.png"]
    assert_same_pictures(wandb_images(media, "samples/grid"), [pixels(p) for p in on_disk])


def test_vae_latent_plots_on_wandb_are_the_pictures(wandb_offline, mnist_dir, tmp_path, monkeypatch):
    logged = []  # (key, the PNG save_image writes for the grid) of each picture the VAE sends to the loggers

    def log_images(trainer, key, grid, step):
        path = str(tmp_path / f"expected_{len(logged)}.png")
        save_image(grid, path)
        logged.append((key, pixels(path)))
        callbacks.log_images(trainer, key, grid, step)

    monkeypatch.setattr("lightning_models.vae.evaluation.log_images", log_images)
    root = str(tmp_path / "runs")
    # a 2-batch epoch: validation (and its pictures) after step 2
    media = run_with_wandb(wandb_args("vae_joint_colored_mnist.yaml", mnist_dir, root, "--trainer.max_steps", "2",
                                      "--trainer.limit_train_batches", "2"))
    keys = sorted(key for key, _ in logged)
    assert keys == ["samples/categorical_0", "samples/categorical_1", "samples/categorical_2",
                    "samples/reconstructions", "samples/scatter_color", "samples/scatter_digit", "samples/traversal"]
    for key, expected in logged:
        assert_same_pictures(wandb_images(media, key), [expected])
    on_disk = sorted(glob.glob(os.path.join(root, "*", "samples", "step_*.png")))  # SampleGrid: steps 1 and 2
    assert_same_pictures(wandb_images(media, "samples/grid"), [pixels(p) for p in on_disk])

    # the digit scatter plot has its legend: the first row's square (2-pixel lines at 256) in a label color
    (scatter,) = wandb_images(media, "samples/scatter_digit")
    square = scatter[2:12, 236:246].reshape(-1, 3)
    label_colors = (plots.LABEL_COLORS * 255 + 0.5).floor().numpy().astype(np.uint8)
    assert (square == square[0]).all() and (label_colors == square[0]).all(1).any()
