"""Training images/second of our GAN module (Lightning, manual optimization) vs a plain PyTorch loop over the
same networks, data, loss and optimizers, in the same process, alternating runs to share the machine's noise.

    python benchmarks/gan_throughput.py DATA_DIR [--batches 60] [--repeats 3] [--conditional] [--width 64]

DATA_DIR holds MNIST/raw (see make_mnist_split.py). Prints one Markdown row.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import pytorch_lightning as pl
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from datamodules import MNISTDataModule  # noqa: E402
from lightning_models import GAN  # noqa: E402

WARMUP = 5


class Timer(pl.Callback):
    """Wall time from the end of batch WARMUP to the end of training."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == WARMUP - 1:
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module):
        self.seconds = time.perf_counter() - self.start


def ours(args, dm) -> float:
    model = make_model(args)
    timer = Timer()
    trainer = pl.Trainer(max_steps=2 * (args.batches + WARMUP), accelerator=args.accelerator, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[timer], precision=args.precision)
    trainer.fit(model, dm)
    return args.batches * dm.batch_size / timer.seconds


def plain(args, dm) -> float:
    """The loop one would write by hand: same nets/loss/optimizers, batches by index from the same uint8 tensors."""
    device = torch.device("cuda" if args.accelerator == "gpu" else "cpu")
    model = make_model(args).to(device)
    G, D = model.generator, model.discriminator
    opt_g, opt_d = model.configure_optimizers()
    images, labels = dm.split("train")["image"], dm.split("train")["label"]
    loss = model.gan_loss
    gen = torch.Generator().manual_seed(0)
    order = torch.randperm(len(labels), generator=gen)
    start = None
    for b in range(args.batches + WARMUP):
        if b == WARMUP:
            start = time.perf_counter()
        idx = order[b * dm.batch_size : (b + 1) * dm.batch_size]
        real = images[idx].to(device).float().div_(255) * 2 - 1
        y = labels[idx].to(device) if args.conditional else None
        z = torch.randn(len(idx), model.hparams.latent_dim, device=device)
        fake = G(z, y)
        loss_d = loss.discriminator(D(real, y), D(fake.detach(), y))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        for p in D.parameters():
            p.requires_grad_(False)
        loss_g = loss.generator(D(fake, y))
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        for p in D.parameters():
            p.requires_grad_(True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return args.batches * dm.batch_size / (time.perf_counter() - start)


def make_model(args) -> GAN:
    torch.manual_seed(0)
    return GAN(image_shape=(1, 28, 28), num_classes=10, conditional=args.conditional,
               generator_width=args.width, discriminator_width=args.width)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir")
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--conditional", action="store_true")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--precision", default="32-true")
    args = parser.parse_args(argv)
    dm = MNISTDataModule(data_dir=args.data_dir, batch_size=args.batch_size, val_size=500)
    dm.setup("fit")
    rates = {"ours": [], "plain": []}
    for _ in range(args.repeats):  # alternate so both see the same machine load
        rates["plain"].append(plain(args, dm))
        rates["ours"].append(ours(args, dm))
    o, p = statistics.median(rates["ours"]), statistics.median(rates["plain"])
    print(f"| {'cGAN' if args.conditional else 'DCGAN'} w{args.width} b{args.batch_size} {args.accelerator} "
          f"{args.precision} | {p:.0f} | {o:.0f} | {o / p:.3f} | runs: plain {[round(r) for r in rates['plain']]}, "
          f"ours {[round(r) for r in rates['ours']]} |")


if __name__ == "__main__":
    main()
