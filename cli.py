"""Command line of the collection: `python cli.py fit|validate|test|predict --config configs/<experiment>.yaml`.

LightningCLI in subclass mode: each config names its model and datamodule class. What the data decides (image
shape, number of classes) is linked into the model, so the two cannot disagree. On top of LightningCLI:
- every run gets its own folder `<default_root_dir>/<run>/` with `checkpoints/last.ckpt` and `config.yaml`;
- `--ckpt_path last` resumes the newest run's `last.ckpt`, and is an error when there is none;
- Ctrl-C, SIGTERM or SLURM's requeue signal during `fit` saves `last.ckpt` after the current batch and exits with
  128 + the signal number, printing how to resume (see `RunCheckpoint`);
- `test`/`predict`/`validate` on a run's checkpoint log to a new W&B run in the fit's W&B group (with the config),
  print where they wrote, and `predict` writes to a new folder `<run>/predictions/<time>/` per call;
- plain `--trainer.strategy ddp` works for adversarial models (their steps leave one network without gradients);
- W&B logs offline when no W&B credentials are set up (`wandb sync` uploads later); `WANDB_MODE=disabled` or
  `--trainer.logger false` turns it off;
- a non-finite loss ends the run with one message and exit code 1; bad input (missing or corrupt files, a
  checkpoint of another model, an unwritable folder) with one `error:` line and exit code 2, checked before any
  logger, W&B run or folder is created (`_check_before_start`), so a refused command leaves nothing behind.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import netrc
import os
import secrets
import shlex
import string
import sys
import time
import warnings
from typing import Any

from pytorch_lightning import LightningModule, Trainer
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.cli import LightningCLI, SaveConfigCallback

from datamodules import ImageDataModule
from lightning_models._moved import current_class_path
from lightning_models.base import NonFiniteLossError, TrainingModule
from lightning_models.callbacks import (WANDB_RUN_KEY, ImageWriter, RunCheckpoint, RunInterrupted, find_last_checkpoint,
                                        run_dir)
from lightning_models.checkpoints import read_checkpoint, rejected_value


class SaveRunConfig(SaveConfigCallback):
    """Writes the resolved config as `<run>/config.yaml` (a resumed run adds `config-resumed-<time>.yaml`) and sends
    it to every logger (W&B shows it as the run's config)."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # fit: the run folder is known only after RunCheckpoint.setup, so the file is written in on_fit_start.
        # test/predict/validate write no file, but their W&B run (linked to the fit's) gets the config too.
        if stage != "fit" and trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_hyperparams({"config": self.config.clone().as_dict()})

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
        self._checkpoint_wandb_run: dict | None = None  # the W&B run that wrote --ckpt_path, read in _parse_ckpt_path
        self._checkpoint: tuple[str, dict] | None = None  # --ckpt_path and its contents, until checked
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
        link_wandb_runs(config.get("logger"), self.subcommand, self._checkpoint_wandb_run)
        for name in integer_limits(self._command_line):
            if config.get(name) == 1.0:
                config[name] = 1  # one batch, as written (the parser made the 1 a float: 100% of the batches)
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
        wanted = cfg.get("model", {}).get("class_path")
        kind = wanted.rsplit(".", 1)[-1] if wanted else "model"
        path, saved = read_checkpoint(ckpt, "--ckpt_path", kind, CKPT_HINT)
        if path != ckpt:  # a run folder or run root: its (newest) last.ckpt
            print(f"--ckpt_path {ckpt}: {path}", file=sys.stderr)
            cfg.ckpt_path = path
        self._checkpoint = (path, saved)  # checked against the built model in _check_before_start
        self._checkpoint_wandb_run = saved.get(WANDB_RUN_KEY)
        hparams = dict(saved.get("hyper_parameters") or {})
        saved_class = hparams.pop("_class_path", None)
        if saved_class:  # a checkpoint written before issue 29's layout names the class by its old module
            saved_class = current_class_path(saved_class)
        hparams.pop("_instantiator", None)
        holds = saved_class or saved.get("model_class")
        if holds and wanted and holds.rsplit(".", 1)[-1] != wanted.rsplit(".", 1)[-1]:
            raise ValueError(f"--ckpt_path {path!r} holds a {holds}, but the config's model is {wanted}: "
                             "pass that run's config (its config.yaml) or a checkpoint of this model")
        if not saved_class or not hparams:
            return
        explicit = set()
        for arg in self._command_line:
            if arg.startswith("--model."):
                explicit.add(arg[len("--model."):].split("=", 1)[0].removeprefix("init_args."))
        linked = {"image_shape", "num_classes"}  # always from the datamodule
        keep = {k: v for k, v in hparams.items() if k not in explicit and k not in linked}
        unknown = sorted(set(keep) - init_options(saved_class))
        if unknown:
            raise ValueError(f"--ckpt_path {path!r} was written by another version of this code: its options "
                             f"{', '.join(unknown)} are not options of {saved_class} now. Retrain with the current "
                             "code, or use the version that wrote it")
        exit_on_error, self.parser.exit_on_error = self.parser.exit_on_error, False
        try:
            self.config = self.parser.parse_object({sub: {"model": {"class_path": saved_class, "init_args": keep}}},
                                                   self.config)
        except argparse.ArgumentError as err:  # a saved value the code no longer accepts (e.g. a renamed choice)
            raise ValueError(f"--ckpt_path {path!r} was written with an option value this version of the code does "
                             f"not accept ({rejected_value(err)}). Give that option a current value on the command "
                             "line (--model.<option> VALUE), retrain, or use the version that wrote it") from err
        finally:
            self.parser.exit_on_error = exit_on_error

    def _run_subcommand(self, subcommand: str) -> None:
        self._check_before_start(subcommand)
        make_wandb_dirs(self.trainer)
        super()._run_subcommand(subcommand)

    def _check_before_start(self, subcommand: str) -> None:
        """Everything that can refuse the command, before any logger, W&B run, folder or checkpoint is created
        (Lightning starts the loggers before it sets the data up and restores the checkpoint): the data (read,
        or downloaded, and split now; the datamodule keeps it, so this costs nothing later), the files the model
        reads for this stage (`check_inputs`), `--ckpt_path` against the built model, and for `fit` the run
        folder. On the other processes of a multi-process run Lightning's own order applies (this one, local
        rank 0, checked before it started them)."""
        checkpoint, self._checkpoint = self._checkpoint, None
        if self.trainer.local_rank != 0:
            return
        stage = subcommand if subcommand in ("fit", "validate", "test", "predict") else None
        if self.datamodule is not None:
            self.datamodule.prepare_data()
            self.datamodule.setup(stage)
        if checkpoint is not None:
            check_checkpoint_fits(self.model, checkpoint[1], checkpoint[0], resume=subcommand == "fit")
        if isinstance(self.model, TrainingModule):
            self.model.check_inputs(stage)
        if subcommand == "fit":
            check_creatable(self.trainer.default_root_dir, "the run's checkpoints",
                            "set --trainer.default_root_dir to a writable folder")
        for callback in self.trainer.callbacks if subcommand == "predict" else []:
            if isinstance(callback, ImageWriter) and callback.output_dir:
                check_creatable(callback.output_dir, "predictions", "pass a writable folder as the ImageWriter "
                                "callback's output_dir (--trainer.callbacks.output_dir) or fix its permissions")

    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict[str, Any]:
        kwargs = super()._prepare_subcommand_kwargs(subcommand)
        ckpt = kwargs.get("ckpt_path")  # `last` was resolved in _parse_ckpt_path
        for cb in self.trainer.callbacks:
            if isinstance(cb, RunCheckpoint):
                cb.resume_from = ckpt
        return kwargs

    def after_test(self) -> None:
        self._print_log_locations("test")

    def after_validate(self) -> None:
        self._print_log_locations("validate")

    def after_predict(self) -> None:
        self._print_log_locations("predict")

    def _print_log_locations(self, subcommand: str) -> None:
        if not self.trainer.is_global_zero:
            return
        for logger in self.trainer.loggers:
            if type(logger).__name__ == "WandbLogger" and not getattr(logger.experiment, "disabled", False):
                run = logger.experiment
                where = f"{os.path.dirname(run.dir)} (offline: `wandb sync` uploads it)" if run.offline else run.url
                print(f"{subcommand}: logged to W&B run {run.name!r} ({run.id}, group {run.group!r}): {where}",
                      file=sys.stderr)
            elif getattr(logger, "log_dir", None):
                print(f"{subcommand}: logged to {os.path.abspath(logger.log_dir)}", file=sys.stderr)


def link_wandb_runs(logger: Any, subcommand: str, checkpoint_run: dict | None) -> None:
    """Ties the W&B runs of one training run together, before they start. A new fit gets a W&B group of its own
    (`<name>-<run id>`); a command on a checkpoint that recorded its W&B run (`RunCheckpoint`) starts a new W&B run
    in that group, named `<fit name>-<command>`, with job type `<command>` (a resumed fit: `fit`). A new run rather
    than the fit's own id: offline, two runs sharing an id overwrite each other's history on `wandb sync`
    (wandb#3841, #5865; wandb 0.31 ignores `resume` offline). Options set in the config (id, group) win."""
    loggers = logger if isinstance(logger, list) else [logger]
    for wandb_logger in (lg for lg in loggers if type(lg).__name__ == "WandbLogger"):
        init = wandb_logger._wandb_init  # what WandbLogger passes to wandb.init (experiment not created yet)
        if init.get("anonymous") is None:
            init.pop("anonymous", None)  # wandb 0.31 warns that the setting has no effect, whatever its value
        if init.get("id") or init.get("group"):
            continue
        if checkpoint_run:
            init["group"] = checkpoint_run.get("group") or checkpoint_run.get("id")
            init["job_type"] = subcommand
            if subcommand != "fit":
                init["name"] = f"{checkpoint_run.get('name') or init.get('name')}-{subcommand}"
        elif subcommand == "fit":
            init["id"] = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
            init["group"] = f"{init.get('name') or init.get('project')}-{init['id']}"
            init["job_type"] = "fit"


LIMITS = ("limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches")


def integer_limits(command_line: list[str]) -> set[str]:
    """The Trainer's `limit_*_batches` options whose last value on `command_line` (or, if not there, in its last
    `--config` file that sets it) is the integer 1. LightningCLI's parser turns every value of these options into a
    float, and Lightning reads 1.0 as "100% of the batches" and 1 as "one batch": the integer the user wrote is
    restored from the command line and the config files."""
    import yaml

    found: dict[str, bool] = {}
    for i, arg in enumerate(command_line):
        key, eq, value = arg.partition("=")
        if not eq:
            value = command_line[i + 1] if i + 1 < len(command_line) else ""
        if key == "--config" and os.path.isfile(value):
            with open(value) as f:
                trainer = (yaml.safe_load(f) or {}).get("trainer") or {}
            for name in LIMITS:
                if isinstance(trainer, dict) and name in trainer:
                    found[name] = type(trainer[name]) is int and trainer[name] == 1
        elif key.startswith("--trainer.") and key[len("--trainer."):] in LIMITS:
            found[key[len("--trainer."):]] = value.strip() == "1"
    return {name for name, one in found.items() if one}


def init_options(class_path: str) -> set[str]:
    """The `__init__` options of the class at `class_path`, those it passes on through `**kwargs` included."""
    module, _, name = class_path.rpartition(".")
    options: set[str] = set()
    for cls in importlib.import_module(module).__dict__[name].__mro__:
        if "__init__" not in cls.__dict__:
            continue
        parameters = inspect.signature(cls.__init__).parameters.values()
        options |= {p.name for p in parameters if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)} - {"self"}
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return options


def make_wandb_dirs(trainer: Trainer) -> None:
    """Creates the W&B loggers' folders (else wandb warns "git root ... does not exist"), once the command's inputs
    have been checked: a refused command leaves no folder behind."""
    for logger in trainer.loggers:
        folder = getattr(logger, "_wandb_init", {}).get("dir") if type(logger).__name__ == "WandbLogger" else None
        if folder:
            os.makedirs(folder, exist_ok=True)


def check_checkpoint_fits(model: LightningModule, checkpoint: dict, path: str, resume: bool) -> None:
    """Runs on the built model what restoring `checkpoint` will run (the model's `on_load_checkpoint` checks, a
    strict weight load) and, to resume `fit`, checks it holds the training state; errors name `--ckpt_path`."""
    trial = {**checkpoint, "state_dict": dict(checkpoint["state_dict"])}  # the hooks may edit the dict
    try:
        model.on_load_checkpoint(trial)
        model.load_state_dict(trial["state_dict"], strict=model.strict_loading)
    except (ValueError, KeyError) as err:
        raise ValueError(f"--ckpt_path {path!r}: {_first_line(err)}") from err
    missing = [key for key in ("optimizer_states", "lr_schedulers", "loops") if key not in checkpoint]
    if resume and missing:
        raise ValueError(f"--ckpt_path {path!r} holds weights only (no {', '.join(missing)}), so training cannot "
                         "resume from it: use it with test/predict, or resume from a last.ckpt that `cli.py fit` "
                         "wrote (`--ckpt_path last`)")


def check_creatable(folder: str, what: str, fix: str) -> None:
    """Raises a PermissionError naming `folder` and `fix` when `folder` cannot be created or written, without
    creating anything (its nearest existing parent must be a writable folder)."""
    folder = os.path.abspath(folder)
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        reason = f"{existing} is a file"
    elif not os.access(existing, os.W_OK | os.X_OK):
        reason = f"{existing} is not writable"
    else:
        return
    raise PermissionError(f"cannot write {what} to {folder!r} ({reason}): {fix}")


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:500]


# Lightning noise that says nothing to a user of these configs: GANs have no validation step (their quality is
# measured by `test`), and pytorch-lightning 2.6 trips over a torch 2.14 deprecation internally.
warnings.filterwarnings("ignore", message=".*val_dataloader.* but have no .validation_step.*")
warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")


class _DropTips(logging.Filter):
    """Drops Lightning's advertisement ("💡 Tip: ... litlogger ...") printed at every start."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


for _handler in logging.getLogger("pytorch_lightning").handlers:
    _handler.addFilter(_DropTips())


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


#: What to pass instead of a bad --ckpt_path.
CKPT_HINT = ("Pass a checkpoint that `python cli.py fit` wrote with this config (<default_root_dir>/<run>/checkpoints/"
             "last.ckpt, or its run folder), or `--ckpt_path last` for the newest run's")

#: What bad input raises in this collection (missing/corrupt files, wrong options, unwritable folders, a checkpoint
#: of another model): `main` prints the message alone and exits with 2. Set GENERATIVE_TRACEBACK=1 to see where.
INPUT_ERRORS = (FileNotFoundError, NotADirectoryError, PermissionError, ValueError)


def main(args: list[str] | None = None) -> int:
    """Runs the CLI; returns the exit code: 0 done, 1 a non-finite loss stopped training, 2 bad input (one
    `error: ...` line; option and config errors exit with 2 from the argument parser, with usage)."""
    _default_wandb_mode()
    try:
        GenerativeCLI(args=args)
    except RunInterrupted as stop:
        if stop.rank_zero:
            print(f"{stop.message}. Resume with: {resume_command(args)}", file=sys.stderr)
        return 128 + stop.signum
    except NonFiniteLossError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except INPUT_ERRORS as err:
        if os.environ.get("GENERATIVE_TRACEBACK"):
            raise
        print(f"error: {_user_message(err)}\n(set GENERATIVE_TRACEBACK=1 to see the traceback)", file=sys.stderr)
        return 2
    return 0


def resume_command(args: list[str] | None) -> str:
    """The command line of this run with `--ckpt_path last` (instead of any --ckpt_path it had)."""
    given = list(sys.argv[1:] if args is None else args)
    kept, skip = [], False
    for arg in given[1:]:  # given[0] is the subcommand
        if skip or arg.startswith("--ckpt_path="):
            skip = False
            continue
        if arg == "--ckpt_path":
            skip = True
            continue
        kept.append(arg)
    return shlex.join(["python", "cli.py", "fit", *kept, "--ckpt_path", "last"])


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
