"""Issue 29 moved the modules into one package per family (`lightning_models._moved`): the old module paths still
import (with a DeprecationWarning naming the new one), configs naming classes the old way still run, and
checkpoints written before the move (tests/fixtures/pre_move, see its README) still load, test, predict and
resume."""

from __future__ import annotations

import glob
import importlib
import importlib.util
import os
import sys
import warnings

import pytest
import torch

import lightning_models
from lightning_models import GAN, VAE, CycleGAN, _moved
from tests.helpers import CONFIGS, REPO, last_checkpoint, run_cli, state_of, tiny_args

FIXTURES = os.path.join(REPO, "tests", "fixtures", "pre_move")
# fixture -> (its config, its class, the options that wrote it: passed again so the model fits the checkpoint)
PRE_MOVE = {
    "cgan_mnist": (GAN, ["--model.generator_width", "2", "--model.discriminator_width", "2",
                         "--model.latent_dim", "4"]),
    "vae_discrete_colored_mnist": (VAE, ["--model.mlp_hidden", "[2, 2]", "--model.categorical_dims", "[4, 4]"]),
    "cyclegan_colored_mnist": (CycleGAN, ["--model.generator_width", "1", "--model.discriminator_width", "2",
                                          "--model.pool_size", "2"]),
}


def fresh_import(name: str):
    """Imports `name` as a first import would (the alias is dropped from sys.modules first)."""
    sys.modules.pop(name, None)
    return importlib.import_module(name)


# --- old module paths -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("old", sorted(_moved.MOVED_MODULES))
def test_an_old_module_path_imports_the_new_module_with_a_warning_naming_it(old):
    new = "lightning_models." + _moved.MOVED_MODULES[old]
    assert importlib.util.find_spec(new) is not None and not os.path.exists(
        os.path.join(REPO, "lightning_models", old + ".py"))
    with pytest.warns(DeprecationWarning, match=rf"lightning_models\.{old} moved to {new.replace('.', '[.]')}"):
        module = fresh_import(f"lightning_models.{old}")
    assert module is importlib.import_module(new)
    assert module.__name__ == module.__spec__.name == new  # the module keeps its own identity


def test_old_class_paths_are_the_same_classes():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from lightning_models.cyclegan import CycleGAN as OldCycleGAN
        from lightning_models.infogan import InfoGAN as OldInfoGAN
        from lightning_models.vae_evaluation import VAEEvaluation
    assert OldCycleGAN is lightning_models.translation.CycleGAN is CycleGAN
    assert OldInfoGAN is lightning_models.gan.InfoGAN is lightning_models.InfoGAN
    assert VAEEvaluation is importlib.import_module("lightning_models.vae.evaluation").VAEEvaluation
    # the old modules that are now their family's package: its classes, and the old module's other names
    assert lightning_models.gan.GAN is GAN and lightning_models.vae.VAE is VAE
    moved = r"lightning_models\.gan\.warmup_ema moved to lightning_models\.gan\.gan\.warmup_ema"
    with pytest.warns(DeprecationWarning, match=moved):
        from lightning_models.gan import warmup_ema
    assert warmup_ema is importlib.import_module("lightning_models.gan.gan").warmup_ema
    with pytest.warns(DeprecationWarning, match=r"lightning_models\.translation\.base\.linear_decay"):
        assert lightning_models.translation.linear_decay(0, 0, 1) == 1.0
    with pytest.raises(ImportError, match="no_such_name"):
        from lightning_models.gan import no_such_name  # noqa: F401
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("lightning_models.no_such_module")
    assert _moved.current_class_path("lightning_models.cyclegan.CycleGAN") == \
        "lightning_models.translation.cyclegan.CycleGAN"
    assert _moved.current_class_path("lightning_models.gan.GAN") == "lightning_models.gan.GAN"


def test_a_config_with_the_old_class_paths_runs(mnist_dir, tmp_path):
    """configs/cyclegan_colored_mnist.yaml as it was before the move (model and callback by their old modules)."""
    with open(os.path.join(REPO, "configs", "cyclegan_colored_mnist.yaml")) as f:
        text = f.read()
    old = text.replace("lightning_models.translation.CycleGAN", "lightning_models.cyclegan.CycleGAN")
    old = old.replace("lightning_models.translation.evaluation.TranslationStrips",
                      "lightning_models.translation_eval.TranslationStrips")
    assert old.count("lightning_models.cyclegan.") == old.count("lightning_models.translation_eval.") == 1
    config = tmp_path / "cyclegan_colored_mnist.yaml"
    config.write_text(old)
    for name in ("lightning_models.cyclegan", "lightning_models.translation_eval"):
        sys.modules.pop(name, None)
    root = str(tmp_path / "runs")
    with pytest.warns(DeprecationWarning, match=r"lightning_models\.cyclegan moved to lightning_models\.translation"):
        cli = run_cli("fit", tiny_args(str(config), mnist_dir, root, "--trainer.max_steps", "2"))
    assert type(cli.model) is CycleGAN
    assert any(type(c).__module__ == "lightning_models.translation.evaluation" for c in cli.trainer.callbacks)
    assert state_of(last_checkpoint(root))["global_step"] == 2


# --- checkpoints written before the move --------------------------------------------------------------------------
def pre_move(name: str) -> str:
    return os.path.join(FIXTURES, name + ".ckpt")


def args_for(name: str, mnist_dir: str, root: str, *extra: str) -> list[str]:
    config = next(c for c in CONFIGS if os.path.basename(c) == name + ".yaml")
    return tiny_args(config, mnist_dir, root, *PRE_MOVE[name][1], *extra)


def test_the_fixtures_are_pre_move_checkpoints():
    assert sorted(os.path.basename(p)[:-5] for p in glob.glob(os.path.join(FIXTURES, "*.ckpt"))) == sorted(PRE_MOVE)
    saved = {name: torch.load(pre_move(name), map_location="cpu", weights_only=True) for name in PRE_MOVE}
    # the module paths they hold, as the code before the move wrote them
    assert saved["cyclegan_colored_mnist"]["hyper_parameters"]["_class_path"] == "lightning_models.cyclegan.CycleGAN"
    assert saved["cyclegan_colored_mnist"]["model_class"] == "lightning_models.cyclegan.CycleGAN"
    assert saved["cgan_mnist"]["model_class"] == "lightning_models.gan.GAN"
    assert saved["vae_discrete_colored_mnist"]["model_class"] == "lightning_models.vae.VAE"
    assert all(os.path.getsize(pre_move(name)) < 300_000 for name in PRE_MOVE)


@pytest.mark.parametrize("name", sorted(PRE_MOVE))
def test_a_pre_move_checkpoint_loads_with_load_from_checkpoint(name):
    cls = PRE_MOVE[name][0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # CycleGAN's `_class_path` names its old module
        model = cls.load_from_checkpoint(pre_move(name))
    assert type(model) is cls
    saved = torch.load(pre_move(name), map_location="cpu", weights_only=True)["state_dict"]
    weights = model.state_dict()
    assert weights.keys() == saved.keys()
    for key, value in saved.items():
        torch.testing.assert_close(weights[key], value, rtol=0, atol=0, msg=key)
    if name != "cyclegan_colored_mnist":
        images = model.sample(3, **({"labels": torch.tensor([0, 1, 2])} if model.conditional else {}))
        assert images.shape[0] == 3 and torch.isfinite(images).all()


@pytest.mark.parametrize("name, subcommand", [("cgan_mnist", "predict"), ("vae_discrete_colored_mnist", "test"),
                                              ("cyclegan_colored_mnist", "test"),
                                              ("cyclegan_colored_mnist", "validate")])
def test_a_pre_move_checkpoint_runs_through_the_cli(name, subcommand, mnist_dir, tmp_path):
    root = str(tmp_path / "runs")
    if subcommand == "predict":
        extra = ["--trainer.limit_predict_batches", "1"]
    else:
        extra = ["--trainer.limit_test_batches", "2", "--trainer.limit_val_batches", "2"]
    cli = run_cli(subcommand, args_for(name, mnist_dir, root, "--ckpt_path", pre_move(name), *extra))
    assert type(cli.model) is PRE_MOVE[name][0]
    if subcommand == "predict":
        assert glob.glob(os.path.join(tmp_path, "**", "class_3", "*.png"), recursive=True)
    else:
        prefix = "test/" if subcommand == "test" else "val/"
        assert any(k.startswith(prefix) for k in cli.trainer.callback_metrics), dict(cli.trainer.callback_metrics)


@pytest.mark.parametrize("name", sorted(PRE_MOVE))
def test_a_pre_move_checkpoint_resumes(name, mnist_dir, tmp_path):
    root = str(tmp_path / "runs")
    cli = run_cli("fit", args_for(name, mnist_dir, root, "--ckpt_path", pre_move(name), "--trainer.max_steps", "4"))
    assert type(cli.model) is PRE_MOVE[name][0]
    resumed = state_of(last_checkpoint(root))
    assert resumed["global_step"] == 4
    # the resumed run records the class by its family's package, as configs name it
    assert resumed["model_class"] == {"cgan_mnist": "lightning_models.gan.GAN", "vae_discrete_colored_mnist":
                                      "lightning_models.vae.VAE"}.get(name, "lightning_models.translation.CycleGAN")
    assert not resumed["hyper_parameters"]["_class_path"].startswith("lightning_models.cyclegan")


def test_a_pre_move_checkpoint_loads_in_a_fresh_process():
    """Lightning resolves a checkpoint's `_class_path` in `sys.modules` only: in a process that never imported the old
    module, the CycleGAN fixture (whose `_class_path` names `lightning_models.cyclegan`) must still load."""
    import subprocess

    code = ("import sys, lightning_models; from lightning_models import CycleGAN; "
            "assert 'lightning_models.cyclegan' not in sys.modules; "
            f"m = CycleGAN.load_from_checkpoint({pre_move('cyclegan_colored_mnist')!r}); print(type(m).__name__)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "CycleGAN"
