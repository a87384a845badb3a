"""Across the collection: training images/second of each scheme (our LightningModule under `Trainer.fit`) vs a plain
PyTorch loop over the same networks, losses and optimizers (no Lightning: batches by index from the same uint8
tensors, the same per-batch work), and the data pipeline's images/second of each datamodule.

    python benchmarks/collection_throughput.py DATA_DIR [--schemes classifier vae_joint pix2pix cyclegan cgan ...]
        [--batches N] [--repeats 3] [--val-size 500] [--data-only] [--compile] [--channels-last]
        [--autoencoder AE_CHECKPOINT_OR_RUN_ROOT] [--gan GAN_RUN_ROOT] [--set "--data.batch_size 512" ...]

DATA_DIR holds MNIST/raw (see make_mnist_split.py). Each scheme is built from its config in configs/ (its default
network sizes and batch size) through the CLI's parser, so the networks timed are the ones users train. Runs
alternate (plain, ours, plain, ours, ...) so both see the same machine load; the medians are reported, and the
median of the per-repeat ratios (each "ours" run over the plain run just before it), which a slow drift of the
machine's speed does not move. The plain
loop takes its batches from the datamodule's own loader and calls the module's own loss functions (`VAE.loss_terms`, `TranslationModule.discriminator_loss`, ...), so the
ratio measures exactly what Lightning and our hooks add.

Epoch length: `--val-size` images of the training file are held out (default 500). From make_mnist_split.py's
8,000 training images that leaves 7,500, about 58 batches of 128 per epoch (full MNIST: 430). Each epoch boundary
costs Lightning a few ms (loop restart, epoch-end hooks, a log flush), so very short epochs would charge it far
more often than training on real data does.

The data rate is a whole epoch's batches as training sees them: BatchLoader slicing plus the datamodule's
on-device transform (`on_after_batch_transfer`: uint8 -> float, coloring, pairing), on this machine's CPU.
"""

from __future__ import annotations

import argparse
import copy
import os
import resource
import shlex
import statistics
import sys
import time
from types import SimpleNamespace

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cli  # noqa: E402
from lightning_models.latent.few_label import label_spreading  # noqa: E402
from lightning_models.metrics.classifier import random_translate  # noqa: E402
from lightning_models.performance import ChannelsLast, CompileNetworks  # noqa: E402

WARMUP = 3
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCHES = {"classifier": 150, "vae_continuous": 300, "vae_joint": 300, "pix2pix": 20, "cyclegan": 8, "dcgan": 40,
           "cgan": 40, "autoencoder": 60, "latent_gan": 300, "latent_cgan": 300, "infogan": 40, "few_label": 60,
           "inversion": 40}
# per scheme: a timed window of a few seconds on a 2-core CPU
SCHEMES = {  # name: config
    "classifier": "classifier_mnist.yaml",
    "vae_continuous": "vae_continuous_colored_mnist.yaml",
    "vae_joint": "vae_joint_colored_mnist.yaml",
    "pix2pix": "pix2pix_colored_mnist.yaml",
    "cyclegan": "cyclegan_colored_mnist.yaml",
    "dcgan": "dcgan_mnist.yaml",
    "cgan": "cgan_mnist.yaml",
    "autoencoder": "ae_mnist.yaml",
    "latent_gan": "latent_gan_mnist.yaml",
    "latent_cgan": "latent_cgan_mnist.yaml",
    "infogan": "infogan_mnist.yaml",
    "few_label": "few_label_mnist.yaml",
    "inversion": "inversion_mnist.yaml",
}
UPSTREAM = {"latent_gan": ("--model.autoencoder_path", "autoencoder"), "latent_cgan": ("--model.autoencoder_path",
            "autoencoder"), "few_label": ("--model.autoencoder_path", "autoencoder"),
            "inversion": ("--model.gan_path", "gan")}  # option, and the argument of this script giving the path


def build(config: str, data_dir: str, *extra: str):
    """(model, datamodule) exactly as `cli.py fit --config configs/<config>` builds them (`extra`: more CLI
    arguments, e.g. `--data.val_size`)."""
    parsed = cli.GenerativeCLI(args=["--config", os.path.join(REPO, "configs", config), "--data.data_dir", data_dir,
                                     "--trainer.logger", "false", *extra], run=False)
    parsed.datamodule.setup("fit")
    return parsed.model, parsed.datamodule


class Timer(pl.Callback):
    """Wall time from the end of batch WARMUP to the end of the last batch (as the plain loop measures)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.batches = getattr(self, "batches", 0) + 1
        if self.batches == WARMUP:
            self.start = time.perf_counter()
        self.seconds = time.perf_counter() - self.start if self.batches > WARMUP else 0.0


def steps_per_batch(model) -> int:
    if model.automatic_optimization:
        return 1
    return model.hparams.get("n_critic", 1) + 1  # GANs: n_critic D steps + 1 G step; translation: D + G


def ours(model, dm, batches: int, extra_callbacks=()) -> float:
    """Images/second of `Trainer.fit` after WARMUP batches (compilation, with `CompileNetworks`, happens in those)."""
    model = copy.deepcopy(model)
    timer = Timer()
    trainer = pl.Trainer(max_steps=steps_per_batch(model) * (batches + WARMUP), accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[*extra_callbacks, timer], num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(model, dm)
    return batches * dm.batch_size / timer.seconds


# --- the plain loops: one function per scheme, (model, batch dict, optimizers, rng) -> None ------------------------
def _step(opt, loss) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def plain_classifier(model, batch, opts, rng):
    images = random_translate(batch["image"], 2) if model.hparams.augment else batch["image"]
    _step(opts[0], F.cross_entropy(model.net(images), batch["label"]))


def plain_vae(model, batch, opts, rng):
    _step(opts[0], model.training_loss(batch, rng, model.hparams.temperature, 0)[0])


def plain_translation(model, batch, opts, rng):
    opt_g, opt_d = opts
    real_a, real_b = batch["image_a"] * 2 - 1, batch["image_b"] * 2 - 1
    fake_b, fake_a = model.generator_ab(real_a), model.generator_ba(real_b)
    shown_a, shown_b = model.history(fake_a.detach(), fake_b.detach(), rng)
    _step(opt_d, model.discriminator_loss(model.discriminator_b, real_b, shown_b, real_a, rng)
          + model.discriminator_loss(model.discriminator_a, real_a, shown_a, real_b, rng))
    discriminators = [*model.discriminator_a.parameters(), *model.discriminator_b.parameters()]
    for p in discriminators:
        p.requires_grad_(False)
    loss_g = (model.gan_loss.generator(model.judge(model.discriminator_b, fake_b, real_a))
              + model.gan_loss.generator(model.judge(model.discriminator_a, fake_a, real_b))
              + sum(model.reconstruction_losses(real_a, real_b, fake_a, fake_b).values()))
    _step(opt_g, loss_g)
    for p in discriminators:
        p.requires_grad_(True)


def plain_autoencoder(model, batch, opts, rng):
    _step(opts[0], model.reconstruction_loss(model.corrupt(batch["image"]), batch["image"]))


def _plus(loss, *terms):
    """`loss` plus the terms that are not None."""
    return sum((t for t in terms if t is not None), loss)


def _discriminator_params_of(opt_g, model) -> list:
    """The discriminator's parameters in G's optimizer (InfoGAN's Q head with q_optimizer generator; none for the
    other GANs), found once per optimizer: the plain loop freezes them in the D step, as toggling does."""
    if not hasattr(opt_g, "_plain_d_params"):
        in_d = {id(p) for p in model.discriminator.parameters()}
        opt_g._plain_d_params = [p for group in opt_g.param_groups for p in group["params"] if id(p) in in_d]
    return opt_g._plain_d_params


def plain_gan(model, batch, opts, rng):
    """Every GAN of the collection (DCGAN, cGAN, latent GANs, InfoGAN) through the module's hooks: what it
    discriminates, the latent it draws, its discriminator pass and its auxiliary and real-batch (InfoGAN)
    terms."""
    opt_g, opt_d = opts
    d_params = [p for group in opt_d.param_groups for p in group["params"]]
    q_in_g = _discriminator_params_of(opt_g, model)
    real, labels = model.real_inputs(batch)
    z = model.draw_latent(len(real), rng)
    fake = model.generator(z, labels)
    for p in q_in_g:
        p.requires_grad_(False)
    real_logits, _ = model.discriminate(real, labels)
    fake_logits, aux = model.discriminate(fake.detach(), labels)
    loss_d = model.gan_loss.discriminator(real_logits, fake_logits)
    _step(opt_d, _plus(loss_d, model.auxiliary_loss(aux, z, labels), model.real_loss(real, labels)))
    for p in q_in_g:
        p.requires_grad_(True)
    for p in d_params:
        p.requires_grad_(False)
    logits, aux = model.discriminate(fake, labels)
    loss_g = model.gan_loss.generator(logits)
    _step(opt_g, _plus(loss_g, model.auxiliary_loss(aux, z, labels), model.real_loss(real, labels)))
    for p in d_params:
        p.requires_grad_(True)
    if model.generator_ema is not None:
        model.generator_ema.update_parameters(model.generator)


def plain_inversion(model, batch, opts, rng):
    h = model.hparams
    real = batch["image"] * 2 - 1
    z = torch.randn(len(real), model.latent_dim, generator=rng)
    with torch.no_grad():
        fake = model.generator(z)
    real_codes, fake_codes = model.encoder(torch.cat([real, fake])).split(len(real))
    _step(opts[0], h.reconstruction_weight * F.mse_loss(model.generator(real_codes), real)
          + h.latent_weight * F.mse_loss(fake_codes, z))


def few_label_epoch(model, dm, epoch: int) -> None:
    """What FewLabelClassifier does outside its steps: the labelled draw (once) and each epoch's label spreading."""
    model._trainer = SimpleNamespace(datamodule=dm, current_epoch=epoch, global_rank=0)
    if epoch == 0:
        model.setup("fit")
    h = model.hparams
    model.pseudo_labels, model.pseudo_certainty = label_spreading(
        model.propagation_features(), model.labelled_indices, model.labelled_labels, model.num_classes,
        h.propagation_neighbors, h.propagation_alpha, h.propagation_iterations)


def plain_few_label(model, batch, opts, rng):
    h = model.hparams
    loss = F.cross_entropy(model(random_translate(model.labelled_images, h.augment_shift)), model.labelled_labels)
    rows = model.lookup(batch["image"])
    per_image = F.cross_entropy(model(random_translate(batch["image"], h.augment_shift)), model.pseudo_labels[rows],
                                reduction="none")
    _step(opts[0], loss + h.unlabeled_weight * (per_image * model.pseudo_certainty[rows]).mean())


def latent_codes_once(model, dm, epoch: int) -> None:
    """What LatentGAN does when fit starts (`cache_codes`): the training split encoded once (not timed, as in
    `ours`, where it happens in `on_fit_start` before the timer starts)."""
    if epoch == 0 and model.hparams.cache_codes:
        model.cache_training_codes(dm.split("train")["image"])


# per-epoch work of a scheme, outside its training steps
EPOCH_START = {"few_label": few_label_epoch, "latent_gan": latent_codes_once, "latent_cgan": latent_codes_once}

PLAIN = {"classifier": plain_classifier, "vae_continuous": plain_vae, "vae_joint": plain_vae,
         "pix2pix": plain_translation, "cyclegan": plain_translation, "dcgan": plain_gan, "cgan": plain_gan,
         "autoencoder": plain_autoencoder, "latent_gan": plain_gan, "latent_cgan": plain_gan, "infogan": plain_gan,
         "few_label": plain_few_label, "inversion": plain_inversion}


def plain(name: str, model, dm, batches: int) -> float:
    model = copy.deepcopy(model).train()
    configured = model.configure_optimizers()  # one optimizer, {"optimizer": ...}, (opt_g, opt_d), or ([...], [...])
    if isinstance(configured, dict):
        opts = [configured["optimizer"]]
    elif isinstance(configured, torch.optim.Optimizer):
        opts = [configured]
    else:
        opts = list(configured[0] if isinstance(configured[0], list) else configured)
    rng = torch.Generator().manual_seed(0)
    loader = dm.train_dataloader()  # the same BatchLoader slicing (no Lightning involved)
    epoch_start = EPOCH_START.get(name, lambda *args: None)
    epoch = 0
    epoch_start(model, dm, epoch)
    batches_of = iter(loader)
    start = None
    for b in range(batches + WARMUP):
        if b == WARMUP:
            start = time.perf_counter()
        raw = next(batches_of, None)
        if raw is None:  # a new epoch
            epoch += 1
            epoch_start(model, dm, epoch)
            batches_of = iter(loader)
            raw = next(batches_of)
        batch = dm.on_after_batch_transfer(raw, 0)
        PLAIN[name](model, batch, opts, rng)
    return batches * dm.batch_size / (time.perf_counter() - start)


def data_rate(dm) -> float:
    """Images/second of one epoch of training batches: loader slicing + on-device transform."""
    loader = dm.train_dataloader()
    start, count = time.perf_counter(), 0
    for batch in loader:
        batch = dm.on_after_batch_transfer(batch, 0)
        count += len(next(iter(batch.values())))
    return count / (time.perf_counter() - start)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir")
    parser.add_argument("--schemes", nargs="+", default=list(SCHEMES), choices=list(SCHEMES))
    parser.add_argument("--batches", type=int, default=None, help="timed batches (default: per scheme, BATCHES)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--val-size", type=int, default=500,
                        help="training images held out for validation (sets the epoch length, see above)")
    parser.add_argument("--data-only", action="store_true")
    parser.add_argument("--compile", action="store_true",
                        help="'ours' with lightning_models.performance.CompileNetworks (inductor); plain stays eager")
    parser.add_argument("--channels-last", action="store_true",
                        help="'ours' with lightning_models.performance.ChannelsLast; plain stays NCHW")
    parser.add_argument("--autoencoder", default="benchmarks/_work/ae_mnist",
                        help="autoencoder checkpoint or run root for the latent GAN and few-label schemes")
    parser.add_argument("--gan", default="benchmarks/_work/dcgan_mnist_non_saturating_3000",
                        help="GAN checkpoint or run root whose generator the inversion scheme inverts")
    parser.add_argument("--set", action="append", default=[], metavar='"--OPTION VALUE"',
                        help="more CLI arguments for every scheme's config, e.g. --set \"--data.batch_size 512\" "
                             "(both loops use the resulting model and datamodule); repeatable")
    args = parser.parse_args(argv)
    extra_callbacks = ([CompileNetworks()] if args.compile else []) + ([ChannelsLast()] if args.channels_last else [])
    print("| scheme (config) | batch | batches/epoch | plain img/s | ours img/s | ours/plain (medians) "
          "| median of the run ratios | data img/s | data / ours | runs |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    settings = [word for option in args.set for word in shlex.split(option)]
    for name in args.schemes:
        torch.manual_seed(0)
        extra = [UPSTREAM[name][0], getattr(args, UPSTREAM[name][1])] if name in UPSTREAM else []
        model, dm = build(SCHEMES[name], args.data_dir, "--data.val_size", str(args.val_size), *extra, *settings)
        data = statistics.median(data_rate(dm) for _ in range(3))
        if args.data_only:
            print(f"| {name} ({SCHEMES[name]}, {type(dm).__name__}) | {dm.batch_size} | {len(dm.train_dataloader())} "
                  f"| | | | | {data:.0f} | | |")
            continue
        batches = args.batches or BATCHES[name]
        plain(name, model, dm, max(2, batches // 4))  # warm both paths up (allocator, thread pool); not counted
        ours(model, dm, max(2, batches // 4), extra_callbacks)
        rates = {"plain": [], "ours": []}
        for _ in range(args.repeats):
            rates["plain"].append(plain(name, model, dm, batches))
            rates["ours"].append(ours(model, dm, batches, extra_callbacks))
        p, o = statistics.median(rates["plain"]), statistics.median(rates["ours"])
        paired = statistics.median(b / a for a, b in zip(rates["plain"], rates["ours"]))
        print(f"| {name} ({SCHEMES[name]}, {type(dm).__name__}) | {dm.batch_size} | {len(dm.train_dataloader())} "
              f"| {p:.0f} | {o:.0f} | {o / p:.3f} | {paired:.3f} | {data:.0f} | {data / o:.0f}x "
              f"| plain {[round(r) for r in rates['plain']]}, ours {[round(r) for r in rates['ours']]} |", flush=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS of the process {rss:.0f} MiB; torch threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
