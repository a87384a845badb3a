"""Reading the checkpoints users pass: `--ckpt_path`, `--model.classifier_path`, the inversion's `--model.gan_path`,
the latent models' `--model.autoencoder_path` and `Model.load_from_checkpoint(path)`.

One reader for all of them, so every bad file (missing, a folder without runs, unreadable, empty, text, truncated,
a plain `torch.save` dict, pickled code, another model, an older layout) gets the same kind of message: the option,
the file, what is wrong with it and what to pass instead. Loading is always `weights_only`: a checkpoint of this
project holds tensors and plain data, and a file holding anything else (a pickled `__reduce__` payload) is refused
before any of it runs.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import sys
import warnings
from typing import Any

import torch

#: What to pass instead when the caller has nothing more specific to say.
DEFAULT_HINT = ("Pass a checkpoint written by `python cli.py fit` (<default_root_dir>/<run>/checkpoints/last.ckpt, "
                "or the run root: its newest last.ckpt)")
_ZIP, _PICKLE = b"PK\x03\x04", b"\x80"


def _label(option: str | None) -> str:
    return option or "checkpoint"


def _a(kind: str) -> str:
    return f"an {kind}" if kind[:1].upper() in "AEIOU" else f"a {kind}"


def resolve_checkpoint(path: str | os.PathLike | None, option: str | None = None, kind: str = "model",
                       hint: str = DEFAULT_HINT) -> str:
    """The checkpoint file `path` names: the file itself, or for a folder its `last.ckpt` (a `checkpoints/` folder),
    its run's (a run folder) or its newest run's (a run root such as runs/dcgan_mnist). A missing path, or a folder
    with no checkpoint, is a FileNotFoundError naming `option`, the path and `hint`."""
    from lightning_models.callbacks import find_last_checkpoint

    label = _label(option)
    if path is None or str(path) == "":
        raise FileNotFoundError(f"{label} is empty: pass {_a(kind)} checkpoint. {hint}.")
    path = os.fspath(path)
    if os.path.isdir(path):
        for candidate in (os.path.join(path, "last.ckpt"), os.path.join(path, "checkpoints", "last.ckpt")):
            if os.path.isfile(candidate):
                return candidate
        found = find_last_checkpoint(path)
        if found is None:
            raise FileNotFoundError(f"{label} {path!r} is a folder with no checkpoint in it (no last.ckpt, no "
                                    f"<run>/checkpoints/last.ckpt). {hint}.")
        return found
    if not os.path.exists(path):
        raise FileNotFoundError(f"{label} {path!r}: no such {kind} checkpoint. {hint}.")
    return path


def read_checkpoint(path: str | os.PathLike | None, option: str | None = None, kind: str = "model",
                    hint: str = DEFAULT_HINT) -> tuple[str, dict[str, Any]]:
    """(the resolved file, its contents) of the Lightning checkpoint at `path` (see `resolve_checkpoint`), loaded
    on the CPU with `weights_only`. Every way the file can be wrong is a FileNotFoundError, PermissionError or
    ValueError of one line naming `option`, the file, what is wrong and `hint` (what to pass instead)."""
    path = resolve_checkpoint(path, option, kind, hint)
    return path, _load(path, _read_bytes(path, option), option, kind, hint)


def _read_bytes(path: str, option: str | None) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except PermissionError as err:
        raise PermissionError(f"{_label(option)} {path!r} cannot be read ({err.strerror}): give your user read "
                              "permission (chmod u+r) or pass a copy you can read.") from err
    except OSError as err:
        raise FileNotFoundError(f"{_label(option)} {path!r} cannot be read ({err.strerror or err}).") from err


def _load(path: str, data: bytes, option: str | None, kind: str, hint: str) -> dict[str, Any]:
    def refuse(reason: str) -> ValueError:
        return ValueError(f"{_label(option)} {path!r} is not {_a(kind)} checkpoint: {reason}. {hint}.")

    if not data:
        raise refuse("the file is empty (0 bytes; an interrupted save or copy?)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols before it refuses the file
            checkpoint = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load's ways of failing: KeyError, EOFError, RuntimeError, UnpicklingError
        raise refuse(_why_unreadable(data, err)) from err
    if not isinstance(checkpoint, dict):
        raise refuse(f"it holds a {type(checkpoint).__name__} saved with torch.save, not a Lightning checkpoint")
    missing = [key for key in ("state_dict", "pytorch-lightning_version") if key not in checkpoint]
    if missing:
        keys = ", ".join(map(repr, list(checkpoint)[:6])) + (", ..." if len(checkpoint) > 6 else "")
        raise refuse(f"it is a plain torch.save dict (keys {keys or 'none'}) without the Lightning checkpoint's "
                     f"{' and '.join(map(repr, missing))}")
    return checkpoint


def _why_unreadable(data: bytes, err: Exception) -> str:
    """What is wrong with a file torch.load refused, from its first bytes and the error."""
    detail = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
    detail = detail.split(". ")[0][:160]  # torch's first sentence; the rest is advice about torch.load itself
    blocked = re.search(r"GLOBAL ([\w.]+)", str(err))
    if blocked:
        return (f"it holds Python objects ({blocked.group(1)}), not only tensors and plain data, and loading them "
                "could run code: refused without running it")
    if data.startswith(_ZIP):
        return f"the file is truncated or corrupt (an interrupted save or copy?): {detail}"
    if data.startswith(_PICKLE):
        if isinstance(err, EOFError):
            return "the file is truncated (an interrupted save or copy?)"
        return f"it is a pickle that a weights-only load refuses ({detail}); loading it otherwise could run code"
    head = data[:40]
    if all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        start = head.decode().strip().splitlines()[0][:30] if head.strip() else ""
        return f"it is a text file (it starts with {start!r}), not one written by torch.save"
    return "it is not a file written by torch.save"


def class_path(cls: type) -> str:
    """The path a checkpoint records for `cls`: by its family's package when that exports it, as configs name it
    (`lightning_models.gan.GAN`, not `lightning_models.gan.gan.GAN`), else by its module."""
    package = sys.modules.get(cls.__module__.rpartition(".")[0])
    if package is not None and vars(package).get(cls.__qualname__) is cls:
        return f"{package.__name__}.{cls.__qualname__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def saved_class(checkpoint: dict[str, Any]) -> str | None:
    """The model class a checkpoint records: the CLI's `_class_path` (as configs name it), else the module path
    `TrainingModule.on_save_checkpoint` records."""
    hparams = checkpoint.get("hyper_parameters") or {}
    return hparams.get("_class_path") or checkpoint.get("model_class")


def _import_saved_module(class_path: str | None) -> None:
    """Imports the (old) module a checkpoint's class path names (`lightning_models.classifier`, an alias of
    `lightning_models.metrics.classifier`): Lightning resolves a checkpoint's `_class_path` in `sys.modules` only (it
    never imports code on a checkpoint's word), so in a fresh process the alias must be imported first. Only the
    project's own modules are imported (the old paths through the alias hook that `lightning_models/__init__.py`
    installs); any other path, or one that does not exist, is left to Lightning's check."""
    module = (class_path or "").rpartition(".")[0]
    if module.startswith("lightning_models.") and module not in sys.modules:
        import importlib

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                importlib.import_module(module)
            except ImportError:
                pass  # Lightning refuses the checkpoint with its own message


def rejected_value(err: argparse.ArgumentError) -> str:
    """One line from jsonargparse's (multi-line) error for a value an option does not accept: the innermost
    `Parser key "..."` line and the reason after it, e.g. `Parser key "discriminator_condition": Expected a
    typing.Literal[...]. Got value: input`."""
    lines = [line.strip() for line in str(err).strip().splitlines()]
    keys = [i for i, line in enumerate(lines) if line.startswith("Parser key")]
    return " ".join(lines[keys[-1]:keys[-1] + 2] if keys else lines[:1])[:400]


def load_module(cls: type, path: str | os.PathLike | None, option: str | None = None, hint: str = DEFAULT_HINT,
                map_location: Any = None, **load_kwargs: Any) -> Any:
    """`cls` loaded from the checkpoint at `path` (a file or a run root) with Lightning's `load_from_checkpoint`,
    after `read_checkpoint`'s checks; a checkpoint of another class, or one whose options or weights do not fit
    `cls` (another model, an older layout of this project), is a ValueError naming `option`, the file and `hint`."""
    import pytorch_lightning as pl

    kind = cls.__name__
    path = resolve_checkpoint(path, option, kind, hint)
    data = _read_bytes(path, option)
    checkpoint = _load(path, data, option, kind, hint)
    label = _label(option)
    holds = saved_class(checkpoint)
    if holds and holds.rsplit(".", 1)[-1] != cls.__qualname__:
        raise ValueError(f"{label} {path!r} holds a {holds}, not {_a(kind)} checkpoint "
                         f"({holds.rsplit('.', 1)[-1]}.load_from_checkpoint loads it). {hint}.")
    del checkpoint  # Lightning reads the bytes again (no second read of the file)
    _import_saved_module(holds)
    original = pl.LightningModule.__dict__["load_from_checkpoint"].__func__
    try:
        return original(cls, io.BytesIO(data), map_location=map_location, weights_only=True, **load_kwargs)
    except argparse.ArgumentError as err:  # an option value the code no longer accepts (e.g. a renamed choice)
        raise ValueError(f"{label} {path!r}: it was written with an option value this version of the code does not "
                         f"accept ({rejected_value(err)}). {hint}.") from err
    except (ValueError, TypeError, KeyError, RuntimeError) as err:  # our hooks' checks, options or weights that differ
        detail = (str(err).strip().splitlines() or [type(err).__name__])[0][:400]
        if not isinstance(err, ValueError):
            detail = (f"it is not {_a(kind)} checkpoint of this version of the code ({type(err).__name__}: "
                      f"{detail})")
        raise ValueError(f"{label} {path!r}: {detail}. {hint}.") from err


# --- does a loaded checkpoint fit the model built from the config? ------------------------------------------------
def _plain(value: Any) -> Any:
    """Lists and tuples compare equal (YAML gives lists, code tuples)."""
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def check_fits(module: Any, checkpoint: dict[str, Any]) -> None:
    """Raises a ValueError (without the path: callers add it) when `checkpoint` holds another model class, was
    trained on another image shape, or has networks of other sizes than `module`, naming the options that differ."""
    cls = type(module)
    mine = class_path(cls)
    saved = checkpoint.get("model_class")
    if saved is not None and saved.rsplit(".", 1)[-1] != cls.__qualname__:
        raise ValueError(f"this checkpoint holds a {saved}, not a {mine}: use the config (or class) it was "
                         f"trained with, e.g. `--config` of that run's config.yaml, or {saved}.load_from_checkpoint")
    saved_hparams = checkpoint.get("hyper_parameters") or {}
    hparams = module.hparams
    saved_shape, my_shape = saved_hparams.get("image_shape"), hparams.get("image_shape")
    if saved_shape is not None and my_shape is not None and tuple(saved_shape) != tuple(my_shape):
        raise ValueError(f"this checkpoint was trained on images of shape {tuple(saved_shape)} (C, H, W), but the "
                         f"data gives {tuple(my_shape)}: use the same --data.image_size / --data.dataset as in "
                         "training (see the run's config.yaml)")
    my_weights = module.state_dict()
    saved_weights = checkpoint.get("state_dict", {})
    if any(k in my_weights and tuple(v.shape) != tuple(my_weights[k].shape) for k, v in saved_weights.items()):
        differ = {k: (v, hparams.get(k)) for k, v in saved_hparams.items()
                  if not k.startswith("_") and k in hparams and _plain(v) != _plain(hparams.get(k))}
        listing = ", ".join(f"{k}: {a!r} in the checkpoint, {b!r} now" for k, (a, b) in differ.items())
        raise ValueError(f"this checkpoint's networks have other sizes than the model built from the config "
                         f"({listing or 'options differ'}): pass the options it was trained with, e.g. "
                         "`--config <run>/config.yaml` (each run saves its resolved config there)")


def check_weight_names(module: Any, state_dict: Any) -> None:
    """Raises a ValueError when `state_dict` lacks weights `module` has or holds others (another model, or an
    older layout of this project's), with counts and a few names rather than torch's pages of them."""
    mine = module.state_dict().keys()
    missing = [k for k in mine if k not in state_dict]
    unexpected = [k for k in state_dict if k not in mine]
    if missing or unexpected:
        name = type(module).__name__
        listing = "; ".join(f"{len(keys)} {what}, e.g. {', '.join(keys[:3])}"
                            for keys, what in ((missing, "missing"), (unexpected, "unexpected")) if keys)
        raise ValueError(f"its weights do not fit {_a(name)} built from its options ({listing}): it is not "
                         f"{_a(name)} checkpoint, or one written by an older version of this code (retrain with the "
                         "current code, or load it with the version that wrote it)")
