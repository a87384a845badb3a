"""The pairing study of issue 6: a plain GAN translator, CycleGAN and pix2pix, each trained on unpaired and on
paired colored MNIST for the same number of batches, scored by `cli.py test` (color accuracy, shape IoU and
cycle L1 in both directions, see lightning_models/translation/evaluation.py).

    python benchmarks/translation_benchmark.py [--batches 600] [--batch-size 32] [--width 16] [--lr 1e-3]
                                               [--generator-output tanh]
                                               [--threads 1] [--models plain cyclegan pix2pix] [--data unpaired paired]
                                               [--tag NAME] [-- CLI_ARGS ...]

Anything after `--` is passed to both `cli.py fit` and `cli.py test` after the benchmark's own arguments, so it
overrides them (e.g. `-- --model.identity_weight 0 --model.discriminator_lr 4e-3`); `--tag` names such a variant,
so its run folder and row do not mix with the default's.

- plain: configs/cyclegan_colored_mnist.yaml with cycle and identity weights 0 (adversarial terms only);
- cyclegan: configs/cyclegan_colored_mnist.yaml as it is;
- pix2pix: configs/pix2pix_colored_mnist.yaml; on unpaired data its L1 target is another digit's image.
All three use the same U-Net generators (output `--generator-output`: tanh, as in every row before issue 6
section 14, unless `clamp` is asked for; the pix2pix config's is clamp) and PatchGAN discriminators (`--width`
channels), so the table compares
objectives and data, not architectures; a constant learning rate, higher than the configs' 3e-4 (which is meant
for 150 epochs: at 300 batches pix2pix on pairs reached 29% color accuracy with 3e-4 and 75% with 1e-3).
Data (offline): the MNIST split at <work>/data made by make_mnist_split.py from ../shared/data/mnist-test
(8,000 training images, 500 of them held out, and 2,000 test images). Results are appended to
<work>/translation.jsonl and printed as a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("WANDB_MODE", "disabled")

import torch  # noqa: E402

from benchmarks.gan_quality import QUIET, prepare_data  # noqa: E402
from cli import GenerativeCLI  # noqa: E402
from lightning_models.translation.evaluation import METRICS  # noqa: E402

MODELS = {
    "plain": ("cyclegan_colored_mnist.yaml", ["--model.cycle_weight", "0", "--model.identity_weight", "0"]),
    "cyclegan": ("cyclegan_colored_mnist.yaml", []),
    "pix2pix": ("pix2pix_colored_mnist.yaml", []),
}
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


def run(model: str, data: str, args: argparse.Namespace, data_dir: str) -> dict:
    config, extra = MODELS[model]
    suffix = "" if args.batch_size == 32 else f"_bs{args.batch_size}"
    root = os.path.join(args.work, f"translation_{model}_{data}_{args.batches}{suffix}{args.tag and '_' + args.tag}")
    common = ["--config", os.path.join(REPO, "configs", config), "--data", DATA[data], "--data.data_dir", data_dir,
              "--data.val_size", "500", "--data.batch_size", str(args.batch_size), "--model.generator", "unet",
              "--model.generator_output", args.generator_output,
              "--model.generator_width", str(args.width), "--model.discriminator_width", str(args.width),
              "--model.decay_epochs", "0", "--model.lr", str(args.lr), "--trainer.default_root_dir", root, *QUIET,
              *extra, *args.cli_args]
    wall, cpu = time.time(), time.process_time()
    # RunCheckpoint writes the final weights to last.ckpt when fit ends (runs before 2026-11-26 05:00 UTC got the last
    # multiple of 1,000 steps instead: their "600 batches" rows were scored at 500 batches)
    GenerativeCLI(args=["fit", *common, "--trainer.max_steps", str(2 * args.batches), "--trainer.max_epochs", "-1",
                        "--trainer.limit_val_batches", "0"])
    wall, cpu = time.time() - wall, time.process_time() - cpu
    metrics = GenerativeCLI(args=["test", *common, "--ckpt_path", "last"]).trainer.callback_metrics
    return {"model": model, "data": data, "batches": args.batches, "batch_size": args.batch_size, "width": args.width,
            "generator_output": effective_option(args.cli_args, "--model.generator_output", args.generator_output),
            "lr": args.lr, "tag": args.tag, "cli_args": " ".join(args.cli_args),
            "train_wall_s": round(wall, 1), "train_cpu_s": round(cpu, 1),
            **{name: round(float(metrics[f"test/{name}"]), 4) for name in METRICS}}


def table(rows: list[dict]) -> str:
    head = ["model", "data", "batches", "batch_size", "tag", *METRICS, "train_cpu_s"]
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
    parser.add_argument("--tag", default="", help="name of a variant: appended to the run folder, kept in the row")
    parser.add_argument("cli_args", nargs="*", help="after `--`: extra cli.py arguments for fit and test")
    parser.add_argument("--work", default=os.path.join(REPO, "benchmarks", "_work"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.makedirs(args.work, exist_ok=True)
    data_dir = prepare_data(args.work)
    rows = []
    for model in args.models:
        for data in args.data:
            rows.append(run(model, data, args, data_dir))
            print(json.dumps(rows[-1]), flush=True)
            with open(os.path.join(args.work, "translation.jsonl"), "a") as f:
                f.write(json.dumps(rows[-1]) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
