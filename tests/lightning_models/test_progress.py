"""Long `test` / `predict` work says what it is doing: a log line per phase with its counts (and a bar while the
trainer shows bars), for the sampling of `cli.py test` and the inversion's latent optimisation."""

from __future__ import annotations

import logging
import re
from types import SimpleNamespace

import pytest

from lightning_models.progress import phase_progress
from tests.helpers import CONFIGS, run_cli, tiny_args, upstream_checkpoint

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
DCGAN = next(c for c in CONFIGS if c.endswith("dcgan_mnist.yaml"))
INVERSION = next(c for c in CONFIGS if c.endswith("inversion_mnist.yaml"))


@pytest.fixture
def lightning_log():
    """The messages logged to Lightning's logger (where its own "GPU available" lines go) during the test."""
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Keep(logging.INFO)
    logger = logging.getLogger("pytorch_lightning")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def trainer_stub(bar: bool) -> SimpleNamespace:
    return SimpleNamespace(progress_bar_callback=SimpleNamespace(is_enabled=True) if bar else None,
                           is_global_zero=True)


def test_phase_logs_its_count_at_the_start_and_its_rate_at_the_end(lightning_log, capsys):
    with phase_progress(trainer_stub(bar=False), "test: sampling", 30, "samples") as advance:
        assert lightning_log == ["test: sampling: 30 samples ..."]
        for _ in range(3):
            advance(10)
    assert re.fullmatch(r"test: sampling: 30 samples in \d+\.\d s \([\d.e+]+ samples/s\)", lightning_log[1])
    assert "test: sampling" not in capsys.readouterr().err  # no bar when the trainer shows none


def test_phase_shows_a_bar_when_the_trainer_shows_bars(lightning_log, capsys):
    with phase_progress(trainer_stub(bar=True), "test batch 1/2: latent optimisation", 5, "steps") as advance:
        for _ in range(5):
            advance(1)
    bar = capsys.readouterr().err
    assert "test batch 1/2" in bar and "/5 [" in bar, bar  # the description and the total
    assert len(lightning_log) == 2


def test_a_phase_without_count_logs_its_time(lightning_log):
    with phase_progress(trainer_stub(bar=True), "test: computing the scores"):
        assert lightning_log == ["test: computing the scores ..."]
    assert re.fullmatch(r"test: computing the scores: \d+\.\d s", lightning_log[1])


def test_phase_is_silent_outside_a_trainer(lightning_log, capsys):
    with phase_progress(None, "inversion", 5, "steps") as advance:
        advance(5)
    assert lightning_log == [] and capsys.readouterr().err == ""


def test_cli_test_of_a_gan_logs_the_sampling_phase(mnist_dir, tmp_path, lightning_log):
    gan = upstream_checkpoint("dcgan_mnist.yaml", mnist_dir)
    classifier = upstream_checkpoint("classifier_mnist.yaml", mnist_dir)
    run_cli("test", tiny_args(DCGAN, mnist_dir, str(tmp_path / "runs"), "--ckpt_path", gan,
                              "--model.classifier_path", classifier, "--model.num_eval_samples", "20"))
    phase = [m for m in lightning_log if m.startswith("test: sampling for the classifier metrics (batches of 8)")]
    assert phase[0].endswith(": 20 samples ...") and re.search(r": 20 samples in [\d.]+ s \(", phase[1]), phase
    assert "test: computing the scores (Fréchet distance, KID, precision/recall) ..." in lightning_log


def test_cli_test_of_the_inversion_logs_each_latent_optimisation(mnist_dir, tmp_path, lightning_log):
    run_cli("test", tiny_args(INVERSION, mnist_dir, str(tmp_path / "runs"), "--trainer.limit_test_batches", "2",
                              "--data.eval_batch_size", "8"))
    assert ("test: per batch, 5 latent optimisations (optim, hybrid, denoise sigma 0.3, denoise sigma 0.5, inpaint) "
            "of 3 Adam steps on 2 restarts per image (--model.optim_steps, --model.restarts)") in lightning_log
    starts = [m for m in lightning_log if m.endswith("4 steps ...")]
    assert starts == [f"test batch {b}/2: latent optimisation ({how}, 2 restarts x 8 images): 4 steps ..."
                      for b in (1, 2) for how in ("optim", "hybrid", "hybrid", "hybrid", "hybrid, masked")]
    assert sum(bool(re.search(r": 4 steps in [\d.]+ s", m)) for m in lightning_log) == 10
