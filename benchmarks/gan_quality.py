"""The loss study of the source reports, at a fixed compute budget: DCGAN and conditional GAN on MNIST and
Fashion-MNIST with the saturating, non-saturating and least-squares losses, scored by `cli.py test`.

    python benchmarks/gan_quality.py [--batches 1500] [--datasets mnist fashion_mnist] [--models dcgan cgan]
                                     [--losses saturating non_saturating lsgan] [--work benchmarks/_work]

Data (offline): MNIST = the official *test* set in ../shared/data/mnist-test split into 8,000 training images
(the first 8,000; 500 of them held out for validation) and 2,000 test images (the last 2,000), written by
make_mnist_split.py; Fashion-MNIST = the full official files in /usr/share/datasets/fashion-mnist
(`apt-get install dataset-fashion-mnist`). The evaluation classifier of each dataset is trained first
(configs/classifier_*.yaml). Every GAN trains for the same number of batches (the budget; 2 optimizer steps
each) and is scored on 10,000 samples. Results are appended to <work>/quality.jsonl and printed as a table.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("WANDB_MODE", "disabled")

from benchmarks.make_mnist_split import make_split  # noqa: E402
from cli import GenerativeCLI  # noqa: E402
from lightning_models.callbacks import find_last_checkpoint  # noqa: E402

SHARED_MNIST = os.path.join(REPO, "..", "shared", "data", "mnist-test")
FASHION = "/usr/share/datasets/fashion-mnist"
QUIET = ["--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
         "--trainer.enable_model_summary", "false"]


@contextlib.contextmanager
def work_lock(work: str):
    """Held while a shared piece of <work> (the data split, an evaluation classifier) is checked or made, so
    benchmark processes started side by side do not build it twice into the same folder: the second waits."""
    os.makedirs(work, exist_ok=True)
    with open(os.path.join(work, ".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepare_data(work: str) -> str:
    data = os.path.join(work, "data")
    with work_lock(work):
        if not os.path.exists(os.path.join(data, "MNIST", "raw", "train-images-idx3-ubyte.gz")):
            make_split(SHARED_MNIST, data, 8000)
        fashion = os.path.join(data, "FashionMNIST", "raw")
        if not os.path.exists(fashion) and os.path.isdir(FASHION):
            os.makedirs(os.path.dirname(fashion), exist_ok=True)
            os.symlink(FASHION, fashion)
    return data


def data_args(dataset: str, data: str) -> list[str]:
    val = "500" if dataset == "mnist" else "5000"
    return ["--data.dataset", dataset, "--data.data_dir", data, "--data.val_size", val]


def run(subcommand: str, args: list[str]):
    return GenerativeCLI(args=[subcommand, *args]).trainer.callback_metrics


def append_row(path: str, row: dict) -> dict:
    """Appends `row`, dated (UTC; a `date` already in the row is kept), as one JSON line to `path` under a file lock
    (benchmark processes run side by side write to the same file), prints it, and returns the dated row."""
    row = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), **row}
    print(json.dumps(row), flush=True)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(json.dumps(row) + "\n")
    return row


def newest_by_seed(rows: list[dict], key: Callable[[dict], tuple]) -> dict[tuple, dict[int, dict]]:
    """`rows` grouped by `key(row)`, then by seed (rows without one: seed 0), the newest (last) row of each seed
    kept: a run scored again replaces its earlier row instead of counting as another seed."""
    groups: dict[tuple, dict[int, dict]] = {}
    for row in rows:
        groups.setdefault(key(row), {})[row.get("seed", 0)] = row
    return groups


def seed_summary(path: str, split: str, key: Callable[[dict], tuple], key_names: list[str],
                 columns: list[str]) -> str:
    """Markdown table of the JSON-lines rows at `path` on `split` (rows without one count as "test"): one line per
    `key(row)` (empty values shown as "-"), with the number of seeds and, per column, the mean +- std over them
    (the newest row of each seed counts; one seed: its value; a column no row has: "-")."""
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    groups = newest_by_seed([r for r in rows if r.get("split", "test") == split], key)
    lines = ["| " + " | ".join([*key_names, "seeds", *columns]) + " |",
             "|" + "---|" * (len(key_names) + 1 + len(columns))]
    for values_of_key, by_seed in groups.items():
        cells = [str(v) if v not in ("", None) else "-" for v in values_of_key] + [str(len(by_seed))]
        for column in columns:
            values = [r[column] for r in by_seed.values() if column in r]
            if not values:
                cells.append("-")
            elif len(values) == 1:
                cells.append(f"{values[0]:.3f}")
            else:
                cells.append(f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fit_once(root: str, args: list[str]) -> float:
    """`cli.py fit args` unless the run under `root` finished before (its `train_seconds.txt`); the training's wall
    seconds either way. A benchmark scores a finished run again (another split, new metrics) without retraining."""
    done = os.path.join(root, "train_seconds.txt")
    if not os.path.exists(done):
        start = time.time()
        run("fit", args)
        with open(done, "w") as f:
            f.write(f"{time.time() - start:.1f}\n")
    with open(done) as f:
        return float(f.read())


def classifier(dataset: str, data: str, work: str, record) -> str:
    root = os.path.join(work, f"classifier_{dataset}")
    config = os.path.join(REPO, "configs", f"classifier_{dataset}.yaml")
    with work_lock(work):
        if find_last_checkpoint(root) is None:
            start = time.time()
            run("fit", ["--config", config, *data_args(dataset, data), "--trainer.default_root_dir", root, *QUIET])
            metrics = run("test", ["--config", config, *data_args(dataset, data), "--trainer.default_root_dir", root,
                                   "--ckpt_path", "last", *QUIET])
            record({"kind": "classifier", "dataset": dataset, "test_accuracy": float(metrics["test/accuracy"]),
                    "seconds": round(time.time() - start, 1)})
    return root


def gan(model: str, loss: str, dataset: str, data: str, work: str, batches: int, classifier_root: str, record,
        extra: list[str] = (), tag: str = "", continue_from: int | None = None):
    name = f"{model}_{dataset}_{loss}_{{}}{tag and '_' + tag}"
    root = os.path.join(work, name.format(batches))
    resume = []
    if continue_from is not None:  # extend the finished run of that budget (a copy of it) instead of starting over
        earlier = os.path.join(work, name.format(continue_from))
        if find_last_checkpoint(earlier) is None:
            raise SystemExit(f"--continue-from {continue_from}: no finished run in {earlier}; run that budget first")
        if not os.path.exists(root):
            shutil.copytree(earlier, root)
        resume = ["--ckpt_path", "last"]
    config = os.path.join(REPO, "configs", f"{model}_mnist.yaml")
    common = ["--config", config, *data_args(dataset, data), "--trainer.default_root_dir", root,
              "--model.loss", loss, "--model.ema_decay", "0.995", *QUIET, *extra]
    start = time.time()
    run("fit", [*common, "--trainer.max_steps", str(2 * batches), "--trainer.max_epochs", "-1", *resume])
    seconds = time.time() - start
    metrics = run("test", [*common, "--ckpt_path", "last", "--model.classifier_path", classifier_root])
    record({"kind": "gan", "model": model + (f" ({tag})" if tag else ""), "dataset": dataset, "loss": loss, "batches": batches,
            "train_seconds": round(seconds, 1), **({"continued_from": continue_from} if resume else {}),
            **{k[5:]: round(float(v), 4) for k, v in metrics.items()}})


def table(results: str) -> str:
    """The Markdown table of everything in `results` (quality.jsonl)."""
    with open(results) as f:
        rows = [json.loads(line) for line in f]
    out = ["| dataset | model | loss | batches | train s | conditional acc. | class coverage | min class frac. "
           "| FD (classifier) | confidence |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["kind"] == "classifier":
            out.append(f"| {r['dataset']} | classifier | – | – | {r['seconds']} | test accuracy {r['test_accuracy']:.4f} "
                       "| | | | |")
            continue
        acc = f"{r['conditional_accuracy']:.4f}" if "conditional_accuracy" in r else "–"
        batches = f"{r['batches']} (from {r['continued_from']})" if "continued_from" in r else r["batches"]
        out.append(f"| {r['dataset']} | {r['model']} | {r['loss']} | {batches} | {r['train_seconds']} | {acc} | "
                   f"{r['class_coverage']:.2f} | {r['min_class_fraction']:.4f} | {r['fid_classifier']:.2f} | "
                   f"{r['classifier_confidence']:.3f} |")
    return "\n".join(out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=1500)
    parser.add_argument("--datasets", nargs="+", default=["mnist", "fashion_mnist"])
    parser.add_argument("--models", nargs="+", default=["cgan", "dcgan"])
    parser.add_argument("--losses", nargs="+", default=["non_saturating", "lsgan", "saturating"])
    parser.add_argument("--work", default=os.path.join(REPO, "benchmarks", "_work"))
    parser.add_argument("--extra", action="append", default=[], help="more CLI options for the GANs, e.g. "
                        "--extra=--model.minibatch_std --extra=true")
    parser.add_argument("--tag", default="", help="names runs with --extra options apart")
    parser.add_argument("--table", action="store_true", help="only print the table of what is measured")
    parser.add_argument("--continue-from", type=int, default=None, metavar="BATCHES",
                        help="extend each finished run of that budget to --batches (a copy; train s counts the "
                             "extension only)")
    args = parser.parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    results = os.path.join(args.work, "quality.jsonl")
    if args.table:
        print(table(results))
        return

    def record(row: dict) -> None:
        print(json.dumps(row), flush=True)
        with open(results, "a") as f:
            f.write(json.dumps(row) + "\n")

    done = set()
    if os.path.exists(results):  # a rerun skips what is measured already
        with open(results) as f:
            done = {(r["model"], r["dataset"], r["loss"], r["batches"]) for r in map(json.loads, f) if r["kind"] == "gan"}
    data = prepare_data(args.work)
    for dataset in args.datasets:
        classifier_root = classifier(dataset, data, args.work, record)
        for model in args.models:
            for loss in args.losses:
                name = model + (f" ({args.tag})" if args.tag else "")
                if (name, dataset, loss, args.batches) not in done:
                    gan(model, loss, dataset, data, args.work, args.batches, classifier_root, record, args.extra,
                        args.tag, args.continue_from)
    print(table(results))


if __name__ == "__main__":
    main()
