"""GAN inversion and restoration on MNIST with the frozen generator of a trained DCGAN (issue 5).

    python benchmarks/inversion_benchmark.py fit  [--steps 1200] [--gan PATH] [--work benchmarks/_work]
    python benchmarks/inversion_benchmark.py test [--images 128] [--restarts 2] [--optim-steps 100] [--tag T]
                                                  [--extra=--model.inpaint_norm --extra=l1]
    python benchmarks/inversion_benchmark.py ablate [--images 32] [--restarts 2] [--optim-steps 100]
    python benchmarks/inversion_benchmark.py combine --restarts 16 [--images 128] [--first 0] [--sigmas 0.3 0.5]
    python benchmarks/inversion_benchmark.py table

`fit` trains the inversion encoder (configs/inversion_mnist.yaml, batch 64, `--steps` batches) against the GAN
checkpoint `--gan` (default: the 3,000-step DCGAN of the loss study), under <work>/inversion_mnist.
`test` runs `cli.py test` on the first `--images` MNIST test images with that encoder's newest checkpoint:
encoder-only / optimisation-only / hybrid reconstruction, denoising at sigma 0.3 and 0.5, and inpainting of a
10x10 centre hole against the mean-fill baseline (see lightning_models/inversion/evaluation.py), with `--restarts`
starts and `--optim-steps` Adam steps per latent optimisation. Each run appends its scores and wall time to
<work>/inversion.jsonl; `table` prints them as Markdown. `ablate` changes one thing at a time in the
optimisation-only inversion of the first `--images` test images (through the Python API, same checkpoint):
the generator in train mode (BatchNorm on the batch of latents being optimised), one start instead of
`--restarts`, no prior penalty, a 10x smaller learning rate; and the inpainting data term, L1 against L2.
`combine` runs one hybrid optimisation with `--restarts` starts per task (inpainting a 10x10 centre hole, denoising
at each of `--sigmas`) on test images `--first` to `--first + --images`, and scores every way of combining those
same restarts (`combine_restarts`): the best one, their mean, the mean of the top k, softmax-weighted means at
several temperatures, and best / mean / weighted mean of only the first 2, 4, 8 restarts (as if run with fewer).

Data (offline): the official MNIST test set split by make_mnist_split.py into 8,000 training images (500 held out
for validation) and 2,000 test images, as in the other benchmarks.
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

from cli import GenerativeCLI  # noqa: E402
from lightning_models.callbacks import find_last_checkpoint  # noqa: E402

CONFIG = os.path.join(REPO, "configs", "inversion_mnist.yaml")
DEFAULT_GAN = os.path.join(REPO, "benchmarks", "_work", "dcgan_mnist_non_saturating_3000")
QUIET = ["--trainer.logger", "false", "--trainer.enable_progress_bar", "false"]
EVAL_BATCH = 64  # at least 2 batches of 64 (the first 128 images at the least)
COLUMNS = ["psnr_encoder", "psnr_optim", "psnr_hybrid", "ssim_encoder", "ssim_optim", "ssim_hybrid", "loss_optim",
           "loss_hybrid", "psnr_noisy_sigma0.3", "psnr_denoise_sigma0.3", "psnr_noisy_sigma0.5",
           "psnr_denoise_sigma0.5", "psnr_meanfill_hole", "psnr_inpaint_hole", "ssim_inpaint"]


def common(args: argparse.Namespace) -> list[str]:
    return ["--config", CONFIG, "--model.gan_path", args.gan, "--data.data_dir", os.path.join(args.work, "data"),
            "--data.val_size", "500", "--trainer.default_root_dir", os.path.join(args.work, "inversion_mnist"),
            *QUIET, *args.extra]


def fit(args: argparse.Namespace) -> dict:
    start = time.time()
    cli = GenerativeCLI(args=["fit", *common(args), "--trainer.max_steps", str(args.steps),
                              "--trainer.limit_val_batches", "2"])
    metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items()}
    return {"stage": "fit", "steps": args.steps, "wall_s": round(time.time() - start, 1),
            "val_psnr_encoder": metrics.get("val/psnr_encoder")}


def test(args: argparse.Namespace) -> dict:
    ckpt = find_last_checkpoint(os.path.join(args.work, "inversion_mnist"))
    if ckpt is None:
        raise SystemExit("no trained encoder: run `python benchmarks/inversion_benchmark.py fit` first")
    batches = max(2, -(-args.images // EVAL_BATCH))
    start = time.time()
    cli = GenerativeCLI(args=["test", *common(args), "--ckpt_path", ckpt, "--data.eval_batch_size", str(EVAL_BATCH),
                              "--trainer.limit_test_batches", str(batches), "--model.restarts", str(args.restarts),
                              "--model.optim_steps", str(args.optim_steps)])
    scores = {k.removeprefix("test/"): round(float(v), 4) for k, v in cli.trainer.callback_metrics.items()}
    return {"stage": "test", "tag": args.tag, "images": batches * EVAL_BATCH, "restarts": args.restarts,
            "optim_steps": args.optim_steps, "checkpoint": os.path.relpath(ckpt, REPO),
            "wall_s": round(time.time() - start, 1), **scores}


def ablate(args: argparse.Namespace) -> dict:
    import copy

    import torch

    from datamodules import MNISTDataModule
    from lightning_models import GANInversion
    from lightning_models.inversion.restoration import center_mask, data_loss, optimize_latent

    torch.manual_seed(0)
    model = GANInversion.load_from_checkpoint(find_last_checkpoint(os.path.join(args.work, "inversion_mnist")))
    model.eval()
    images = MNISTDataModule(data_dir=os.path.join(args.work, "data")).split("test")["image"][: args.images] / 255
    targets = images * 2 - 1

    def psnr(restored, mask=None):
        error = (restored - images).square()
        if mask is not None:  # inside the hole only
            error = error[(mask == 0).expand_as(error)].view(len(images), -1)
        return round(float((-10 * error.flatten(1).mean(1).log10()).mean()), 2)

    def optim(generate=model.generator, restarts=args.restarts, prior_weight=0.01, lr=0.1):
        start = time.time()
        z, _ = optimize_latent(generate, targets, model.latent_dim, steps=args.optim_steps, lr=lr,
                               restarts=restarts, prior_weight=prior_weight,
                               generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            restored = model.decode(z)
            loss = float(data_loss(restored * 2 - 1, targets, None, "l2").mean())
        return {"psnr": psnr(restored), "loss": round(loss, 4), "s": round(time.time() - start, 1)}

    row = {"stage": "ablate", "images": args.images, "restarts": args.restarts, "optim_steps": args.optim_steps}
    row["optim"] = optim()
    train_mode_generator = copy.deepcopy(model.generator).train()  # BatchNorm uses the batch's statistics
    row["optim_generator_train_mode"] = optim(train_mode_generator)
    row["optim_one_start"] = optim(restarts=1)
    row["optim_no_prior"] = optim(prior_weight=0.0)
    row["optim_lr_0.01"] = optim(lr=0.01)
    mask = center_mask(tuple(model.hparams.image_shape), 10)
    for norm in ("l2", "l1"):
        model.hparams.restarts, model.hparams.optim_steps = args.restarts, args.optim_steps
        filled = model.invert(images * mask, "hybrid", mask, norm, torch.Generator().manual_seed(0))[1]
        row[f"inpaint_hole_psnr_{norm}"] = psnr(images * mask + filled * (1 - mask), mask)
    return row

def combine(args: argparse.Namespace) -> dict:
    """Hole PSNR of inpainting (and PSNR of denoising) for several ways of combining the same restarts: one
    hybrid optimisation per task with `--restarts` starts, then `combine_restarts` per variant."""
    import torch

    from datamodules import MNISTDataModule
    from lightning_models import GANInversion
    from lightning_models.inversion.restoration import center_mask, combine_restarts, corrupt, mean_fill

    torch.manual_seed(0)
    model = GANInversion.load_from_checkpoint(find_last_checkpoint(os.path.join(args.work, "inversion_mnist")))
    model.eval()
    model.hparams.restarts, model.hparams.optim_steps = args.restarts, args.optim_steps
    test_images = MNISTDataModule(data_dir=os.path.join(args.work, "data")).split("test")["image"]
    images = test_images[args.first : args.first + args.images] / 255
    variants = {"best": ("best", None, None), "mean": ("mean", None, None)}
    variants.update({f"mean_top{k}": ("mean", None, k) for k in (2, 4, 8) if k < args.restarts})
    variants.update({f"mean_t{t:g}": ("mean", t, None) for t in (0.003, 0.01, 0.03, 0.1)})

    def psnr(restored, region=None):  # per image, then averaged; `region`: 1 where scored
        error = (restored.clamp(0, 1) - images).square()
        if region is not None:
            error = error[region.expand_as(error).bool()].view(len(images), -1)
        return round(float((-10 * error.flatten(1).mean(1).log10()).mean()), 3)

    row = {"stage": "combine", "first": args.first, "images": len(images), "restarts": args.restarts,
           "optim_steps": args.optim_steps}
    mask = center_mask(tuple(model.hparams.image_shape), 10)
    hole = 1 - mask
    observed = corrupt(images, "inpaint", mask=mask)
    start = time.time()
    _, restarts, losses = model.invert_restarts(observed, "hybrid", mask, "l2", torch.Generator().manual_seed(0))
    row["inpaint_s"] = round(time.time() - start, 1)
    row["inpaint_hole_meanfill"] = psnr(mean_fill(observed, mask), hole)
    for name, (how, temperature, top_k) in variants.items():
        filled = combine_restarts(restarts, losses, how, temperature, top_k)
        row[f"inpaint_hole_{name}"] = psnr(observed * mask + filled * hole, hole)
    # fewer restarts: the first k (restart 0 is the encoder's guess), as if run with k
    for k in [k for k in (2, 4, 8) if k < args.restarts]:
        for how, temperature in (("best", None), ("mean", None), ("mean", 0.03)):
            filled = combine_restarts(restarts[:k], losses[:k], how, temperature)
            name = how if temperature is None else f"{how}_t{temperature:g}"
            row[f"inpaint_hole_first{k}_{name}"] = psnr(observed * mask + filled * hole, hole)
    for sigma in args.sigmas:
        noisy = corrupt(images, "denoise", sigma, generator=torch.Generator().manual_seed(1))
        start = time.time()
        _, restarts, losses = model.invert_restarts(noisy, "hybrid", None, "l2", torch.Generator().manual_seed(0))
        row[f"denoise_s_sigma{sigma:g}"] = round(time.time() - start, 1)
        row[f"noisy_sigma{sigma:g}"] = psnr(noisy)
        for name, (how, temperature, top_k) in variants.items():
            row[f"denoise_sigma{sigma:g}_{name}"] = psnr(combine_restarts(restarts, losses, how, temperature, top_k))
    return row


def table(path: str) -> str:
    rows = [json.loads(line) for line in open(path)] if os.path.exists(path) else []
    rows = [r for r in rows if r["stage"] == "test"]
    head = ["tag", "images", "restarts", "optim_steps", "wall_s", *COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join(str(r.get(c, "")) for c in head) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["fit", "test", "ablate", "combine", "table"])
    parser.add_argument("--gan", default=DEFAULT_GAN, help="GAN checkpoint or run root")
    parser.add_argument("--work", default=os.path.join(REPO, "benchmarks", "_work"))
    parser.add_argument("--steps", type=int, default=1200, help="encoder training batches (fit)")
    parser.add_argument("--images", type=int, default=128, help="test images (rounded up to batches of 64, at least 2)")
    parser.add_argument("--restarts", type=int, default=2)
    parser.add_argument("--optim-steps", type=int, default=100)
    parser.add_argument("--first", type=int, default=0, help="index of the first test image (combine)")
    parser.add_argument("--sigmas", type=float, nargs="*", default=[0.3, 0.5], help="denoising levels (combine)")
    parser.add_argument("--tag", default="")
    parser.add_argument("--extra", action="append", default=[], help="more CLI options, e.g. --extra=--model.x")
    args = parser.parse_args(argv)
    results = os.path.join(args.work, "inversion.jsonl")
    if args.stage == "table":
        print(table(results))
        return
    row = {"fit": fit, "test": test, "ablate": ablate, "combine": combine}[args.stage](args)
    row.update(date=time.strftime("%Y-%m-%d %H:%M"), extra=" ".join(args.extra))
    with open(results, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
