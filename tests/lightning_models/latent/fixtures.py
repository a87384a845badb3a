"""Module-scoped fixtures of the latent-model tests: the tiny MNIST folder and a tiny autoencoder trained on it
through the real CLI (once per session, via the shared UPSTREAM mechanism of tests/helpers.py)."""

from __future__ import annotations

import pytest

from tests.conftest import make_mnist_dir
from tests.helpers import upstream_checkpoint


@pytest.fixture(scope="module")
def latent_data(tmp_path_factory) -> str:
    """One folder for the whole session (the tests only read it), so the upstream runs are trained once."""
    root = tmp_path_factory.getbasetemp() / "latent_shared"
    if not (root / "data").exists():
        make_mnist_dir(str(root / "data"))
    return str(root / "data")


@pytest.fixture(scope="module")
def autoencoder_ckpt(latent_data) -> str:
    """last.ckpt of configs/ae_mnist.yaml trained tiny for 4 steps on `latent_data`."""
    return upstream_checkpoint("ae_mnist.yaml", latent_data)
