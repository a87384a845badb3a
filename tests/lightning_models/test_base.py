"""What every training scheme inherits from `TrainingModule`: step-keyed randomness (resume, per-rank draws)."""

from types import SimpleNamespace

import torch

from lightning_models import GAN


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
