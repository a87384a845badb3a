"""The import graph of `lightning_models/` and `datamodules/` (read with `ast`, module-level and function-level
imports alike): no import cycle, and every import points down the layers of issue 29's layout.

    core (base, callbacks, checkpoints, progress, performance, losses, augment)  <  networks  <  metrics  <  families
    families: gan, vae, latent, inversion, translation; a family imports only itself and the layers below, except
    latent -> gan (the latent GANs are GANs). `datamodules` never imports `lightning_models`; models may import
    `datamodules`. Nothing inside the package imports the package itself (`from lightning_models import GAN`) or
    the old-path aliases (`lightning_models._moved`): only `lightning_models/__init__.py` does.
"""

from __future__ import annotations

import ast
import os
from collections import defaultdict

import pytest

from tests.helpers import REPO

PACKAGES = ("lightning_models", "datamodules")
CORE = {"base", "callbacks", "checkpoints", "progress", "performance", "losses", "augment"}
FAMILIES = {"gan", "vae", "latent", "inversion", "translation"}
FAMILY_IMPORTS = {"latent": {"gan"}}  # besides its own family
RANK = {"core": 0, "networks": 1, "metrics": 2, "family": 3}


def module_files(root: str = REPO) -> dict[str, str]:
    """{dotted module name: file} of every module of the packages (a package's `__init__.py` is the package)."""
    modules = {}
    for package in PACKAGES:
        for folder, dirs, files in os.walk(os.path.join(root, package)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    parts = os.path.relpath(path, root)[: -len(".py")].split(os.sep)
                    modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imports_of(path: str, module: str, modules: dict[str, str]) -> set[str]:
    """The modules of `modules` that `path` (module `module`) imports anywhere in its code, functions included.
    `from a.b import c` imports `a.b.c` when that is a module, else `a.b`."""
    tree = ast.parse(open(path).read(), filename=path)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x / from ..a import b
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:  # `import a.b.c` of a module in the packages, else its package
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def import_graph(root: str = REPO) -> dict[str, set[str]]:
    modules = module_files(root)
    return {module: imports_of(path, module, modules) for module, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each as a sorted list."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer(module: str) -> tuple[str, str | None]:
    """(layer, family) of a module of `lightning_models`: core, networks, metrics or family; `lightning_models` itself
    and `_moved` are "api" (above everything)."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] == "_moved":
        return "api", None
    if parts[1] in CORE:
        return "core", None
    if parts[1] in ("networks", "metrics"):
        return parts[1], None
    if parts[1] in FAMILIES:
        return "family", parts[1]
    raise AssertionError(f"{module}: not in the layout of issue 29 (add it to a layer in tests/test_architecture.py)")


def violation(importer: str, imported: str) -> str | None:
    """Why `importer` may not import `imported`, or None when the layers allow it."""
    if importer.startswith("datamodules"):
        return "datamodules never import lightning_models" if imported.startswith("lightning_models") else None
    if imported.startswith("datamodules"):
        return None  # models may use the datamodules
    (mine, my_family), (theirs, their_family) = layer(importer), layer(imported)
    if theirs == "api":
        return None if mine == "api" else ("imports the package `lightning_models` (its __init__) or its old-path "
                                           "aliases: import the module that defines the name")
    if mine == "api":
        return None
    if RANK[theirs] > RANK[mine]:
        return f"{mine} imports {theirs}, a layer above it"
    if mine == "family" and theirs == "family" and their_family != my_family \
            and their_family not in FAMILY_IMPORTS.get(my_family, set()):
        return f"family {my_family} imports family {their_family}"
    return None


def violations(graph: dict[str, set[str]]) -> list[str]:
    return [f"{a} -> {b}: {why}" for a in sorted(graph) for b in sorted(graph[a]) if (why := violation(a, b))]


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_imports_follow_the_layers():
    assert violations(import_graph()) == []


def test_every_module_is_in_a_layer():
    for module in import_graph():
        if module.startswith("lightning_models"):
            layer(module)


@pytest.mark.parametrize("extra, kind", [
    # a cycle only: two core modules that import each other (function-level on one side, as the old circle was)
    (("lightning_models/progress.py", "def _f():\n    from lightning_models.base import TrainingModule\n",
      "lightning_models/base.py", "from lightning_models.progress import phase_progress\n"), "cycle"),
    # the old circle: core base -> metrics.evaluation (-> metrics.classifier -> base)
    (("lightning_models/base.py", "def _f():\n    from lightning_models.metrics.evaluation import SampleEvaluator\n"),
     "both"),
    (("datamodules/base.py", "from lightning_models.callbacks import SampleGrid\n"), "layer"),
    (("lightning_models/gan/gan.py", "from lightning_models.vae.vae import VAE\n"), "layer"),
    (("lightning_models/networks/conv.py", "import lightning_models.metrics.classifier\n"), "layer"),
    # the package itself from inside it: a layering error, and a cycle through lightning_models/__init__.py
    (("lightning_models/vae/vae.py", "from lightning_models import GAN\n"), "both"),
])
def test_the_checks_catch_a_violation(tmp_path, extra, kind):
    """The same checks on a copy of the tree with one bad import added find it."""
    import shutil

    for package in PACKAGES:
        shutil.copytree(os.path.join(REPO, package), tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for file, code in zip(extra[::2], extra[1::2]):
        with open(tmp_path / file, "a") as f:
            f.write("\n\n" + code)
    graph = import_graph(str(tmp_path))
    assert bool(cycles(graph)) == (kind in ("cycle", "both"))
    assert bool(violations(graph)) == (kind in ("layer", "both"))


def test_each_family_package_exports_its_lightning_modules_and_configs_name_them_there():
    import glob
    import importlib

    import pytorch_lightning as pl
    import yaml

    exported = {}
    for package in sorted(FAMILIES | {"metrics"}):
        module = importlib.import_module(f"lightning_models.{package}")
        for name in module.__all__:
            assert issubclass(getattr(module, name), pl.LightningModule), f"lightning_models.{package}.{name}"
            exported[f"lightning_models.{package}.{name}"] = getattr(module, name)
    import lightning_models

    public = {getattr(lightning_models, name) for name in lightning_models.__all__}
    bases = {exported["lightning_models.translation.TranslationModule"], exported["lightning_models.metrics.SampleScores"]}
    assert set(exported.values()) - bases <= public  # the models; the bases of a family stay in their package
    for config in sorted(glob.glob(os.path.join(REPO, "configs", "*.yaml"))):
        with open(config) as f:
            class_path = yaml.safe_load(f)["model"]["class_path"]
        assert class_path in exported, f"{os.path.basename(config)}: {class_path}"
