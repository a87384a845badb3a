"""The latent-model study: an autoencoder on MNIST, then (a) a 50-label classifier on its encoder, frozen and
fine-tuned, over several label draws, and (b) a GAN and a conditional GAN on its codes, scored like the
pixel-space GANs of gan_quality.py (plus the classifier's confidence along interpolation paths).

    python benchmarks/latent_benchmark.py [--ae-epochs 15] [--few-label-epochs 5] [--draws 0 1 2 3 4]
                                          [--gan-batches 1500] [--work benchmarks/_work] [--table]

Data: the same 8,000 / 2,000 split of the official MNIST test set as gan_quality.py (500 of the 8,000 held out
for validation), and the same evaluation classifier (`<work>/classifier_mnist`, trained first if missing). Every
run is one `cli.py` call with the repository's configs; rows go to `<work>/latent.jsonl` (a rerun skips what is
measured already) and the tables are printed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("WANDB_MODE", "disabled")

from benchmarks.gan_quality import QUIET, classifier, data_args, prepare_data, run  # noqa: E402
from lightning_models.callbacks import find_last_checkpoint  # noqa: E402


def config(name: str) -> str:
    return os.path.join(REPO, "configs", f"{name}.yaml")


def autoencoder(data: str, work: str, epochs: int, record) -> str:
    root = os.path.join(work, "ae_mnist")
    common = ["--config", config("ae_mnist"), *data_args("mnist", data), "--trainer.default_root_dir", root, *QUIET]
    if find_last_checkpoint(root) is None:
        start = time.time()
        run("fit", [*common, "--trainer.max_epochs", str(epochs)])
        metrics = run("test", [*common, "--ckpt_path", "last"])
        record({"kind": "autoencoder", "epochs": epochs, "train_seconds": round(time.time() - start, 1),
                **{k[5:]: round(float(v), 4) for k, v in metrics.items()}})
    return root


def few_label(data: str, work: str, ae_root: str, draw: int, freeze: bool, epochs: int, record) -> None:
    name = "frozen" if freeze else "fine-tuned"
    root = os.path.join(work, f"few_label_{name}_draw{draw}")
    common = ["--config", config("few_label_mnist"), *data_args("mnist", data), "--trainer.default_root_dir", root,
              "--model.autoencoder_path", ae_root, "--model.label_seed", str(draw), "--model.freeze_encoder",
              str(freeze).lower(), *QUIET]
    start = time.time()
    run("fit", [*common, "--trainer.max_epochs", str(epochs)])
    seconds = time.time() - start
    metrics = run("test", [*common, "--ckpt_path", "last"])
    record({"kind": "few_label", "encoder": name, "draw": draw, "epochs": epochs, "train_seconds": round(seconds, 1),
            "test_accuracy": round(float(metrics["test/accuracy"]), 4)})


def latent_gan(model: str, data: str, work: str, ae_root: str, batches: int, classifier_root: str, record) -> None:
    root = os.path.join(work, f"{model}_mnist_{batches}")
    common = ["--config", config(f"{model}_mnist"), *data_args("mnist", data), "--trainer.default_root_dir", root,
              "--model.autoencoder_path", ae_root, "--model.classifier_path", classifier_root, *QUIET]
    start = time.time()
    run("fit", [*common, "--trainer.max_steps", str(2 * batches), "--trainer.max_epochs", "-1"])
    seconds = time.time() - start
    metrics = run("test", [*common, "--ckpt_path", "last"])
    record({"kind": "gan", "model": model, "batches": batches, "train_seconds": round(seconds, 1),
            **{k[5:]: round(float(v), 4) for k, v in metrics.items()}})


def tables(work: str) -> str:
    """Markdown tables of `<work>/latent.jsonl`, with the pixel-space GANs of `<work>/quality.jsonl` beside."""
    with open(os.path.join(work, "latent.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    out = []
    for r in rows:
        if r["kind"] == "autoencoder":
            out += [f"Autoencoder: {r['epochs']} epochs, {r['train_seconds']} s; test reconstruction "
                    f"{r['reconstruction']:.1f} nats/image (BCE), MSE {r['mse']:.4f}.", ""]
    out += ["| encoder | draws | test accuracy per draw | mean ± std |", "|---|---|---|---|"]
    for name in ("frozen", "fine-tuned"):
        accs = [r["test_accuracy"] for r in rows if r["kind"] == "few_label" and r["encoder"] == name]
        if accs:
            std = statistics.stdev(accs) if len(accs) > 1 else 0.0
            out.append(f"| {name} | {len(accs)} | {', '.join(f'{a:.4f}' for a in accs)} | "
                       f"**{statistics.mean(accs):.4f} ± {std:.4f}** |")
    gans = [r for r in rows if r["kind"] == "gan"]
    pixel = []
    quality = os.path.join(work, "quality.jsonl")
    if os.path.exists(quality):
        with open(quality) as f:
            pixel = [r for r in map(json.loads, f) if r["kind"] == "gan" and r["dataset"] == "mnist"
                     and r["loss"] == "non_saturating" and (r["model"], r["batches"]) in {("cgan", 1500),
                                                                                           ("dcgan", 3000)}]
    out += ["", "| model | space | batches | train s | conditional acc. | class coverage | min class frac. "
            "| FD (classifier) | confidence |", "|---|---|---|---|---|---|---|---|---|"]
    for r, space in [(r, "AE latent") for r in gans] + [(r, "pixels") for r in pixel]:
        acc = f"{r['conditional_accuracy']:.4f}" if "conditional_accuracy" in r else "–"
        out.append(f"| {r['model']} | {space} | {r['batches']} | {r['train_seconds']} | {acc} | "
                   f"{r['class_coverage']:.2f} | {r['min_class_fraction']:.4f} | {r['fid_classifier']:.2f} | "
                   f"{r['classifier_confidence']:.3f} |")
    out += ["", "| model | noise, linear | noise, slerp | AE latent, linear | AE latent, slerp |",
            "|---|---|---|---|---|"]
    paths = [(space, kind) for space in ("noise", "latent") for kind in ("linear", "slerp")]
    for r in gans:
        cells = [f"{r[f'interpolation_confidence_{space}_{kind}']:.3f}" for space, kind in paths]
        out.append(f"| {r['model']} | {' | '.join(cells)} |")
    return "\n".join(out)


class Results:
    """The rows of a JSON-lines file: `record` appends (and prints) one, `measured` keys what is there already,
    so a rerun skips it."""

    def __init__(self, path: str) -> None:
        self.path = path
        rows = []
        if os.path.exists(path):
            with open(path) as f:
                rows = [json.loads(line) for line in f]
        self.measured = {(r["kind"], r.get("encoder"), r.get("draw"), r.get("model"), r.get("batches")) for r in rows}

    def record(self, row: dict) -> None:
        print(json.dumps(row), flush=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ae-epochs", type=int, default=15)
    parser.add_argument("--few-label-epochs", type=int, default=5)
    parser.add_argument("--draws", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--encoders", nargs="*", default=["frozen", "fine-tuned"])
    parser.add_argument("--gan-batches", type=int, default=1500)
    parser.add_argument("--models", nargs="*", default=["latent_cgan", "latent_gan"])
    parser.add_argument("--work", default=os.path.join(REPO, "benchmarks", "_work"))
    parser.add_argument("--table", action="store_true", help="only print the tables of what is measured")
    args = parser.parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    if args.table:
        print(tables(args.work))
        return
    results = Results(os.path.join(args.work, "latent.jsonl"))
    record, done = results.record, results.measured
    data = prepare_data(args.work)
    classifier_root = classifier("mnist", data, args.work, record)
    ae_root = autoencoder(data, args.work, args.ae_epochs, record)
    for name in args.encoders:
        for draw in args.draws:
            if ("few_label", name, draw, None, None) not in done:
                few_label(data, args.work, ae_root, draw, name == "frozen", args.few_label_epochs, record)
    for model in args.models:
        if ("gan", None, None, model, args.gan_batches) not in done:
            latent_gan(model, data, args.work, ae_root, args.gan_batches, classifier_root, record)
    print(tables(args.work))


if __name__ == "__main__":
    main()
