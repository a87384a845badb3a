"""The VAE study of the source report at a small fixed budget: continuous, discrete and joint latents, MLP and conv
networks, on colored MNIST (a random palette color per digit), each trained and scored through `cli.py`.

    python benchmarks/vae_benchmark.py [--epochs 10] [--latents continuous discrete joint] [--architectures mlp conv]
                                       [--threads 1] [--work benchmarks/_work] [--variant NAME --cli="--model.x y"]

Data (offline): the official MNIST *test* set in ../shared/data/mnist-test split by make_mnist_split.py into
8,000 training images (500 held out for validation) and 2,000 test images; colors are drawn per image from the
10-color default palette. Each model trains `--epochs` epochs with its config (configs/vae_<latent>_colored_mnist.yaml)
and the architecture given; schedules that the configs size for a full run (Gumbel temperature, JointVAE
capacities) are scaled to the budget: the temperature anneals over all steps, the capacities rise over half.
`cli.py test` then reports, per model: test/neg_elbo (nats per image), its terms, active units,
test/color_accuracy (2,000 color-requested samples whose dominant color is the requested one) and
test/cluster_accuracy (best categorical variable as a digit clustering, majority mapping), and the GANs' sample
scores of 2,000 prior samples in the MNIST evaluation classifier's features (`--model.classifier_path`, colored
images scored by their stroke: Fréchet distance, precision, recall, diversity, class coverage). Color accuracy is
also measured without the sampler's refinements, from the checkpoint: `color_accuracy_t1` (sampling temperature 1
instead of the configs' 0.5) and `color_accuracy_plain` (temperature 1, one draw: plain sampling of the per-color
model). One torch thread by default: on a shared 2-core machine that is faster than two contending ones.
Ablations: `--cli` adds options to every model's `cli.py fit` and `test` (e.g. `--cli="--model.straight_through
true"`; they come last, so they also override the scaled schedules), and `--variant NAME` names the run (folder
`vae_<latent>_<arch>_<epochs>ep_<NAME>`, column `variant`).
Results are appended to benchmarks/results/vae.jsonl (committed) and printed as a Markdown table; `--seeds` and
`--split val|test` choose on the 500 held-out images and report the test split once. A finished run is reused
(only `test` runs again). `--summary [--split S]` prints mean ± std over the seeds of the committed rows.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("WANDB_MODE", "disabled")

from benchmarks.gan_quality import (QUIET, append_row, classifier, fit_once, prepare_data, run,  # noqa: E402
                                     seed_summary)
from datamodules.colored_mnist import DEFAULT_PALETTE  # noqa: E402
from lightning_models import VAE  # noqa: E402
from lightning_models.callbacks import find_last_checkpoint  # noqa: E402

TRAIN_IMAGES, VAL_IMAGES, BATCH = 8000, 500, 128
#: the raw rows behind RESULTS.md's VAE table (committed)
RESULTS = os.path.join(REPO, "benchmarks", "results", "vae.jsonl")
COLUMNS = ["neg_elbo", "reconstruction", "kl_continuous", "kl_categorical", "active_units", "color_accuracy",
           "color_accuracy_strict", "color_mixed", "color_accuracy_t1", "color_accuracy_plain", "cluster_accuracy",
           "cluster_accuracy_one_to_one", "fid_classifier", "precision_classifier", "recall_classifier",
           "diversity_classifier", "class_coverage"]


def vae(latent: str, architecture: str, epochs: int, data: str, work: str, extra: list[str] = (),
        variant: str = "", seed: int = 0, split: str = "test", classifier_root: str | None = None) -> dict:
    """Train one model (or reuse its finished run: the folder is named by latent, architecture, budget, variant
    and seed) and score it with `cli.py test` on `split` (`val` to choose settings, `test` to report once)."""
    name = f"vae_{latent}_{architecture}_{epochs}ep" + (f"_{variant}" if variant else "") + (f"_seed{seed}" if seed else "")
    root = os.path.join(work, name)
    steps = epochs * ((TRAIN_IMAGES - VAL_IMAGES) // BATCH)
    common = ["--config", os.path.join(REPO, "configs", f"vae_{latent}_colored_mnist.yaml"),
              "--data.data_dir", data, "--data.val_size", str(VAL_IMAGES), "--data.batch_size", str(BATCH),
              "--trainer.default_root_dir", root, "--model.architecture", architecture,
              "--model.temperature_anneal_steps", str(steps), "--model.capacity_steps", str(steps // 2),
              "--seed_everything", str(seed), "--model.seed", str(seed), "--data.seed", str(seed), *QUIET, *extra]
    seconds = fit_once(root, [*common, "--trainer.max_epochs", str(epochs)])
    scores = ["--model.classifier_path", classifier_root] if classifier_root else []
    metrics = {k[5:]: round(float(v), 4)
               for k, v in run("test", [*common, *scores, "--data.test_split", split, "--ckpt_path", "last"]).items()}
    model = VAE.load_from_checkpoint(find_last_checkpoint(root), map_location="cpu")
    palette = torch.tensor(DEFAULT_PALETTE)
    # the statistics sampler without its refinements (a color decoder has no sampler; another palette, other colors)
    if model.color_latents is not None and model.num_colors == len(palette):
        for name, candidates in (("color_accuracy_t1", model.hparams.color_candidates), ("color_accuracy_plain", 1)):
            model.hparams.color_candidates, model.hparams.color_temperature = candidates, 1.0
            metrics[name] = round(model.color_accuracy(palette, model.hparams.num_eval_samples), 4)
    return {"latent": latent,
            "architecture": architecture, **({"variant": variant} if variant else {}),
            **({"cli": " ".join(extra)} if extra else {}), "split": split, "seed": seed, "epochs": epochs, "steps": steps,
            "train_seconds": round(seconds, 1), **metrics}


def table(rows: list[dict]) -> str:
    head = ["latent", "arch", "variant", "split", "seed", "epochs", "train s", *COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["latent"], r["architecture"], r.get("variant", "-"), r.get("split", "test"), str(r.get("seed", 0)),
                 str(r["epochs"]), str(r["train_seconds"])]
        cells += [f"{r[c]:.3f}" if c in r else "-" for c in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


SUMMARY = ["neg_elbo", "color_accuracy", "color_accuracy_strict", "color_mixed", "color_accuracy_t1",
           "color_accuracy_plain", "cluster_accuracy", "cluster_accuracy_one_to_one", "fid_classifier",
           "precision_classifier", "recall_classifier", "diversity_classifier", "class_coverage"]


def summary(path: str = RESULTS, split: str = "test") -> str:
    """Markdown table of the rows at `path` on `split`: mean ± std over the seeds of each latent, architecture,
    variant and budget (the newest row of each seed counts)."""
    return seed_summary(path, split, lambda r: (r["latent"], r["architecture"], r.get("variant", ""), r["epochs"]),
                        ["latent", "arch", "variant", "epochs"], SUMMARY)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--latents", nargs="+", default=["continuous", "discrete", "joint"])
    parser.add_argument("--architectures", nargs="+", default=["mlp", "conv"])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--work", default=os.path.join(REPO, "benchmarks", "_work"))
    parser.add_argument("--cli", default="", help='extra cli.py options for every model, e.g. "--model.lr 5e-4"')
    parser.add_argument("--variant", default="", help="name of the run (folder suffix, `variant` column)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds of the weights, data split and colors")
    parser.add_argument("--split", default="test", choices=["test", "val"],
                        help="what `test` scores against: val to choose settings, test to report the chosen once")
    parser.add_argument("--summary", action="store_true",
                        help="only print mean ± std over seeds of the committed rows on --split")
    args = parser.parse_args(argv)
    if args.summary:
        print(summary(RESULTS, args.split))
        return
    extra = shlex.split(args.cli)
    if extra and not args.variant:
        parser.error("--cli changes the models: name the run with --variant (its folder must not be the default's)")
    torch.set_num_threads(args.threads)
    data = prepare_data(args.work)
    digits = classifier("mnist", data, args.work, lambda row: print(json.dumps(row), flush=True))
    rows = []
    for seed in args.seeds:
        for architecture in args.architectures:
            for latent in args.latents:
                row = vae(latent, architecture, args.epochs, data, args.work, extra, args.variant, seed, args.split,
                          digits)
                rows.append(append_row(RESULTS, row))
    print(table(rows))


if __name__ == "__main__":
    main()
