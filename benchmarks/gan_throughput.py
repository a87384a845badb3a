"""Training images/second of our GAN module (Lightning, manual optimization) vs a plain PyTorch loop over the
same networks, data, loss and optimizers, in the same process, alternating runs to share the machine's noise.

    python benchmarks/gan_throughput.py DATA_DIR [--batches 60] [--repeats 3] [--conditional] [--width 64]
    python benchmarks/gan_throughput.py DATA_DIR --celeba [--image-size 64] [--discriminator-norm batch]
    python benchmarks/gan_throughput.py --make-celeba DIR [--count 2000]     # synthetic CelebA-layout JPEGs

DATA_DIR holds MNIST/raw (see make_mnist_split.py), or with --celeba the CelebA layout (DATA_DIR/celeba/...); the
CelebA datamodule's setup (JPEG decoding with its configured workers) is timed too. Prints one Markdown row with
the peak resident memory of this process (and of the decoding workers) or, on GPU, the peak allocated memory.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time

import pytorch_lightning as pl
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from datamodules import CelebADataModule, MNISTDataModule  # noqa: E402
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
    images, labels = dm.split("train")["image"], dm.split("train").get("label")
    loss = model.gan_loss
    gen = torch.Generator().manual_seed(0)
    order = torch.randperm(len(images), generator=gen)
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
    return GAN(image_shape=args.image_shape, num_classes=args.num_classes, conditional=args.conditional,
               generator_width=args.width, discriminator_width=args.width, discriminator_norm=args.discriminator_norm)


def make_celeba(root: str, count: int) -> None:
    """`count` random 178x218 JPEGs in the CelebA layout under `root/celeba` (partition: 80% train, 10% val, 10%
    test), for timing the datamodule without the real dataset."""
    import numpy as np
    from PIL import Image

    folder = os.path.join(root, "celeba", "img_align_celeba")
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = []
    for k in range(1, count + 1):
        name = f"{k:06d}.jpg"
        # smooth random images (a random 12x10 field upsampled) compress like photos, not like noise
        field = rng.integers(0, 256, size=(12, 10, 3), dtype=np.uint8)
        Image.fromarray(field).resize((178, 218), Image.BICUBIC).save(os.path.join(folder, name), quality=90)
        lines.append(f"{name} {0 if k % 10 < 8 else 1 if k % 10 == 8 else 2}")
    with open(os.path.join(root, "celeba", "list_eval_partition.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def peak_memory(device: str) -> str:
    if device == "gpu":
        return f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB"
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return f"peak RSS {own:.0f} MiB (largest decoding worker {workers:.0f} MiB)"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", nargs="?")
    parser.add_argument("--celeba", action="store_true", help="DATA_DIR is a CelebA-layout folder")
    parser.add_argument("--image-size", type=int, default=64, help="CelebA side (MNIST is 28)")
    parser.add_argument("--workers", type=int, default=None, help="CelebA decoding workers (default: the "
                        "datamodule's, one per CPU up to 8)")
    parser.add_argument("--discriminator-norm", default="spectral")
    parser.add_argument("--make-celeba", metavar="DIR", help="only write a synthetic CelebA folder into DIR")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--conditional", action="store_true")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--precision", default="32-true")
    args = parser.parse_args(argv)
    if args.make_celeba:
        make_celeba(args.make_celeba, args.count)
        return
    loading = ""
    if args.celeba:
        dm = CelebADataModule(data_dir=args.data_dir, batch_size=args.batch_size, image_size=args.image_size,
                              num_workers=args.workers)
        start = time.perf_counter()
        dm.setup("fit")
        seconds = time.perf_counter() - start
        count = sum(len(dm.split(name)["image"]) for name in ("train", "val"))
        loading = (f"loading {count / seconds:.0f} img/s ({count} JPEGs, {dm.num_workers} workers, "
                   f"{peak_memory('cpu')}); ")
    else:
        dm = MNISTDataModule(data_dir=args.data_dir, batch_size=args.batch_size, val_size=500)
        dm.setup("fit")
    args.image_shape, args.num_classes = dm.image_shape, dm.num_classes
    rates = {"ours": [], "plain": []}
    for _ in range(args.repeats):  # alternate so both see the same machine load
        rates["plain"].append(plain(args, dm))
        rates["ours"].append(ours(args, dm))
    o, p = statistics.median(rates["ours"]), statistics.median(rates["plain"])
    size = "x".join(map(str, args.image_shape[1:]))
    print(f"| {'cGAN' if args.conditional else 'DCGAN'} {size} w{args.width} b{args.batch_size} {args.accelerator} "
          f"{args.precision} | {p:.0f} | {o:.0f} | {o / p:.3f} | {loading}runs: plain "
          f"{[round(r) for r in rates['plain']]}, ours {[round(r) for r in rates['ours']]}; "
          f"{peak_memory(args.accelerator)} |")


if __name__ == "__main__":
    main()
