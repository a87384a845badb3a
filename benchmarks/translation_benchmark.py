"""The pairing study of issue 6: a plain GAN translator, CycleGAN and pix2pix, each trained on unpaired and on
paired colored MNIST for the same number of batches, scored by `cli.py test` (color accuracy, shape IoU and
cycle L1 in both directions, see lightning_models/translation/evaluation.py).

    python benchmarks/translation_benchmark.py [--batches 600] [--batch-size 32] [--width 16] [--lr 1e-3]
                                               [--generator-output tanh]
                                               [--threads 1] [--models plain cyclegan pix2pix] [--data unpaired paired]
                                               [--seeds 0 1 2] [--split val|test] [--tag NAME] [-- CLI_ARGS ...]
                                               [--summary [--split S]]

Anything after `--` is passed to both `cli.py fit` and `cli.py test` after the benchmark's own arguments, so it
overrides them (e.g. `-- --model.identity_weight 0 --model.discriminator_lr 4e-3`); `--tag` names such a variant,
so its run folder and row do not mix with the default's. `--seeds` seeds the weights, the data split and the
training randomness (`--seed_everything`, `--model.seed`, `--data.seed`; seed 0's folder keeps its old name).
`--split val` scores on the 500 held-out images (to choose settings), `--split test` on the test split (to report
the chosen setting once); a finished run (its `train_seconds.txt`) is scored again without retraining, so the
test row is the same weights the validation row chose. `--summary` prints mean ± std over the seeds of the
committed rows per variant.

- plain: configs/cyclegan_colored_mnist.yaml with cycle and identity weights 0 (adversarial terms only);
- cyclegan: configs/cyclegan_colored_mnist.yaml as it is;
- pix2pix: configs/pix2pix_colored_mnist.yaml; on unpaired data its L1 target is another digit's image.
All three use the same U-Net generators (output `--generator-output`: tanh, as in every row before issue 6
section 14, unless `clamp` is asked for; the pix2pix config's is clamp) and PatchGAN discriminators (`--width`
channels), so the table compares
objectives and data, not architectures; a constant learning rate, higher than the configs' 3e-4 (which is meant
for 150 epochs: at 300 batches pix2pix on pairs reached 29% color accuracy with 3e-4 and 75% with 1e-3).
Data (offline): the MNIST split at <work>/data made by make_mnist_split.py from ../shared/data/mnist-test
(8,000 training images, 500 of them held out, and 2,000 test images). Rows (dated, with seed and split) are
appended to benchmarks/results/translation.jsonl (committed) and printed as a markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("WANDB_MODE", "disabled")

import torch  # noqa: E402

from benchmarks.gan_quality import (QUIET, append_row, fit_once, prepare_data, run as cli_run,  # noqa: E402
                                     seed_summary)
from lightning_models.translation.evaluation import METRICS  # noqa: E402

MODELS = {
    "plain": ("cyclegan_colored_mnist.yaml", ["--model.cycle_weight", "0", "--model.identity_weight", "0"]),
    "cyclegan": ("cyclegan_colored_mnist.yaml", []),
    "pix2pix": ("pix2pix_colored_mnist.yaml", []),
}
#: the raw rows behind RESULTS.md's translation tables (committed)
RESULTS = os.path.join(REPO, "benchmarks", "results", "translation.jsonl")
#: the columns of `--summary`
SUMMARY = ["color_accuracy_ab", "color_accuracy_ba", "iou_ab", "iou_ba", "cycle_l1_aba", "cycle_l1_bab"]
DATA = {"unpaired": "datamodules.UnpairedColoredMNISTDataModule", "paired": "datamodules.PairedColoredMNISTDataModule"}


def effective_option(cli_args: list[str], name: str, default: str) -> str:
    """The value `cli.py` gets for `name`: its last one after `--` (`name VALUE` or `name=VALUE`), else `default`."""
    value = default
    for i, arg in enumerate(cli_args):
        if arg == name and i + 1 < len(cli_args):
            value = cli_args[i + 1]
        elif arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
    return value


def run(model: str, data: str, args: argparse.Namespace, data_dir: str, seed: int = 0) -> dict:
    """Train one model (or reuse its finished run) and score it with `cli.py test` on `args.split`."""
    config, extra = MODELS[model]
    suffix = "" if args.batch_size == 32 else f"_bs{args.batch_size}"
    name = f"translation_{model}_{data}_{args.batches}{suffix}{args.tag and '_' + args.tag}"
    root = os.path.join(args.work, name + (f"_seed{seed}" if seed else ""))
    common = ["--config", os.path.join(REPO, "configs", config), "--data", DATA[data], "--data.data_dir", data_dir,
              "--data.val_size", "500", "--data.batch_size", str(args.batch_size), "--model.generator", "unet",
              "--model.generator_output", args.generator_output,
              "--model.generator_width", str(args.width), "--model.discriminator_width", str(args.width),
              "--model.decay_epochs", "0", "--model.lr", str(args.lr), "--trainer.default_root_dir", root, *QUIET,
              "--seed_everything", str(seed), "--model.seed", str(seed), "--data.seed", str(seed),
              *extra, *args.cli_args]
    # RunCheckpoint writes the final weights to last.ckpt when fit ends (runs before 2026-11-26 05:00 UTC got the last
    # multiple of 1,000 steps instead: their "600 batches" rows were scored at 500 batches)
    wall = fit_once(root, [*common, "--trainer.max_steps", str(2 * args.batches), "--trainer.max_epochs", "-1",
                           "--trainer.limit_val_batches", "0"])
    metrics = cli_run("test", [*common, "--data.test_split", args.split, "--ckpt_path", "last"])
    return {"seed": seed, "split": args.split, "model": model, "data": data, "batches": args.batches,
            "batch_size": args.batch_size, "width": args.width,
            "generator_output": effective_option(args.cli_args, "--model.generator_output", args.generator_output),
            "lr": args.lr, "tag": args.tag, "cli_args": " ".join(args.cli_args), "train_wall_s": round(wall, 1),
            **{name: round(float(metrics[f"test/{name}"]), 4) for name in METRICS}}


def summary(path: str = RESULTS, split: str = "test") -> str:
    """Markdown table of the rows at `path` on `split`: mean ± std over the seeds of each model, data, budget and
    tag (the newest row of each seed counts)."""
    return seed_summary(path, split, lambda r: (r["model"], r["data"], r["batches"], r["batch_size"], r.get("tag", "")),
                        ["model", "data", "batches", "batch size", "tag"], SUMMARY)


def table(rows: list[dict]) -> str:
    head = ["model", "data", "batches", "batch_size", "tag", "seed", "split", *METRICS, "train_wall_s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(row.get(k, "")) for k in head) + " |" for row in rows]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=600, help="training batches per run (2 optimizer steps each)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--width", type=int, default=16, help="channels of generators and discriminators")
    parser.add_argument("--generator-output", choices=("tanh", "clamp"), default="tanh",
                        help="the U-Nets' output layer (--model.generator_output) for all three models")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate of every model (constant)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 suits a shared machine)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--data", nargs="+", default=list(DATA), choices=list(DATA))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds of the weights, data and training")
    parser.add_argument("--split", default="test", choices=["test", "val"],
                        help="score on the held-out images (val: to choose) or the test split (to report once)")
    parser.add_argument("--summary", action="store_true",
                        help="only print mean +- std over seeds of the committed rows on --split")
    parser.add_argument("--tag", default="", help="name of a variant: appended to the run folder, kept in the row")
    parser.add_argument("cli_args", nargs="*", help="after `--`: extra cli.py arguments for fit and test")
    parser.add_argument("--work", default=os.path.join(REPO, "benchmarks", "_work"))
    args = parser.parse_args(argv)
    if args.summary:
        print(summary(RESULTS, args.split))
        return
    torch.set_num_threads(args.threads)
    os.makedirs(args.work, exist_ok=True)
    data_dir = prepare_data(args.work)
    rows = [append_row(RESULTS, run(model, data, args, data_dir, seed))
            for seed in args.seeds for model in args.models for data in args.data]
    print(table(rows))


if __name__ == "__main__":
    main()
