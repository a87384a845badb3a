"""Old module paths of `lightning_models` (before issue 29 grouped the modules into one package per family).

`install()` (called by `lightning_models/__init__.py`) keeps every old path working, with a DeprecationWarning that
names the new one, so configs, scripts and checkpoints written before the move still run:
- a moved module (`lightning_models.cyclegan`, `lightning_models.vae_evaluation`, ...) imports as its new module (the
  same module object: `lightning_models.cyclegan.CycleGAN is lightning_models.translation.CycleGAN`), through an
  import hook; class paths in old configs and in checkpoints' `_class_path` resolve through it;
- an old module whose name is now its family's package (`lightning_models.gan`, `.vae`, `.inversion`,
  `.translation`) keeps its old names: the package exports its LightningModules, and any other name the old module
  had (`lightning_models.gan.warmup_ema`) comes from the module that now holds it.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType
from typing import Any, Callable

#: old module -> new module, both under `lightning_models`
MOVED_MODULES = {
    "autoencoder": "latent.autoencoder",
    "classifier": "metrics.classifier",
    "color_latents": "vae.color_latents",
    "cyclegan": "translation.cyclegan",
    "evaluation": "metrics.evaluation",
    "feature_metrics": "metrics.feature_metrics",
    "few_label": "latent.few_label",
    "inception_metrics": "metrics.inception",
    "infogan": "gan.infogan",
    "infogan_eval": "gan.infogan_evaluation",
    "interpolation": "latent.interpolation",
    "inversion_eval": "inversion.evaluation",
    "latent_gan": "latent.latent_gan",
    "latent_plots": "vae.latent_plots",
    "latents": "vae.latents",
    "pix2pix": "translation.pix2pix",
    "pool": "translation.pool",
    "restoration": "inversion.restoration",
    "split_rows": "latent.split_rows",
    "translation_eval": "translation.evaluation",
    "vae_evaluation": "vae.evaluation",
}
#: old module whose name is now a package -> the module that holds the old module's names
BECAME_PACKAGE = {
    "gan": "gan.gan",
    "inversion": "inversion.inversion",
    "translation": "translation.base",
    "vae": "vae.vae",
}
_PREFIX = "lightning_models."


def new_module(old: str) -> str | None:
    """The module that now holds the old module `old` (`lightning_models.cyclegan` ->
    `lightning_models.translation.cyclegan`); None when `old` did not move."""
    name = old.removeprefix(_PREFIX)
    if not old.startswith(_PREFIX) or name not in MOVED_MODULES:
        return None
    return _PREFIX + MOVED_MODULES[name]


def current_class_path(class_path: str) -> str:
    """`class_path` with a moved module replaced by its new one (`lightning_models.cyclegan.CycleGAN` ->
    `lightning_models.translation.cyclegan.CycleGAN`); any other path unchanged."""
    module, _, name = class_path.rpartition(".")
    new = new_module(module)
    return f"{new}.{name}" if new else class_path


def _warn(old: str, new: str) -> None:
    warnings.warn(f"{old} moved to {new} (issue 29): import it from there; the old path will be removed",
                  DeprecationWarning, stacklevel=3)


class _AliasLoader(importlib.abc.Loader):
    """Loads an old module name as the (imported) new module object itself."""

    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        _warn(spec.name, self.new)
        module = importlib.import_module(self.new)
        self._spec = module.__spec__  # the import system sets `__spec__` to the alias's; put the module's back
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._spec


class _MovedFinder(importlib.abc.MetaPathFinder):
    """Finds the old module names of `MOVED_MODULES` (and nothing else)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        new = new_module(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(new))


def _old_names(package: ModuleType, holder: str) -> Callable[[str], Any]:
    """A module `__getattr__` for `package`: a name it does not export, that the old module of the same name had, from
    `holder` (its module now), with a DeprecationWarning."""

    def __getattr__(name: str) -> Any:
        if not name.startswith("__"):
            module = importlib.import_module(holder)
            if name in vars(module):
                _warn(f"{package.__name__}.{name}", f"{holder}.{name}")
                return vars(module)[name]
        raise AttributeError(f"module {package.__name__!r} has no attribute {name!r}")

    return __getattr__


def install() -> None:
    """Installs the import hook for the moved modules and the old names of the packages (once)."""
    if not any(isinstance(finder, _MovedFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
    for old, holder in BECAME_PACKAGE.items():
        package = importlib.import_module(_PREFIX + old)
        package.__getattr__ = _old_names(package, _PREFIX + holder)
