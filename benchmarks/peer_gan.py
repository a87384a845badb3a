"""A plain-PyTorch peer: DCGAN and conditional GAN for 28x28 images as the common tutorials write them, with no
Lightning, trained on the same training split, batch size and number of batches as our configs, and scored by the
same `cli.py test` code (`SampleScores`'s test epoch through a `Trainer`).

The recipe (PyTorch's DCGAN tutorial, adapted to 28x28 as the MNIST tutorials do; the cGAN as the usual cGAN
tutorials write it): the generator maps z (100) [+ a learned 10-d label embedding] through a linear layer to
128 x 7 x 7, two stride-2 transposed convolutions with batch norm and ReLU, tanh. The discriminator sees the image
[+ the label embedded as a 28 x 28 map, an extra input channel], two stride-2 convolutions (64, 128) with
LeakyReLU(0.2) and batch norm on the second, one linear logit. BCE with logits, Adam 2e-4, betas (0.5, 0.999),
N(0, 0.02) initialisation, D then G per batch, the raw generator samples.

    python benchmarks/peer_gan.py DATA_DIR --dataset mnist --conditional --seed 0 --budgets 500 1000 \\
        --classifier benchmarks/_work/classifier_mnist --val-size 500

prints one JSON line per budget with the same keys as `cli.py test` (`benchmarks/gan_peer_benchmark.py` runs it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

LATENT, EMBED, WIDTH = 100, 10, 64


class PeerGenerator(nn.Module):
    def __init__(self, num_classes: int = 0) -> None:
        super().__init__()
        self.embed = nn.Embedding(num_classes, EMBED) if num_classes else None
        self.fc = nn.Sequential(nn.Linear(LATENT + (EMBED if num_classes else 0), 2 * WIDTH * 7 * 7),
                                nn.BatchNorm1d(2 * WIDTH * 7 * 7), nn.ReLU(True))
        self.net = nn.Sequential(
            nn.ConvTranspose2d(2 * WIDTH, WIDTH, 4, 2, 1), nn.BatchNorm2d(WIDTH), nn.ReLU(True),
            nn.ConvTranspose2d(WIDTH, 1, 4, 2, 1), nn.Tanh())

    def forward(self, z, labels=None):
        if self.embed is not None:
            z = torch.cat([z, self.embed(labels)], 1)
        return self.net(self.fc(z).view(-1, 2 * WIDTH, 7, 7))


class PeerDiscriminator(nn.Module):
    def __init__(self, num_classes: int = 0) -> None:
        super().__init__()
        self.embed = nn.Embedding(num_classes, 28 * 28) if num_classes else None
        self.net = nn.Sequential(
            nn.Conv2d(2 if num_classes else 1, WIDTH, 4, 2, 1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(WIDTH, 2 * WIDTH, 4, 2, 1), nn.BatchNorm2d(2 * WIDTH), nn.LeakyReLU(0.2, True),
            nn.Flatten(), nn.Linear(2 * WIDTH * 7 * 7, 1))

    def forward(self, x, labels=None):
        if self.embed is not None:
            x = torch.cat([x, self.embed(labels).view(-1, 1, 28, 28)], 1)
        return self.net(x).squeeze(1)


def dcgan_init(m: nn.Module) -> None:
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def score(generator: nn.Module, conditional: bool, dm, classifier: str, num_samples: int) -> dict[str, float]:
    """The `cli.py test` metrics of `generator`, through the same `SampleScores` test epoch as the GANs."""
    import pytorch_lightning as pl

    from lightning_models.base import GenerativeModule
    from lightning_models.metrics import SampleScores

    class PeerSampler(SampleScores, GenerativeModule):
        def __init__(self):
            super().__init__()
            self.save_hyperparameters({"classifier_path": classifier, "num_eval_samples": num_samples})
            self.generator, self.conditional, self.num_classes = generator, conditional, dm.num_classes

        def generate(self, n, labels, rng):
            return self.generator(torch.randn(n, LATENT, generator=rng, device=self.device), labels)

    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False)
    (metrics,) = trainer.test(PeerSampler(), dm, verbose=False)
    return {k.removeprefix("test/"): round(float(v), 5) for k, v in metrics.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--val-size", type=int, default=500)
    parser.add_argument("--conditional", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budgets", type=int, nargs="+", default=[500, 1000, 1500, 3000])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--classifier", required=True)
    parser.add_argument("--num-samples", type=int, default=10_000)
    parser.add_argument("--split", default="test", choices=["test", "val"], help="the real side of the scores")
    args = parser.parse_args(argv)

    from datamodules import MNISTDataModule

    dm = MNISTDataModule(args.dataset, args.data_dir, args.batch_size, val_size=args.val_size, seed=args.seed,
                         test_split=args.split)
    train = dm.split("train")
    images = train["image"].float().div(255).mul(2).sub(1)  # decoded once, [-1, 1]
    labels = train["label"]
    torch.manual_seed(args.seed)
    num_classes = dm.num_classes if args.conditional else 0
    generator, discriminator = PeerGenerator(num_classes), PeerDiscriminator(num_classes)
    generator.apply(dcgan_init)
    discriminator.apply(dcgan_init)
    opt_g = torch.optim.Adam(generator.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), 2e-4, betas=(0.5, 0.999))
    per_epoch = len(images) // args.batch_size
    batch, order, start = 0, None, time.time()
    for budget in sorted(args.budgets):
        generator.train()
        while batch < budget:
            if batch % per_epoch == 0:
                order = torch.randperm(len(images))
            idx = order[(batch % per_epoch) * args.batch_size:][: args.batch_size]
            real, y = images[idx], (labels[idx] if args.conditional else None)
            fake = generator(torch.randn(len(idx), LATENT), y)
            d_real, d_fake = discriminator(real, y), discriminator(fake.detach(), y)
            loss_d = (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
                      + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
            opt_d.zero_grad()
            loss_d.backward()
            opt_d.step()
            d_gen = discriminator(fake, y)
            loss_g = F.binary_cross_entropy_with_logits(d_gen, torch.ones_like(d_gen))
            opt_g.zero_grad()
            loss_g.backward()
            opt_g.step()
            batch += 1
        seconds = time.time() - start
        generator.eval()
        row = {"impl": "peer", "model": "cgan" if args.conditional else "dcgan", "dataset": args.dataset,
               "train_images": len(images), "seed": args.seed, "batches": budget, "train_seconds": round(seconds, 1),
               **score(generator, args.conditional, dm, args.classifier, args.num_samples)}
        print(json.dumps(row), flush=True)
        start = time.time()


if __name__ == "__main__":
    main()
