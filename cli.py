"""Command line of the collection: `python cli.py fit|validate|test|predict --config configs/<experiment>.yaml`.

LightningCLI in subclass mode: each config names its model and datamodule class. What the data decides (image
shape, number of classes) is linked into the model, so the two cannot disagree. On top of LightningCLI:
- every run gets its own folder `<default_root_dir>/<run>/` with `checkpoints/last.ckpt` and `config.yaml`;
- `--ckpt_path last` resumes the newest run's `last.ckpt`, and is an error when there is none;
- plain `--trainer.strategy ddp` works for adversarial models (their steps leave one network without gradients);
- W&B logs offline when no W&B credentials are set up (`wandb sync` uploads later); `WANDB_MODE=disabled` or
  `--trainer.logger false` turns it off;
- a non-finite loss ends the run with one message and exit code 1; bad input (missing or corrupt files, a
  checkpoint of another model, an unwritable folder) with one `error:` line and exit code 2.
"""

from __future__ import annotations

import netrc
import os
import sys
import time
import warnings
from typing import Any

import torch
from pytorch_lightning import LightningModule, Trainer
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.cli import LightningCLI, SaveConfigCallback

from datamodules import ImageDataModule
from lightning_models.base import NonFiniteLossError
from lightning_models.callbacks import RunCheckpoint, find_last_checkpoint, run_dir


class SaveRunConfig(SaveConfigCallback):
    """Writes the resolved config as `<run>/config.yaml` (a resumed run adds `config-resumed-<time>.yaml`) and sends
    it to every logger (W&B shows it as the run's config)."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        pass  # the run folder is known only after RunCheckpoint.setup; save in on_fit_start

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.already_saved or not trainer.is_global_zero:
            return
        folder = run_dir(trainer) or trainer.default_root_dir
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, self.config_filename)
        if os.path.exists(path):
            path = os.path.join(folder, f"config-resumed-{time.strftime('%Y%m%d-%H%M%S')}.yaml")
        self.parser.save(self.config, path, overwrite=True, multifile=False)
        for logger in trainer.loggers:
            logger.log_hyperparams({"config": self.config.clone().as_dict()})
        self.already_saved = True


class GenerativeCLI(LightningCLI):
    """LightningCLI with the links, run folders and checks described in this module's docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        given = kwargs.get("args")
        self._command_line = [str(a) for a in given] if isinstance(given, list) else sys.argv[1:]
        kwargs.setdefault("save_config_callback", SaveRunConfig)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        super().__init__(LightningModule, ImageDataModule, *args, subclass_mode_model=True, subclass_mode_data=True,
                         **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        # "instantiate" links: the values are properties of the datamodule (they depend on its options).
        parser.link_arguments("data.image_shape", "model.init_args.image_shape", apply_on="instantiate")
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Callback]) -> Trainer:
        if config.get("strategy") == "ddp" and not self.model.automatic_optimization:
            # A discriminator step leaves the generator without gradients (and vice versa): DDP must be told.
            config["strategy"] = "ddp_find_unused_parameters_true"
        return super()._instantiate_trainer(config, callbacks)

    def _parse_ckpt_path(self) -> None:
        """With `--ckpt_path`, the model is built with the options saved in the checkpoint (what it was trained
        with), except those given explicitly as `--model.<option>` on this command line, which win. `last` is
        resolved to the newest run's last.ckpt first (an error when there is none). A checkpoint of another model
        class is refused, naming both."""
        sub = self.config.get("subcommand")
        if not sub:
            return
        cfg = self.config[sub]
        ckpt = cfg.get("ckpt_path")
        if ckpt == "last":
            root = cfg.trainer.default_root_dir or "."
            found = find_last_checkpoint(root)
            if found is None:
                raise FileNotFoundError(
                    f"--ckpt_path last: no run under {os.path.abspath(root)} has checkpoints/last.ckpt. Start a new "
                    "run without --ckpt_path, or pass the checkpoint file, or set --trainer.default_root_dir to the "
                    "folder of the run to resume.")
            print(f"--ckpt_path last: {found}", file=sys.stderr)
            cfg.ckpt_path = ckpt = found
        if not ckpt or ckpt in ("best", "hpc", "registry"):
            return
        if not os.path.isfile(ckpt):
            raise FileNotFoundError(f"--ckpt_path {ckpt}: no such checkpoint file")
        hparams = dict(torch.load(ckpt, weights_only=True, map_location="cpu").get("hyper_parameters") or {})
        saved_class = hparams.pop("_class_path", None)
        hparams.pop("_instantiator", None)
        wanted = cfg.get("model", {}).get("class_path")
        if saved_class and wanted and saved_class.rsplit(".", 1)[-1] != wanted.rsplit(".", 1)[-1]:
            raise ValueError(f"--ckpt_path {ckpt} holds a {saved_class}, but the config's model is {wanted}: "
                             "pass that run's config (its config.yaml) or a checkpoint of this model")
        if not saved_class or not hparams:
            return
        explicit = set()
        for arg in self._command_line:
            if arg.startswith("--model."):
                explicit.add(arg[len("--model."):].split("=", 1)[0].removeprefix("init_args."))
        linked = {"image_shape", "num_classes"}  # always from the datamodule
        keep = {k: v for k, v in hparams.items() if k not in explicit and k not in linked}
        self.config = self.parser.parse_object({sub: {"model": {"class_path": saved_class, "init_args": keep}}},
                                               self.config)

    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict[str, Any]:
        kwargs = super()._prepare_subcommand_kwargs(subcommand)
        ckpt = kwargs.get("ckpt_path")  # `last` was resolved in _parse_ckpt_path
        for cb in self.trainer.callbacks:
            if isinstance(cb, RunCheckpoint):
                cb.resume_from = ckpt
        return kwargs


# Lightning noise that says nothing to a user of these configs: GANs have no validation step (their quality is
# measured by `test`), and pytorch-lightning 2.6 trips over a torch 2.14 deprecation internally.
warnings.filterwarnings("ignore", message=".*val_dataloader.* but have no .validation_step.*")
warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")


def _default_wandb_mode() -> None:
    """Without W&B credentials, log offline instead of failing at the login prompt (tests, clusters, laptops)."""
    if os.environ.get("WANDB_MODE") or os.environ.get("WANDB_API_KEY"):
        return
    try:
        if netrc.netrc().authenticators("api.wandb.ai"):
            return
    except (OSError, netrc.NetrcParseError):
        pass
    os.environ["WANDB_MODE"] = "offline"


#: What bad input raises in this collection (missing/corrupt files, wrong options, unwritable folders, a checkpoint
#: of another model): `main` prints the message alone and exits with 2. Set GENERATIVE_TRACEBACK=1 to see where.
INPUT_ERRORS = (FileNotFoundError, NotADirectoryError, PermissionError, ValueError)


def main(args: list[str] | None = None) -> int:
    """Runs the CLI; returns the exit code: 0 done, 1 a non-finite loss stopped training, 2 bad input (one
    `error: ...` line; option and config errors exit with 2 from the argument parser, with usage)."""
    _default_wandb_mode()
    try:
        GenerativeCLI(args=args)
    except NonFiniteLossError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except INPUT_ERRORS as err:
        if os.environ.get("GENERATIVE_TRACEBACK"):
            raise
        print(f"error: {_user_message(err)}\n(set GENERATIVE_TRACEBACK=1 to see the traceback)", file=sys.stderr)
        return 2
    return 0


def _user_message(err: BaseException) -> str:
    """The message a user needs. jsonargparse wraps an error raised while building a model (e.g. a missing
    upstream checkpoint) in "Does not validate against any of the Union subtypes ... Errors: - <ours> - Expected
    a NoneType ... Given value: <the whole namespace>": keep only our line."""
    text = str(err)
    if "Does not validate against any of the Union subtypes" not in text:
        return text
    reasons = [line.strip()[2:] for line in text.splitlines() if line.strip().startswith("- ")]
    reasons = [r for r in reasons if not r.startswith("Expected a <class 'NoneType'>")]
    return "\n".join(reasons) or text


if __name__ == "__main__":
    sys.exit(main())
