"""The fixed time per batch that `Trainer.fit` and our GAN step add to a plain PyTorch loop, measured on networks so
small that a batch is almost nothing but that overhead.

    python benchmarks/step_overhead.py DATA_DIR [--batches 1000] [--repeats 7] [--threads 1]

DATA_DIR holds MNIST/raw (see make_mnist_split.py). Three loops train the same tiny GAN (MLPs with one hidden layer
of 8 units; D sees 4 pixels of each MNIST image, G maps 4-d noise to them; LSGAN loss, Adam, an EMA generator) on the
same batches of `configs/dcgan_mnist.yaml`'s datamodule:

- plain: `collection_throughput.plain_gan`, the plain loop the collection's throughput table compares against;
- bare Lightning: a `pl.LightningModule` whose manual-optimization `training_step` is that same step, written the
  way Lightning's documentation writes a GAN step (`toggled_optimizer`, `manual_backward`, `LightningOptimizer.step`)
  and nothing else;
- ours: `lightning_models.gan.GAN` with those networks (its step adds the per-step seeding of exact resume, the
  finite-loss checks and the averaged training logs).

Runs alternate (plain, bare, ours, plain, ...); the medians of milliseconds per batch are printed, and the
differences: bare - plain is what Lightning's loop and wrappers cost per batch, ours - bare what our step adds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import pytorch_lightning as pl
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import collection_throughput as ct  # noqa: E402
from lightning_models.gan.gan import GAN  # noqa: E402
from lightning_models.losses import get_loss  # noqa: E402
from lightning_models.networks.mlp import MLP  # noqa: E402

PIXELS = slice(300, 304)  # the 4 pixels of each image the tiny discriminator sees (a stroke-rich patch of MNIST)
EMA_DECAY = 0.995


def tiny_networks() -> tuple[torch.nn.Module, torch.nn.Module]:
    return MLP(4, 4, [8], 0), MLP(4, 1, [8], 0, activation="leaky_relu")


class TinyGAN(GAN):
    """Our GAN step on the tiny networks."""

    def build_networks(self):
        return tiny_networks()

    def real_inputs(self, batch):
        return batch["image"].flatten(1)[:, PIXELS], None


class BareGAN(pl.LightningModule):
    """The same step as a bare LightningModule: Lightning's own manual-optimization pattern, nothing of ours."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.generator, self.discriminator = tiny_networks()
        self.generator_ema = AveragedModel(self.generator, multi_avg_fn=get_ema_multi_avg_fn(EMA_DECAY),
                                           use_buffers=True)
        self.gan_loss = get_loss("lsgan")

    def configure_optimizers(self):
        return (torch.optim.Adam(self.generator.parameters(), lr=2e-4, betas=(0.5, 0.999)),
                torch.optim.Adam(self.discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999)))

    def training_step(self, batch, batch_idx):
        opt_g, opt_d = self.optimizers()
        real = batch["image"].flatten(1)[:, PIXELS]
        fake = self.generator(torch.randn(len(real), 4))
        with self.toggled_optimizer(opt_d):
            loss_d = self.gan_loss.discriminator(self.discriminator(real), self.discriminator(fake.detach()))
            self.manual_backward(loss_d)
            opt_d.step()
            opt_d.zero_grad(set_to_none=True)
        with self.toggled_optimizer(opt_g):
            loss_g = self.gan_loss.generator(self.discriminator(fake))
            self.manual_backward(loss_g)
            opt_g.step()
            opt_g.zero_grad(set_to_none=True)
        self.generator_ema.update_parameters(self.generator)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir")
    parser.add_argument("--batches", type=int, default=1000, help="timed batches per run")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: the least noisy timing)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    _, dm = ct.build("dcgan_mnist.yaml", args.data_dir, "--data.val_size", "500")
    ours_model = TinyGAN(latent_dim=4, loss="lsgan", ema_decay=EMA_DECAY)
    bare_model = BareGAN()
    loops = {"plain": lambda n: ct.plain("dcgan", ours_model, dm, n),  # plain_gan through the GAN's hooks
             "bare Lightning": lambda n: ct.ours(bare_model, dm, n),
             "ours": lambda n: ct.ours(ours_model, dm, n)}
    for loop in loops.values():  # warm-up, not counted
        loop(max(2, args.batches // 10))
    ms = {name: [] for name in loops}
    for _ in range(args.repeats):
        for name, loop in loops.items():
            ms[name].append(1e3 * dm.batch_size / loop(args.batches))
    med = {name: statistics.median(values) for name, values in ms.items()}
    print(f"batch {dm.batch_size}, {len(dm.train_dataloader())} batches/epoch, {args.batches} timed batches x "
          f"{args.repeats} repeats, {torch.get_num_threads()} torch thread(s)")
    print("| loop | ms/batch (median) | runs |")
    print("|---|---|---|")
    for name, values in ms.items():
        print(f"| {name} | {med[name]:.3f} | {[round(v, 3) for v in values]} |")
    print(f"\nLightning's loop and wrappers (bare - plain): {med['bare Lightning'] - med['plain']:.3f} ms/batch")
    print(f"our step's additions (ours - bare): {med['ours'] - med['bare Lightning']:.3f} ms/batch")


if __name__ == "__main__":
    main()
