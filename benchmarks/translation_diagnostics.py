"""Why a translation model gets a digit's color wrong: per-digit output colors, the target domain's
discriminator scores for every color, and the direction in which the generator loss pushes the output colors.

    python benchmarks/translation_diagnostics.py RUN_ROOT_OR_CKPT [...] [--data-dir benchmarks/_work/data]
        [--val-size 500] [--per-digit 200]

For each checkpoint (a `.ckpt` file, or a run root: its newest `last.ckpt`) of a `TranslationModule` trained on
colored MNIST (`palette` coloring in both domains), on the test split of `UnpairedColoredMNISTDataModule` built with
the same data options as the training run's datamodule defaults:
1. per direction and digit: the fraction of translations whose dominant color is the target domain's color of
   that digit, and the color id most translations get (`digit:fraction->color id`);
2. D_B's mean score (the raw discriminator output, higher = judged real) of each digit's A images repainted in each
   of B's colors: does the discriminator know which color each digit wears in B?
3. per digit: the foreground mean RGB of G_AB's output, B's target RGB, and the descent direction of the
   generator's adversarial loss with respect to the output pixels (mean over stroke pixels): does the
   discriminator push the output color towards the target?
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from datamodules import UnpairedColoredMNISTDataModule  # noqa: E402
from datamodules.colored_mnist import dominant_color, paint  # noqa: E402
from lightning_models.callbacks import find_last_checkpoint  # noqa: E402
from lightning_models.translation.base import TranslationModule  # noqa: E402


def load(path: str) -> TranslationModule:
    ckpt = find_last_checkpoint(path) if os.path.isdir(path) else path
    if not ckpt or not os.path.isfile(ckpt):
        raise SystemExit(f"{path}: no checkpoint (give a .ckpt file or a run root holding <run>/checkpoints/last.ckpt)")
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)
    module, _, name = saved.get("model_class", "lightning_models.translation.CycleGAN").rpartition(".")
    cls = getattr(__import__(module, fromlist=[name]), name)
    return cls.load_from_checkpoint(ckpt, map_location="cpu").eval()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--data-dir", default="benchmarks/_work/data")
    parser.add_argument("--val-size", type=int, default=500)
    parser.add_argument("--per-digit", type=int, default=200, help="test images per digit for parts 2 and 3")
    args = parser.parse_args(argv)
    dm = UnpairedColoredMNISTDataModule(data_dir=args.data_dir, val_size=args.val_size, batch_size=100_000)
    dm.setup("test")
    raw = next(iter(dm.test_dataloader()))
    gray, digits = raw["image_a"].float() / 255, raw["label_a"]  # the A side: every test image, in file order
    painted = dm.on_after_batch_transfer(dict(raw), 0)
    for path in args.runs:
        model = load(path)
        print(f"\n## {path}\n\n1. per digit: fraction right -> the most frequent output color id")
        for side, other, direction in (("a", "b", "AB"), ("b", "a", "BA")):
            got = dominant_color(model.translate(painted[f"image_{side}"], direction), getattr(dm, f"palette_{other}"))
            labels = painted[f"label_{side}"]
            cells = [f"{d}:{(got[labels == d] == d).float().mean():.2f}->{got[labels == d].mode().values.item()}"
                     for d in range(dm.num_classes)]
            print(f"   {direction}: " + " ".join(cells))
        if model.judges_pairs:
            print("\n(parts 2 and 3 need a discriminator of single images; this model's judges (input, output) pairs)")
            continue
        print("\n2. D_B's mean score of each digit painted in each of B's colors (* = B's color of that digit)")
        print("   digit | " + " | ".join(f"{c}:{name}" for c, name in enumerate(dm.color_names_b)))
        for d in range(dm.num_classes):
            g = gray[digits == d][: args.per_digit]
            scores = []
            for c in range(len(dm.palette_b)):
                with torch.no_grad():
                    s = model.discriminator_b(paint(g, dm.palette_b, torch.full((len(g),), c)) * 2 - 1).mean()
                scores.append(f"{s:.2f}{'*' if c == d else ''}")
            print(f"   {d} | " + " | ".join(scores))
        print("\n3. G_AB's output color, B's target, and the descent direction of G's adversarial loss (RGB)")
        for d in range(dm.num_classes):
            g = gray[digits == d][: args.per_digit]
            out = model.generator_ab(paint(g, dm.palette_a, torch.full((len(g),), d)) * 2 - 1).detach()
            out.requires_grad_(True)
            model.gan_loss.generator(model.discriminator_b(out)).backward()
            stroke = (g > 0.5).expand(-1, 3, -1, -1).float()
            n = stroke[:, 0].sum()
            color = ((out.detach() + 1) / 2 * stroke).sum((0, 2, 3)) / n
            descent = -(out.grad * stroke).sum((0, 2, 3)) / n
            print(f"   {d}: output {[round(v, 2) for v in color.tolist()]}, target "
                  f"{[round(v, 2) for v in dm.palette_b[d].tolist()]}, descent "
                  f"{[f'{v:+.1e}' for v in descent.tolist()]}")


if __name__ == "__main__":
    main()
