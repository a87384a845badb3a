"""The shared suite: every config in configs/ through the real CLI on tiny fixture data.

A new config gets all of these by existing; a new model or datamodule class only adds a line of tiny options
to `tests/helpers.py`.
"""

import importlib
import os

import pytest
import torch
import yaml

from lightning_models import GenerativeModule
from tests.helpers import CONFIGS, last_checkpoint, run_cli, state_of, tiny_args

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
IDS = [os.path.basename(c)[:-5] for c in CONFIGS]


def model_class(config):
    with open(config) as f:
        path = yaml.safe_load(f)["model"]["class_path"]
    module, name = path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def data_dir_for(config, mnist_dir, tmp_path) -> str:
    """The fixture data `config` reads: `mnist_dir`, or a CelebA-layout folder under `tmp_path` (written the first
    time a CelebA config asks for it)."""
    with open(config) as f:
        if "CelebA" not in yaml.safe_load(f)["data"]["class_path"]:
            return mnist_dir
    from tests.conftest import make_celeba_dir

    root = os.path.join(str(tmp_path), "celeba_data")
    return root if os.path.isdir(root) else make_celeba_dir(root)


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_fit_checkpoint_round_trip_and_predict(config, mnist_dir, tmp_path):
    # trained in bf16-mixed (what GPU users run; float32 training of every config: tests/test_matrix.py's resume)
    root = str(tmp_path / "runs")
    data = data_dir_for(config, mnist_dir, tmp_path)
    cli = run_cli("fit", tiny_args(config, data, root, "--trainer.precision", "bf16-mixed", "--trainer.max_steps", "4"))
    assert all(torch.isfinite(v).all() for k, v in cli.trainer.callback_metrics.items() if k.startswith("train/"))
    ckpt = last_checkpoint(root)
    run = os.path.dirname(os.path.dirname(ckpt))
    assert os.path.isfile(os.path.join(run, "config.yaml"))
    assert state_of(ckpt)["global_step"] == 4
    for key, value in state_of(ckpt)["state_dict"].items():
        assert torch.isfinite(value.float()).all(), key

    cls = model_class(config)
    model = cls.load_from_checkpoint(ckpt)  # no extra arguments
    again = cls.load_from_checkpoint(ckpt)
    if hasattr(model, "encode"):  # autoencoders, VAEs, inversion encoders: images in [0, 1] -> codes (-> images)
        images = torch.rand(3, *model.hparams.image_shape, generator=torch.Generator().manual_seed(0))
        codes = model.encode(images)
        assert codes.shape[0] == 3 and torch.isfinite(codes).all()
        torch.testing.assert_close(codes, again.encode(images))
        if hasattr(model, "decode"):
            decoded = model.decode(codes)
            assert decoded.shape == images.shape and decoded.min() >= 0 and decoded.max() <= 1
    if isinstance(model, GenerativeModule):
        labels = torch.arange(3) % model.num_classes if model.conditional else None
        a = model.sample(3, labels, generator=torch.Generator().manual_seed(0))
        b = again.sample(3, labels, generator=torch.Generator().manual_seed(0))
        assert a.shape[0] == 3 and a.min() >= 0 and a.max() <= 1
        torch.testing.assert_close(a, b)
        samples = [f"class_{c}" for c in range(model.num_classes)] if model.conditional else ["samples"]
    elif hasattr(model, "translate"):  # translation models (not generative): a translate round trip instead
        images = torch.rand(3, *model.hparams.image_shape, generator=torch.Generator().manual_seed(0))
        for direction in ("AB", "BA"):
            a, b = model.translate(images, direction), again.translate(images, direction)
            assert a.shape == images.shape and a.min() >= 0 and a.max() <= 1
            torch.testing.assert_close(a, b)
        samples = ["a_to_b", "b_to_a"]
    else:
        return

    out = str(tmp_path / "pred")
    run_cli("predict", tiny_args(config, data, root, "--ckpt_path", ckpt, "--trainer.limit_predict_batches",
                                 "2", "--trainer.callbacks+=lightning_models.callbacks.ImageWriter",
                                 "--trainer.callbacks.output_dir", out))
    written = sorted(os.listdir(out))
    assert set(samples) <= set(written)  # besides its samples, a model may write pictures (VAE: latent plots)
    for name in written:
        assert sorted(os.listdir(os.path.join(out, name))) == ["batch_0000.png", "batch_0001.png"]


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_print_config_round_trips(config, mnist_dir, tmp_path, capsys):
    data = data_dir_for(config, mnist_dir, tmp_path)
    args = tiny_args(config, data, str(tmp_path / "runs"))
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", [*args, "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = capsys.readouterr().out
    dumped = tmp_path / "dumped.yaml"
    dumped.write_text(printed)
    with pytest.raises(SystemExit):
        run_cli("fit", ["--config", str(dumped), "--print_config"])
    assert yaml.safe_load(capsys.readouterr().out) == yaml.safe_load(printed)
