"""InfoGAN on MNIST: does the categorical code capture the digit class without labels? (issue 7)

    python benchmarks/infogan_benchmark.py [--batches 1500] [--max-minutes 12] [--info-weight 1.0] [--tag T]
                                           [--extra=--model.X --extra=Y] [--resume] [--work benchmarks/_work]
    python benchmarks/infogan_benchmark.py --table

Trains configs/infogan_mnist.yaml through `cli.py fit` for `--batches` batches (2 optimizer steps each) or
`--max-minutes` of wall time, whichever ends first, then runs `cli.py test`: test/class_accuracy (Q's category on
the 2,000 real test images vs their labels, one-to-one greedy mapping of categories to classes),
test/class_accuracy_majority, Q's code recovery on 10,000 samples, and the classifier scores
(benchmarks/_work/classifier_mnist, trained by gan_quality.py). `--info-weight 0` is the plain GAN with the same
latent, the control. Data (offline): the MNIST split of make_mnist_split.py (8,000 train, 500 of them validation;
2,000 test). Results are appended to <work>/infogan.jsonl and printed as a Markdown table.
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

from benchmarks.gan_quality import QUIET, classifier, data_args, prepare_data, run  # noqa: E402
from cli import GenerativeCLI  # noqa: E402

COLUMNS = ["batches_trained", "train_seconds", "class_accuracy", "class_accuracy_majority", "code_accuracy_0",
           "code_mae_0", "code_mae_1", "fid_classifier", "class_coverage", "classifier_confidence"]


def train_and_test(args, data: str, classifier_root: str) -> dict:
    name = f"infogan_mnist_w{args.info_weight:g}_{args.batches}{args.tag and '_' + args.tag}"
    common = ["--config", os.path.join(REPO, "configs", "infogan_mnist.yaml"), *data_args("mnist", data),
              "--trainer.default_root_dir", os.path.join(args.work, name), "--model.info_weight",
              str(args.info_weight), *QUIET, *args.extra]
    start = time.time()
    resume = ["--ckpt_path", "last"] if args.resume else []
    fit = GenerativeCLI(args=["fit", *common, "--trainer.max_steps", str(2 * args.batches), "--trainer.max_epochs",
                              "-1", "--trainer.max_time", f"00:00:{args.max_minutes:02d}:00", *resume])
    seconds = time.time() - start
    metrics = run("test", [*common, "--ckpt_path", "last", "--model.classifier_path", classifier_root])
    return {"run": name + (" (resumed)" if args.resume else ""), "info_weight": args.info_weight, "extra": " ".join(args.extra),
            "batches_trained": fit.trainer.global_step // 2, "train_seconds": round(seconds, 1),
            **{k[5:]: round(float(v), 4) for k, v in metrics.items()}}


def table(results: str) -> str:
    """The Markdown table of everything in `results` (infogan.jsonl)."""
    with open(results) as f:
        rows = [json.loads(line) for line in f]
    out = ["| run | info_weight | extra options | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 3) + "|"]
    for r in rows:
        cells = [f"{r[c]:.4g}" if isinstance(r.get(c), float) else str(r.get(c, "–")) for c in COLUMNS]
        out.append(f"| {r['run']} | {r['info_weight']:g} | {r['extra'] or '–'} | " + " | ".join(cells) + " |")
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
    parser.add_argument("--work", default=os.path.join(REPO, "benchmarks", "_work"))
    parser.add_argument("--table", action="store_true", help="only print the table of what is measured")
    args = parser.parse_args(argv)
    results = os.path.join(args.work, "infogan.jsonl")
    if not args.table:
        data = prepare_data(args.work)
        row = train_and_test(args, data, classifier("mnist", data, args.work, lambda r: None))
        print(json.dumps(row), flush=True)
        with open(results, "a") as f:
            f.write(json.dumps(row) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
