"""InfoGAN on MNIST: does the categorical code capture the digit class without labels? (issue 7)

    python benchmarks/infogan_benchmark.py [--batches 1500] [--max-minutes 12] [--info-weight 1.0] [--tag T]
                                           [--extra=--model.X --extra=Y] [--resume] [--work benchmarks/_work]
    python benchmarks/infogan_benchmark.py --table
    python benchmarks/infogan_benchmark.py --batches 6000 --keep-every 500 [--tag T ...]   # then:
    python benchmarks/infogan_benchmark.py --batches 6000 --score-kept [--tag T ...]

Trains configs/infogan_mnist.yaml through `cli.py fit` for `--batches` batches (2 optimizer steps each) or
`--max-minutes` of wall time, whichever ends first, then runs `cli.py test`: test/class_accuracy (Q's category on
the 2,000 real test images vs their labels, one-to-one greedy mapping of categories to classes),
test/class_accuracy_majority, Q's code recovery on 10,000 samples, and the classifier scores
(benchmarks/_work/classifier_mnist, trained by gan_quality.py). `--info-weight 0` is the plain GAN with the same
latent, the control. Data (offline): the MNIST split of make_mnist_split.py (8,000 train, 500 of them validation;
2,000 test). `--seed S` seeds the weights and noise (folder suffix `_seed<S>`); `--splits val test` scores the
finished run on the 500 held-out images (to choose) and on the test images (to report once). A finished run is
reused (`<run root>/train.json`). Rows (with the date and split) are appended to benchmarks/results/infogan.jsonl
(committed) and printed as a Markdown table.

`--keep-every B` also keeps the weights every B batches (`<run root>/kept/step=<2B k>.ckpt`, a second
`ModelCheckpoint` with `save_top_k -1`; resumed runs keep adding to it), and `--score-kept` scores each kept
checkpoint of the run with the same options through `cli.py test`, appending rows (with `batches`) to
<work>/infogan_snapshots.jsonl: the class accuracy along training.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("WANDB_MODE", "disabled")

from benchmarks.gan_quality import QUIET, append_row, classifier, data_args, prepare_data, run  # noqa: E402
from cli import GenerativeCLI  # noqa: E402

COLUMNS = ["batches_trained", "train_seconds", "class_accuracy", "class_accuracy_majority", "code_accuracy_0",
           "code_mae_0", "code_mae_1", "fid_classifier", "class_coverage", "classifier_confidence"]


#: the raw rows behind RESULTS.md's InfoGAN table (committed); older rows lived in <work>/infogan.jsonl
RESULTS = os.path.join(REPO, "benchmarks", "results", "infogan.jsonl")


def run_name(args) -> str:
    seed = f"_seed{args.seed}" if args.seed is not None else ""
    return f"infogan_mnist_w{args.info_weight:g}_{args.batches}{args.tag and '_' + args.tag}{seed}"


def common_args(args, data: str, root: str) -> list[str]:
    """The `cli.py` options of this run, for fit and test alike (`--seed`: the weights', noise's and data's)."""
    seed = [] if args.seed is None else ["--seed_everything", str(args.seed), "--model.seed", str(args.seed)]
    return ["--config", os.path.join(REPO, "configs", "infogan_mnist.yaml"), *data_args("mnist", data),
            "--trainer.default_root_dir", root, "--model.info_weight", str(args.info_weight), *seed, *QUIET,
            *args.extra]


def keep_args(root: str, every: int) -> list[str]:
    """A second checkpoint callback that keeps the weights every `every` batches (2 optimizer steps each)."""
    return ["--trainer.callbacks+=pytorch_lightning.callbacks.ModelCheckpoint",
            "--trainer.callbacks.dirpath", os.path.join(root, "kept"), "--trainer.callbacks.filename", "{step}",
            "--trainer.callbacks.every_n_train_steps", str(2 * every), "--trainer.callbacks.save_top_k", "-1"]


def test_scores(common: list[str], checkpoint: str, classifier_root: str, split: str = "test") -> dict:
    """`cli.py test` of `checkpoint` with the run's options on `split` (`val`: the 500 held-out images, to choose;
    `test`: to report once): its test/ metrics, without the prefix."""
    metrics = run("test", [*common, "--ckpt_path", checkpoint, "--model.classifier_path", classifier_root,
                           "--data.test_split", split])
    return {k[5:]: round(float(v), 4) for k, v in metrics.items()}


def score_kept(args, data: str, classifier_root: str) -> list[dict]:
    """`cli.py test` of every kept checkpoint of the run, in training order."""
    name = run_name(args)
    folder = os.path.join(args.work, name, "kept")
    kept = sorted((int(re.search(r"step=(\d+)", path).group(1)), path)
                  for path in glob.glob(os.path.join(folder, "*.ckpt")))
    if not kept:
        raise SystemExit(f"no kept checkpoints in {folder}: train with --keep-every first")
    common = common_args(args, data, os.path.join(args.work, "scoring"))
    rows = []
    for step, path in kept:
        rows.append({"run": name, "checkpoint": os.path.relpath(path, args.work), "batches": step // 2,
                     **test_scores(common, path, classifier_root)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def train_and_test(args, data: str, classifier_root: str) -> list[dict]:
    """Trains the run (or reuses its finished training: `<root>/train.json`), then scores it on each of
    `args.splits`: one row per split."""
    name = run_name(args)
    root = os.path.join(args.work, name)
    common = common_args(args, data, root)
    done = os.path.join(root, "train.json")
    if args.resume or not os.path.exists(done):
        start = time.time()
        resume = ["--ckpt_path", "last"] if args.resume else []
        keep = keep_args(root, args.keep_every) if args.keep_every else []
        fit = GenerativeCLI(args=["fit", *common, "--trainer.max_steps", str(2 * args.batches),
                                  "--trainer.max_epochs", "-1", "--trainer.max_time",
                                  f"00:00:{args.max_minutes:02d}:00", *keep, *resume])
        with open(done, "w") as f:
            json.dump({"batches_trained": fit.trainer.global_step // 2,
                       "train_seconds": round(time.time() - start, 1)}, f)
    with open(done) as f:
        trained = json.load(f)
    row = {"run": name + (" (resumed)" if args.resume else ""), "info_weight": args.info_weight,
           "extra": " ".join(args.extra), "tag": args.tag, "seed": args.seed, **trained}
    return [{**row, "split": split, **test_scores(common, "last", classifier_root, split)} for split in args.splits]


def table(results: str) -> str:
    """The Markdown table of everything in `results` (infogan.jsonl)."""
    with open(results) as f:
        rows = [json.loads(line) for line in f]
    out = ["| run | info_weight | extra options | split | " + " | ".join(COLUMNS) + " |",
           "|---" * (len(COLUMNS) + 4) + "|"]
    for r in rows:
        cells = [f"{r[c]:.4g}" if isinstance(r.get(c), float) else str(r.get(c, "–")) for c in COLUMNS]
        out.append(f"| {r['run']} | {r['info_weight']:g} | {r['extra'] or '–'} | {r.get('split', 'test')} | "
                   + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=1500)
    parser.add_argument("--max-minutes", type=int, default=12, help="wall-time cap of the training run (a resumed "
                        "run counts the time before the checkpoint too: Lightning's Timer is saved in it)")
    parser.add_argument("--resume", action="store_true", help="continue the run of the same options from its "
                        "last.ckpt (exact resume) instead of starting anew")
    parser.add_argument("--info-weight", type=float, default=1.0)
    parser.add_argument("--extra", action="append", default=[], help="more CLI options, e.g. "
                        "--extra=--model.generator_width --extra=32")
    parser.add_argument("--tag", default="", help="names runs with --extra options apart")
    parser.add_argument("--seed", type=int, default=None, help="seed of the weights and noise (--seed_everything, "
                        "--model.seed); the run's folder gets _seed<S>")
    parser.add_argument("--splits", nargs="+", default=["test"], choices=["val", "test"],
                        help="what the finished run is scored on: val (500 held-out images) to choose, test to report")
    parser.add_argument("--work", default=os.path.join(REPO, "benchmarks", "_work"))
    parser.add_argument("--table", action="store_true", help="only print the table of what is measured")
    parser.add_argument("--keep-every", type=int, default=0, metavar="B",
                        help="also keep the weights every B batches in <run root>/kept (for --score-kept)")
    parser.add_argument("--score-kept", action="store_true", help="score the kept checkpoints of the run with "
                        "these options (no training); rows go to <work>/infogan_snapshots.jsonl")
    args = parser.parse_args(argv)
    results = RESULTS
    if args.table:
        print(table(results))
        return
    data = prepare_data(args.work)
    classifier_root = classifier("mnist", data, args.work, lambda r: None)
    if args.score_kept:
        rows = score_kept(args, data, classifier_root)
        with open(os.path.join(args.work, "infogan_snapshots.jsonl"), "a") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)
        return
    for row in train_and_test(args, data, classifier_root):
        append_row(results, row)
    print(table(results))


if __name__ == "__main__":
    main()
