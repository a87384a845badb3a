"""The latent-model study: an autoencoder on MNIST, then (a) a 50-label classifier on its encoder, frozen and
fine-tuned, over several label draws, and (b) a GAN and a conditional GAN on its codes, scored like the
pixel-space GANs of gan_quality.py (plus the classifier's confidence along interpolation paths).

    python benchmarks/latent_benchmark.py [--ae-epochs 15] [--few-label-epochs 5] [--draws 0 1 2 3 4]
                                          [--gan-batches 1500] [--work benchmarks/_work] [--table]

Data: the same 8,000 / 2,000 split of the official MNIST test set as gan_quality.py (500 of the 8,000 held out
for validation), and the same evaluation classifier (`<work>/classifier_mnist`, trained first if missing). Every
run is one `cli.py` call with the repository's configs; rows go to benchmarks/results/latent.jsonl (committed; a
rerun skips what is measured already) and the tables are printed at the end. Few-label variants are chosen on the
validation split and reported on the test split once:

    python benchmarks/latent_benchmark.py --encoders frozen --draws 0 1 2 --models --split val \
        [--variant labelled_only --cli="--model.unlabeled_weight 0"]
    python benchmarks/latent_benchmark.py --encoders frozen fine-tuned --models [--variant ... --cli=...]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("WANDB_MODE", "disabled")

from benchmarks.gan_quality import QUIET, append_row, classifier, data_args, fit_once, prepare_data, run  # noqa: E402
from lightning_models.callbacks import find_last_checkpoint  # noqa: E402

#: the raw rows behind RESULTS.md's latent-model tables (committed)
RESULTS = os.path.join(REPO, "benchmarks", "results", "latent.jsonl")


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


def few_label(data: str, work: str, ae_root: str, draw: int, freeze: bool, epochs: int, record, split: str = "test",
              variant: str = "", extra: list[str] = ()) -> None:
    """Train the few-label classifier for one label draw (or reuse its finished run) and score it with `cli.py
    test` on `split` (`val`: the 500 held-out images, to choose a variant; `test`: to report the chosen once)."""
    name = "frozen" if freeze else "fine-tuned"
    root = os.path.join(work, f"few_label_{name}_draw{draw}" + (f"_{variant}" if variant else ""))
    common = ["--config", config("few_label_mnist"), *data_args("mnist", data), "--trainer.default_root_dir", root,
              "--model.autoencoder_path", ae_root, "--model.label_seed", str(draw), "--model.freeze_encoder",
              str(freeze).lower(), *QUIET, *extra]
    seconds = fit_once(root, [*common, "--trainer.max_epochs", str(epochs)])
    metrics = run("test", [*common, "--data.test_split", split, "--ckpt_path", "last"])
    record({"kind": "few_label", "encoder": name, "draw": draw, "split": split, "variant": variant or "config",
            **({"cli": " ".join(extra)} if extra else {}), "epochs": epochs,
            "train_seconds": seconds, "test_accuracy": round(float(metrics["test/accuracy"]), 4)})


def latent_gan(model: str, data: str, work: str, ae_root: str, batches: int, classifier_root: str, record,
               split: str = "test", variant: str = "", extra: list[str] = (), seed: int = 0) -> None:
    """Train the latent GAN / cGAN config for `batches` batches (or reuse the finished run) and score it with
    `cli.py test` on `split` (`val` to choose a variant, `test` to report the chosen once)."""
    suffix = (f"_{variant}" if variant else "") + (f"_seed{seed}" if seed else "")
    root = os.path.join(work, f"{model}_mnist_{batches}{suffix}")
    common = ["--config", config(f"{model}_mnist"), *data_args("mnist", data), "--trainer.default_root_dir", root,
              "--model.autoencoder_path", ae_root, "--model.classifier_path", classifier_root,
              "--seed_everything", str(seed), "--model.seed", str(seed), *QUIET, *extra]
    seconds = fit_once(root, [*common, "--trainer.max_steps", str(2 * batches), "--trainer.max_epochs", "-1"])
    metrics = run("test", [*common, "--data.test_split", split, "--ckpt_path", "last"])
    record({"kind": "gan", "model": model, "batches": batches, "split": split, "variant": variant or "config",
            "seed": seed, **({"cli": " ".join(extra)} if extra else {}), "train_seconds": seconds,
            **{k[5:]: round(float(v), 4) for k, v in metrics.items()}})


def ceiling(data: str, ae_root: str, classifier_root: str, record, split: str = "test") -> None:
    """What a latent GAN can reach at best: the autoencoder's reconstructions of the training images, scored as
    (conditional) samples against `split` by the same metrics as the GANs' `cli.py test`. A latent GAN whose
    codes were exactly the training codes would score this; the gap to real-vs-real is the decoder's."""
    from datamodules import MNISTDataModule
    from lightning_models.latent.autoencoder import load_autoencoder
    from lightning_models.metrics.evaluation import SampleEvaluator

    ae = load_autoencoder(ae_root)
    dm = MNISTDataModule("mnist", data, val_size=500, test_split=split)
    real, train = dm.split(split), dm.split("train")
    for conditional in (False, True):
        scorer = SampleEvaluator(classifier_root, dm.num_classes, conditional)
        for images, labels in zip(real["image"].split(1000), real["label"].split(1000)):
            scorer.update_real(images.float() / 255, labels)
        for images, labels in zip(train["image"].split(1000), train["label"].split(1000)):
            scorer.update_fake(ae.decode(ae.encode(images.float() / 255)), labels if conditional else None)
        record({"kind": "gan", "model": "reconstructions" + (" (cond.)" if conditional else ""), "batches": 0,
                "split": split, "samples": len(train["label"]), "train_seconds": 0,
                **{k: round(float(v), 4) for k, v in scorer.compute().items()}})


def tables(path: str, work: str = os.path.join(REPO, "benchmarks", "_work")) -> str:
    """Markdown tables of the rows at `path`, with the pixel-space GANs of `<work>/quality.jsonl` beside."""
    with open(path) as f:
        rows = [json.loads(line) for line in f]
    out = []
    for r in rows:
        if r["kind"] == "autoencoder":
            out += [f"Autoencoder: {r['epochs']} epochs, {r['train_seconds']} s; test reconstruction "
                    f"{r['reconstruction']:.1f} nats/image (BCE), MSE {r['mse']:.4f}.", ""]
    out += ["| encoder | variant | split | draws | accuracy per draw | mean ± std |", "|---|---|---|---|---|---|"]
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        if r["kind"] == "few_label":
            key = (r["encoder"], r.get("variant", "config"), r.get("split", "test"))
            groups.setdefault(key, []).append(r["test_accuracy"])
    for (name, variant, split), accs in groups.items():
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        out.append(f"| {name} | {variant} | {split} | {len(accs)} | {', '.join(f'{a:.4f}' for a in accs)} | "
                   f"**{statistics.mean(accs):.4f} ± {std:.4f}** |")
    gans = [r for r in rows if r["kind"] == "gan"]
    pixel = []
    quality = os.path.join(work, "quality.jsonl")
    if os.path.exists(quality):
        with open(quality) as f:
            pixel = [r for r in map(json.loads, f) if r["kind"] == "gan" and r["dataset"] == "mnist"
                     and r["loss"] == "non_saturating" and (r["model"], r["batches"]) in {("cgan", 1500),
                                                                                           ("dcgan", 3000)}]
    metrics = [("conditional_accuracy", "{:.4f}"), ("class_coverage", "{:.2f}"), ("fid_classifier", "{:.2f}"),
               ("precision_classifier", "{:.3f}"), ("recall_classifier", "{:.3f}"),
               ("diversity_classifier", "{:.3f}"), ("class_fid_classifier_worst", "{:.1f}"),
               ("class_diversity_classifier_mean", "{:.3f}"), ("class_diversity_classifier_worst", "{:.3f}")]
    out += ["", "| model | variant | split | seed | batches | train s | conditional acc. | class coverage | FD "
            "| precision | recall | diversity | class FD worst | class diversity mean | class diversity worst |",
            "|---" * 15 + "|"]
    for r in gans + pixel:
        cells = [fmt.format(r[k]) if k in r else "–" for k, fmt in metrics]
        name = r["model"] + (" (pixels)" if r in pixel else "")
        out.append(f"| {name} | {r.get('variant', 'config')} | {r.get('split', 'test')} | {r.get('seed', 0)} | "
                   f"{r['batches'] or '–'} | {r['train_seconds']} | {' | '.join(cells)} |")
    out += ["", "| model | batches | noise, linear | noise, slerp | AE latent, linear | AE latent, slerp |",
            "|---|---|---|---|---|---|"]
    paths = [(space, kind) for space in ("noise", "latent") for kind in ("linear", "slerp")]
    for r in gans:
        if "interpolation_confidence_noise_linear" not in r:
            continue
        cells = [f"{r[f'interpolation_confidence_{space}_{kind}']:.3f}" for space, kind in paths]
        out.append(f"| {r['model']} | {r['batches']} | {' | '.join(cells)} |")
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
        self.measured = {(r["kind"], r.get("encoder"), r.get("draw"), r.get("model"), r.get("batches"),
                          r.get("split", "test"), r.get("variant", "config"), r.get("seed", 0)) for r in rows}

    def record(self, row: dict) -> None:
        append_row(self.path, row)


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
    parser.add_argument("--split", default="test", choices=["test", "val"],
                        help="what the few-label classifiers and latent GANs are scored on: val to choose a variant, "
                        "test to report")
    parser.add_argument("--variant", default="", help="name of a few-label or latent GAN variant (needs --cli)")
    parser.add_argument("--cli", default="", help='extra cli.py options of the few-label and GAN runs, e.g. '
                                                   '"--model.propagate_on latent"')
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds of the latent GAN runs")
    args = parser.parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    if args.table:
        print(tables(RESULTS))
        return
    extra = shlex.split(args.cli)
    if bool(extra) != bool(args.variant):
        parser.error("--cli and --variant go together: a variant is named, and its folder is not the config's")
    results = Results(RESULTS)
    record, done = results.record, results.measured
    data = prepare_data(args.work)
    classifier_root = classifier("mnist", data, args.work, record)
    ae_root = autoencoder(data, args.work, args.ae_epochs, record)
    for name in args.encoders:
        for draw in args.draws:
            if ("few_label", name, draw, None, None, args.split, args.variant or "config", 0) not in done:
                few_label(data, args.work, ae_root, draw, name == "frozen", args.few_label_epochs, record, args.split,
                          args.variant, extra)
    if args.models and ("gan", None, None, "reconstructions", 0, args.split, "config", 0) not in done:
        ceiling(data, ae_root, classifier_root, record, args.split)
    for model in args.models:
        for seed in args.seeds:
            if ("gan", None, None, model, args.gan_batches, args.split, args.variant or "config", seed) not in done:
                latent_gan(model, data, args.work, ae_root, args.gan_batches, classifier_root, record, args.split,
                           args.variant, extra, seed)
    print(tables(RESULTS))


if __name__ == "__main__":
    main()
