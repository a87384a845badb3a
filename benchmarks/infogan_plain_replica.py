"""A control for issue 7: InfoGAN on MNIST in a plain PyTorch loop (no Lightning, none of this library's modules),
following the recipe common to public PyTorch InfoGAN implementations, on the same data as infogan_benchmark.py.

    python benchmarks/infogan_plain_replica.py [--batches 3000] [--init dcgan|default] [--q-optimizer g|d]
                                               [--arch conv|fc] [--width 32] [--batch 64] [--seed 0] [--tag T]

The recipe: 10-way categorical + 2 continuous codes + 62 noise dimensions; G: (FC 1024 - BN - ReLU, with
`--arch fc`) FC to 7x7x(2 width) - BN - ReLU - upconv width - BN - ReLU - upconv 1 - tanh; D body: conv width -
LeakyReLU(0.1) - conv 2 width - BN - LeakyReLU (- FC 1024 - BN - LeakyReLU with `--arch fc`); D head linear; Q head
FC 128 - BN - LeakyReLU - FC (10 logits, 2 means, 2 log-stds). Adam betas (0.5, 0.999), G lr 1e-3, D lr 2e-4,
non-saturating BCE. `--q-optimizer g` (the common PyTorch recipe) trains the Q head with the generator's optimizer
in the generator step, so D's body learns only real vs fake; `d` trains it with D's optimizer on the detached
fake features in the D step (this library's `info_trains_body: false`). `--init dcgan`: weights N(0, 0.02),
batch-norm scales N(1, 0.02). Every `--every` batches: Q's one-to-one class accuracy on the 2,000 real test images
(eval mode, the metric of `cli.py test`) and its code accuracy on 1,000 fresh samples; rows go to
<work>/infogan_replica.jsonl.
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

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from datamodules import MNISTDataModule  # noqa: E402  (only its split of the decoded tensors)
from lightning_models.metrics.clustering import cluster_accuracy  # noqa: E402  (the metric, to score alike)
from lightning_models.networks.conv import init_weights  # noqa: E402

CATEGORIES, CONTINUOUS, NOISE = 10, 2, 62


def networks(arch: str, width: int) -> tuple[nn.Module, nn.Module, nn.Module, nn.Module]:
    """(generator, D body, D head, Q head)."""
    maps = 2 * width * 49
    fc = [nn.Linear(CATEGORIES + CONTINUOUS + NOISE, 1024, bias=False), nn.BatchNorm1d(1024), nn.ReLU(True)]
    generator = nn.Sequential(*(fc if arch == "fc" else []),
                              nn.Linear(1024 if arch == "fc" else CATEGORIES + CONTINUOUS + NOISE, maps, bias=False),
                              nn.BatchNorm1d(maps), nn.ReLU(True), nn.Unflatten(1, (2 * width, 7, 7)),
                              nn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=False), nn.BatchNorm2d(width),
                              nn.ReLU(True), nn.ConvTranspose2d(width, 1, 4, 2, 1), nn.Tanh())
    body = nn.Sequential(nn.Conv2d(1, width, 4, 2, 1), nn.LeakyReLU(0.1, True),
                         nn.Conv2d(width, 2 * width, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * width),
                         nn.LeakyReLU(0.1, True), nn.Flatten())
    features = maps
    if arch == "fc":
        body.extend([nn.Linear(maps, 1024, bias=False), nn.BatchNorm1d(1024), nn.LeakyReLU(0.1, True)])
        features = 1024
    q_head = nn.Sequential(nn.Linear(features, 128, bias=False), nn.BatchNorm1d(128), nn.LeakyReLU(0.1, True),
                           nn.Linear(128, CATEGORIES + 2 * CONTINUOUS))
    return generator, body, nn.Linear(features, 1), q_head


def draw(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    categories = torch.randint(CATEGORIES, (n,))
    continuous = torch.rand(n, CONTINUOUS) * 2 - 1
    return torch.cat([F.one_hot(categories, CATEGORIES).float(), continuous, torch.randn(n, NOISE)], 1), categories, \
        continuous


def information(q: torch.Tensor, categories: torch.Tensor, continuous: torch.Tensor) -> torch.Tensor:
    mean, log_std = q[:, CATEGORIES:CATEGORIES + CONTINUOUS], q[:, CATEGORIES + CONTINUOUS:].clamp(-4, 2)
    nll = (0.5 * ((continuous - mean) * torch.exp(-log_std)) ** 2 + log_std).sum(1).mean()
    return F.cross_entropy(q[:, :CATEGORIES], categories) + 0.1 * nll


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--init", choices=["dcgan", "default"], default="dcgan")
    parser.add_argument("--q-optimizer", choices=["g", "d"], default="g")
    parser.add_argument("--arch", choices=["conv", "fc"], default="conv")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--tag", default="")
    parser.add_argument("--work", default=os.path.join(REPO, "benchmarks", "_work"))
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    data = os.path.join(args.work, "data")  # make_mnist_split.py's split, as infogan_benchmark.py uses
    dm = MNISTDataModule(data_dir=data, val_size=500)  # the same 7,500 training and 2,000 test images
    images = dm.load_split("train")["image"].float() / 127.5 - 1
    test = dm.load_split("test")
    test_images, test_labels = test["image"].float() / 127.5 - 1, test["label"]

    generator, body, d_head, q_head = networks(args.arch, args.width)
    for net in (generator, body, d_head, q_head):
        init_weights(net, args.init)
    d_params = [*body.parameters(), *d_head.parameters()]
    q_params = list(q_head.parameters())
    opt_g = torch.optim.Adam([*generator.parameters(), *(q_params if args.q_optimizer == "g" else [])], 1e-3,
                             betas=(0.5, 0.999))
    opt_d = torch.optim.Adam([*d_params, *(q_params if args.q_optimizer == "d" else [])], 2e-4, betas=(0.5, 0.999))
    bce = F.binary_cross_entropy_with_logits
    ones, zeros = torch.ones(args.batch), torch.zeros(args.batch)

    def evaluate() -> dict:
        for net in (generator, body, q_head):
            net.eval()
        with torch.no_grad():
            predicted = torch.cat([q_head(body(x))[:, :CATEGORIES].argmax(1) for x in test_images.split(500)])
            latent, categories, _ = draw(1000)
            code = (q_head(body(generator(latent)))[:, :CATEGORIES].argmax(1) == categories).float().mean()
        for net in (generator, body, q_head):
            net.train()
        confusion = torch.zeros(CATEGORIES, 10)
        confusion.index_put_((predicted, test_labels), torch.ones(len(predicted)), accumulate=True)
        scores = cluster_accuracy(confusion)
        return {"class_accuracy": round(scores["one_to_one"].item(), 4),
                "class_accuracy_majority": round(scores["majority"].item(), 4), "code_accuracy": round(code.item(), 4)}

    start, batch = time.time(), 0
    while batch < args.batches:
        order = torch.randperm(len(images))
        for first in range(0, len(images) - args.batch + 1, args.batch):
            real = images[order[first:first + args.batch]]
            latent, categories, continuous = draw(args.batch)
            fake = generator(latent)
            fake_features = body(fake.detach())
            loss_d = (bce(d_head(body(real)).squeeze(1), ones) + bce(d_head(fake_features).squeeze(1), zeros))
            if args.q_optimizer == "d":
                loss_d = loss_d + information(q_head(fake_features.detach()), categories, continuous)
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            for p in d_params:
                p.requires_grad_(False)
            features = body(fake)
            loss_g = bce(d_head(features).squeeze(1), ones) + information(q_head(features), categories, continuous)
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            for p in d_params:
                p.requires_grad_(True)
            batch += 1
            if batch % args.every == 0 or batch == args.batches:
                row = {"tag": args.tag, **{k: v for k, v in vars(args).items() if k not in ("tag", "work")},
                       "batches_trained": batch, **evaluate(), "seconds": round(time.time() - start)}
                print(json.dumps(row), flush=True)
                with open(os.path.join(args.work, "infogan_replica.jsonl"), "a") as f:
                    f.write(json.dumps(row) + "\n")
            if batch >= args.batches:
                break


if __name__ == "__main__":
    main()
