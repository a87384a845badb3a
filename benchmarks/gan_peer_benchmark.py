"""Our DCGAN and cGAN configs against a plain-PyTorch peer (`peer_gan.py`), at equal batches and seeds, scored by
the same `cli.py test` metrics, beside the real-vs-real value of each metric.

    python benchmarks/gan_peer_benchmark.py run --data mnist45 mnist fashion_mnist --models cgan dcgan \\
        --impls ours peer --seeds 0 1 2 --budgets 500 1000 1500 3000 [--split test|val] [--tag T] [-- OUR OPTIONS]
    python benchmarks/gan_peer_benchmark.py real --data mnist45 mnist fashion_mnist [--split test|val]
    python benchmarks/gan_peer_benchmark.py table [--split test] [--tag T]
    python benchmarks/gan_peer_benchmark.py grid --data mnist45 --models cgan --seeds 0 [--tag T] --out F.png

Data (offline; `prepare` builds them under benchmarks/_work):
- `mnist45`: 5,000 images of the official MNIST test file (500 held out for validation: 4,500 train), scored
  against its last 2,000 images (never trained on);
- `mnist`: the first 8,000 (500 held out: 7,500 train), scored against the same last 2,000;
- `fashion_mnist`: the full official Fashion-MNIST files (5,000 held out: 55,000 train; 10,000 test).
Each dataset's evaluation classifier is `configs/classifier_<dataset>.yaml` trained on the `mnist` / `fashion_mnist`
training split. Our runs are the shipped configs with `--trainer.max_steps 2 x budget` (a D and a G step per batch),
each budget continuing the previous one by exact resume; the peer trains once through all budgets. Choose settings
with `--split val` (the held-out validation images are the real side), report with `--split test`.

Rows go to benchmarks/results/gan_peer.jsonl (one JSON object per scored checkpoint, committed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("WANDB_MODE", "disabled")

from benchmarks.gan_quality import append_row, newest_by_seed  # noqa: E402
from benchmarks.make_mnist_split import make_split  # noqa: E402

WORK = os.path.join(REPO, "benchmarks", "_work")
RESULTS = os.path.join(REPO, "benchmarks", "results", "gan_peer.jsonl")
SHARED_MNIST = os.path.join(REPO, "..", "shared", "data", "mnist-test")
FASHION = "/usr/share/datasets/fashion-mnist"
QUIET = ["--trainer.logger", "false", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary",
         "false"]
# name -> (data_dir, torchvision dataset, validation images, classifier run root)
DATA = {
    "mnist45": (os.path.join(WORK, "data45"), "mnist", 500, os.path.join(WORK, "classifier_mnist")),
    "mnist": (os.path.join(WORK, "data"), "mnist", 500, os.path.join(WORK, "classifier_mnist")),
    "fashion_mnist": (os.path.join(WORK, "data"), "fashion_mnist", 5000,
                      os.path.join(WORK, "classifier_fashion_mnist")),
}


def prepare(names: list[str]) -> None:
    """The data folders and the evaluation classifiers of `names` (skipped when present)."""
    from lightning_models.callbacks import find_last_checkpoint

    if not os.path.exists(os.path.join(WORK, "data", "MNIST")):
        make_split(SHARED_MNIST, os.path.join(WORK, "data"), 8000)
    if not os.path.exists(os.path.join(WORK, "data45", "MNIST")):
        make_split(SHARED_MNIST, os.path.join(WORK, "data45"), 5000, num_test=2000)
    fashion = os.path.join(WORK, "data", "FashionMNIST", "raw")
    if not os.path.lexists(fashion):
        os.makedirs(os.path.dirname(fashion), exist_ok=True)
        os.symlink(FASHION, fashion)
    for name in {{"mnist45": "mnist"}.get(n, n) for n in names}:
        data_dir, dataset, val, root = DATA[name]
        if find_last_checkpoint(root) is None:
            cli("fit", ["--config", os.path.join(REPO, "configs", f"classifier_{dataset}.yaml"), "--data.data_dir",
                        data_dir, "--data.val_size", str(val), "--trainer.default_root_dir", root])


def cli(subcommand: str, args: list[str]) -> dict[str, float]:
    """`cli.py <subcommand>` in this process; the logged metrics."""
    from cli import GenerativeCLI

    metrics = GenerativeCLI(args=[subcommand, *args, *QUIET]).trainer.callback_metrics
    return {k.removeprefix("test/"): round(float(v), 5) for k, v in metrics.items()}


def record(row: dict) -> None:
    append_row(RESULTS, row)


def data_args(name: str, split: str, seed: int) -> list[str]:
    data_dir, dataset, val, _ = DATA[name]
    return ["--data.data_dir", data_dir, "--data.dataset", dataset, "--data.val_size", str(val), "--data.seed",
            str(seed), "--data.test_split", split]


def run_root(name: str, model: str, tag: str, seed: int, split: str = "test") -> str:
    """The folder of one of our runs; validation runs get their own (a variant chosen on val is then trained
    afresh for test)."""
    split_part = "_val" if split == "val" else ""
    return os.path.join(WORK, "gan_peer", f"{name}_{model}_{tag or 'config'}{split_part}_seed{seed}")


def run_ours(name: str, model: str, seed: int, budgets: list[int], split: str, tag: str, extra: list[str],
             samplers: list[str]) -> None:
    from lightning_models.callbacks import find_last_checkpoint

    root = run_root(name, model, tag, seed, split)
    common = ["--config", os.path.join(REPO, "configs", f"{model}_mnist.yaml"), *data_args(name, split, seed),
              "--trainer.default_root_dir", root, "--seed_everything", str(seed), "--model.seed", str(seed),
              "--model.classifier_path", DATA[name][3], *extra]
    for budget in sorted(budgets):
        resume = ["--ckpt_path", "last"] if find_last_checkpoint(root) else []
        start = time.time()
        cli("fit", [*common, "--trainer.max_steps", str(2 * budget), "--trainer.max_epochs", "-1", *resume])
        seconds = time.time() - start
        for sampler in samplers:  # the EMA generator (the config's sampler) and the raw one
            raw = ["--model.ema_decay", "null"] if sampler == "raw" else []
            metrics = cli("test", [*common, *raw, "--ckpt_path", "last"])
            record({"impl": "ours", "tag": tag or "config", "sampler": sampler, "model": model, "data": name,
                    "split": split, "seed": seed, "batches": budget, "train_seconds": round(seconds, 1),
                    "extra": extra, **metrics})


def run_peer(name: str, model: str, seed: int, budgets: list[int], split: str) -> None:
    data_dir, dataset, val, classifier = DATA[name]
    command = [sys.executable, os.path.join(REPO, "benchmarks", "peer_gan.py"), data_dir, "--dataset", dataset,
               "--val-size", str(val), "--seed", str(seed), "--classifier", classifier, "--split", split,
               "--budgets", *map(str, budgets), *(["--conditional"] if model == "cgan" else [])]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=REPO) as proc:
        for line in proc.stdout:
            if line.startswith("{"):
                row = json.loads(line)
                record({"impl": "peer", "tag": "tutorial", "model": model, "data": name, "split": split,
                        "seed": seed, **{k: v for k, v in row.items() if k not in ("impl", "model", "dataset",
                                                                                    "seed")}})
    if proc.returncode:
        raise SystemExit(f"peer_gan.py failed ({proc.returncode}): {' '.join(command)}")


def run_real(name: str, split: str, max_images: int = 10_000) -> None:
    """Real against real: the training images (up to 10,000, with labels) scored as if they were samples."""
    import torch

    from datamodules import MNISTDataModule
    from lightning_models.metrics.evaluation import SampleEvaluator

    data_dir, dataset, val, classifier = DATA[name]
    dm = MNISTDataModule(dataset, data_dir, val_size=val, test_split=split)
    for conditional in (False, True):
        scorer = SampleEvaluator(classifier, dm.num_classes, conditional)
        real = dm.split(split)
        for images, labels in zip(real["image"].split(1000), real["label"].split(1000)):
            scorer.update_real(images.float() / 255, labels)
        train = dm.split("train")
        pick = torch.randperm(len(train["label"]), generator=torch.Generator().manual_seed(0))[:max_images]
        for rows in pick.split(1000):
            scorer.update_fake(train["image"][rows].float() / 255, train["label"][rows] if conditional else None)
        record({"impl": "real", "tag": "train images", "model": "cgan" if conditional else "dcgan", "data": name,
                "split": split, "seed": 0, "batches": 0, "samples": len(pick),
                **{k: round(float(v), 5) for k, v in scorer.compute().items()}})


COLUMNS = [("conditional_accuracy", "cond. acc."), ("class_coverage", "coverage"), ("fid_classifier", "FD"),
           ("precision_classifier", "precision"),
           ("recall_classifier", "recall"), ("kid_classifier", "KID"), ("diversity_classifier", "diversity"),
           ("class_fid_classifier_mean", "class FD mean"), ("class_fid_classifier_worst", "class FD worst"),
           ("class_fid_ratio_worst", "worst class FD / its real"),
           ("class_diversity_classifier_mean", "class diversity mean"),
           ("class_diversity_classifier_worst", "class diversity worst")]


def grid(name: str, model: str, seed: int, tag: str, out: str, columns: int = 10) -> None:
    """The sample grid of one of our runs (its last checkpoint, the EMA sampler, a fixed noise seed): one row per
    class for a cGAN (`columns` samples each), `columns` x `columns` samples for a DCGAN."""
    import torch
    from torchvision.utils import save_image

    from lightning_models import GAN
    from lightning_models.checkpoints import load_module

    root = run_root(name, model, tag, seed)
    module = load_module(GAN, root, map_location="cpu").eval()
    rows = module.num_classes if module.conditional else columns
    labels = torch.arange(rows).repeat_interleave(columns) if module.conditional else None
    images = module.sample(rows * columns, labels, torch.Generator().manual_seed(0))
    save_image(images, out, nrow=columns, padding=2, pad_value=1.0)
    print(f"{out}: {rows} x {columns} samples of {root}")


def table(split: str, tags: set[str] | None) -> str:
    """Mean (min-max over seeds) of each metric per data, model, implementation and budget (the newest row of
    each seed)."""
    with open(RESULTS) as f:
        rows = [r for r in map(json.loads, f) if r["split"] == split]
    real = {(r["data"], r["model"]): r for r in rows if r["impl"] == "real"}
    for r in rows:  # each class's FD over the real-vs-real FD of that class, the worst class
        ref = real.get((r["data"], r["model"]))
        if ref and "class_fid_classifier/0" in r:
            r["class_fid_ratio_worst"] = max(r[f"class_fid_classifier/{c}"] / ref[f"class_fid_classifier/{c}"]
                                             for c in range(10))
    shown = [r for r in rows if tags is None or r["tag"] in tags or r["impl"] != "ours"]
    def key(r: dict) -> tuple:
        impl = f"{r['impl']} {r['sampler']}" if "sampler" in r else r["impl"]
        return r["data"], r["model"], r["batches"], impl, r["tag"]

    by_seed = newest_by_seed(shown, key)
    groups = {key: list(seeds.values()) for key, seeds in by_seed.items()}
    out = ["| data | model | batches | impl | seeds | " + " | ".join(c[1] for c in COLUMNS) + " |",
           "|" + "---|" * (5 + len(COLUMNS))]
    for key in sorted(groups, key=lambda k: (k[0], k[1], k[2], k[3] != "real", k[3], k[4])):
        group = groups[key]
        cells = []
        for column, _ in COLUMNS:
            values = [r[column] for r in group if column in r]
            if not values:
                cells.append("–")
            elif len(values) == 1:
                cells.append(f"{values[0]:.3g}")
            else:
                cells.append(f"{statistics.mean(values):.3g} ({min(values):.3g}-{max(values):.3g})")
        name = key[3] if not key[3].startswith("ours") else f"{key[3]} ({key[4]})"
        out.append(f"| {key[0]} | {key[1]} | {key[2] or '–'} | {name} | {len(group)} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["prepare", "run", "real", "table", "grid"])
    parser.add_argument("--data", nargs="+", default=list(DATA), choices=list(DATA))
    parser.add_argument("--models", nargs="+", default=["cgan", "dcgan"], choices=["cgan", "dcgan"])
    parser.add_argument("--impls", nargs="+", default=["ours", "peer"], choices=["ours", "peer"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--budgets", nargs="+", type=int, default=[500, 1000, 1500, 3000])
    parser.add_argument("--split", default="test", choices=["test", "val"])
    parser.add_argument("--samplers", nargs="+", default=["ema", "raw"], choices=["ema", "raw"],
                        help="score our runs with the EMA generator, the raw one, or both")
    parser.add_argument("--tag", default="", help="names a variant of ours (with the options after --)")
    parser.add_argument("--tags", nargs="*", default=None, help="table: only these variants of ours")
    parser.add_argument("--out", help="grid: the PNG to write")
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    if extra and not args.tag:
        parser.error("options for our runs (after --) need a --tag naming the variant")
    if args.command == "table":
        print(table(args.split, set(args.tags) if args.tags is not None else None))
        return
    if args.command == "grid":
        grid(args.data[0], args.models[0], args.seeds[0], args.tag, args.out)
        return
    prepare(args.data)
    if args.command == "prepare":
        return
    for name in args.data:
        if args.command == "real":
            run_real(name, args.split)
            continue
        for model in args.models:
            for seed in args.seeds:
                if "ours" in args.impls:
                    run_ours(name, model, seed, args.budgets, args.split, args.tag, extra, args.samplers)
                if "peer" in args.impls:
                    run_peer(name, model, seed, args.budgets, args.split)


if __name__ == "__main__":
    main()
