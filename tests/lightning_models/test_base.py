"""What every training scheme inherits from `TrainingModule`: step-keyed randomness (resume, per-rank draws), the
finite-loss guard and the training logs."""

from types import SimpleNamespace

import torch

from lightning_models import GAN
from lightning_models.base import TrainingModule


def draws(model, rank: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(noise from `noise_generator`, a draw from torch's global RNG after `on_train_batch_start`) at rank/step."""
    model._trainer = SimpleNamespace(global_rank=rank, global_step=step)
    noise = torch.randn(4, generator=model.noise_generator(model.hparams.seed))
    model.on_train_batch_start(None, 0)
    return noise, torch.rand(4)


def test_randomness_is_a_function_of_seed_rank_and_step():
    model = GAN(latent_dim=8, generator_width=8, discriminator_width=8, seed=3)
    torch.manual_seed(123)  # whatever state the global RNG had before does not matter
    first = draws(model, rank=0, step=5)
    torch.manual_seed(456)
    again = draws(model, rank=0, step=5)
    for a, b in zip(first, again):
        torch.testing.assert_close(a, b)  # a resumed run at step 5 draws what the uninterrupted one drew
    for other in (draws(model, rank=1, step=5), draws(model, rank=0, step=6)):
        for a, b in zip(first, other):
            assert not torch.equal(a, b)  # DDP ranks, and consecutive steps, draw different noise
    other_seed = GAN(latent_dim=8, generator_width=8, discriminator_width=8, seed=4)
    assert not torch.equal(draws(other_seed, rank=0, step=5)[0], first[0])


def test_noise_streams_are_separate_generators_with_their_own_numbers():
    """Drawing from another stream (e.g. InfoGAN's warps) in the middle of a step neither re-seeds nor advances
    the step's noise, and streams do not repeat each other's numbers."""
    model = GAN(latent_dim=8, generator_width=8, discriminator_width=8, seed=3)
    model._trainer = SimpleNamespace(global_rank=0, global_step=5)
    untouched = model.noise_generator(model.hparams.seed)
    expected = torch.randn(2, 4, generator=untouched)
    noise = model.noise_generator(model.hparams.seed)
    first = torch.randn(4, generator=noise)
    warp = torch.randn(4, generator=model.noise_generator(model.hparams.seed, "warp"))
    second = torch.randn(4, generator=noise)
    torch.testing.assert_close(torch.stack([first, second]), expected)
    assert not torch.allclose(warp, first)
    again = torch.randn(4, generator=model.noise_generator(model.hparams.seed, "warp"))
    torch.testing.assert_close(again, warp)  # a function of (seed, rank, step) too


def test_automatic_optimization_schemes_stop_on_a_non_finite_loss(mnist_dir, tmp_path, monkeypatch):
    # Schemes trained by automatic optimization (autoencoder, classifiers, VAE) are guarded by the
    # on_before_backward hook, before any optimizer step.
    import pytest

    from lightning_models import Autoencoder, NonFiniteLossError
    from tests.helpers import CONFIGS, run_cli, tiny_args

    monkeypatch.setattr(Autoencoder, "reconstruction_loss", lambda self, x, y: (self.decoder(self.encoder(x)).sum()
                                                                                * float("nan")))
    config = next(c for c in CONFIGS if c.endswith("ae_mnist.yaml"))
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss \(nan\) at global step 0"):
        run_cli("fit", tiny_args(config, mnist_dir, str(tmp_path / "runs"), "--trainer.max_steps", "2"))


class _StepLogger(TrainingModule):
    """Logs its global step as `train/step` (every step) and as `train/odd` (odd steps only)."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        step = float(self.global_step)
        self.log_train({"train/step": torch.tensor(step), **({"train/odd": step} if step % 2 else {})},
                       prog_bar=("train/step",))
        return (self.weight * batch).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_training_logs_are_means_since_the_last_logger_write(tmp_path):
    import csv

    import pytorch_lightning as pl
    from pytorch_lightning.loggers import CSVLogger

    trainer = pl.Trainer(max_steps=7, log_every_n_steps=3, logger=CSVLogger(tmp_path, name="", version=""),
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(_StepLogger(), torch.utils.data.DataLoader(torch.ones(10, 1), batch_size=1))
    with open(tmp_path / "metrics.csv") as f:
        rows = [{k: v for k, v in row.items() if v} for row in csv.DictReader(f)]
    logged = {int(row["step"]): (float(row["train/step"]), float(row["train/odd"])) for row in rows}
    # one logger write per 3 batches, each the mean of the steps since the previous write
    assert logged == {2: (1.0, 1.0), 5: (4.0, 4.0)}  # steps 0-2 -> mean 1 (odd: 1); 3-5 -> 4 (odd: 3, 5)
    # the last, partial interval (step 6) still reaches callback_metrics and the progress bar at the end of the run
    assert float(trainer.callback_metrics["train/step"]) == 6.0 and "train/odd" not in trainer.progress_bar_metrics
    assert float(trainer.progress_bar_metrics["train/step"]) == 6.0
