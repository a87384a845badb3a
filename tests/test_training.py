"""Training behaviour of the adversarial configs through the real CLI: exact resume, `--ckpt_path last`,
DDP with 2 CPU processes, mixed precision, W&B offline (and the W&B group that ties `test` to its fit), test
metrics, prediction folders and the non-finite guard. Stopping by signal: tests/test_interrupt.py."""

import glob
import os
import re
import subprocess
import sys
import time

import pytest
import torch

from lightning_models.metrics.evaluation import ClassifierFeatures, SampleEvaluator, load_classifier, sample_in_chunks
from tests.helpers import CONFIGS, REPO, last_checkpoint, run_cli, run_cli_process, state_of, tiny_args

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
GAN_CONFIGS = [c for c in CONFIGS if os.path.basename(c) in ("dcgan_mnist.yaml", "cgan_mnist.yaml")]
CGAN = next(c for c in GAN_CONFIGS if c.endswith("cgan_mnist.yaml"))


def every_step_checkpoints(tmp_path, every):
    path = tmp_path / f"ckpt_every_{every}.yaml"
    path.write_text("trainer:\n  callbacks:\n    - class_path: lightning_models.callbacks.RunCheckpoint\n"
                    f"      init_args: {{every_n_train_steps: {every}, save_top_k: -1, monitor: null}}\n")
    return str(path)


def assert_same_training_state(a, b):
    assert a["global_step"] == b["global_step"]
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    for opt_a, opt_b in zip(a["optimizer_states"], b["optimizer_states"], strict=True):  # both optimizers
        for pid, state in opt_a["state"].items():
            for name, value in state.items():
                assert torch.equal(torch.as_tensor(value), torch.as_tensor(opt_b["state"][pid][name])), (pid, name)


def test_last_checkpoint_holds_the_final_step_between_save_intervals(mnist_dir, tmp_path):
    # saves every 4 optimizer steps; max_steps 6 ends the run between two saves: last.ckpt still gets step 6
    run_cli("fit", tiny_args(GAN_CONFIGS[0], mnist_dir, str(tmp_path), "--config", every_step_checkpoints(tmp_path, 4),
                             "--trainer.max_steps", "6"))
    assert state_of(last_checkpoint(str(tmp_path)))["global_step"] == 6


@pytest.mark.parametrize("config", GAN_CONFIGS, ids=lambda c: os.path.basename(c)[:-5])
def test_resume_mid_epoch_reproduces_uninterrupted_run(config, mnist_dir, tmp_path):
    # 56 training images / batch 8 = 7 batches (14 steps) per epoch; step 10 is mid-epoch 0, 40 is in epoch 2.
    ckpts = every_step_checkpoints(tmp_path, 10)
    full, resumed = str(tmp_path / "full"), str(tmp_path / "resumed")
    common = ["--config", ckpts, "--trainer.deterministic", "true", "--trainer.max_steps", "40"]
    run_cli("fit", tiny_args(config, mnist_dir, full, *common))
    (mid,) = glob.glob(os.path.join(full, "*", "checkpoints", "epoch=0-step=10.ckpt"))
    run_cli("fit", tiny_args(config, mnist_dir, resumed, *common, "--ckpt_path", mid))
    assert_same_training_state(state_of(last_checkpoint(full)), state_of(last_checkpoint(resumed)))


def test_run_stopped_at_an_epoch_end_resumes_exactly(mnist_dir, tmp_path):
    # max_steps 14 stops at the end of epoch 0 (7 batches of 2 steps) between the config's interval saves: the
    # final last.ckpt is written at that epoch's end, where Lightning resumes into epoch 1 (not past it).
    full, resumed = str(tmp_path / "full"), str(tmp_path / "resumed")
    common = ["--trainer.deterministic", "true"]
    run_cli("fit", tiny_args(GAN_CONFIGS[0], mnist_dir, full, *common, "--trainer.max_steps", "28"))
    run_cli("fit", tiny_args(GAN_CONFIGS[0], mnist_dir, resumed, *common, "--trainer.max_steps", "14"))
    assert state_of(last_checkpoint(resumed))["global_step"] == 14
    run_cli("fit", tiny_args(GAN_CONFIGS[0], mnist_dir, resumed, *common, "--trainer.max_steps", "28",
                             "--ckpt_path", "last"))
    assert_same_training_state(state_of(last_checkpoint(full)), state_of(last_checkpoint(resumed)))


def test_ckpt_path_last_without_checkpoint_is_an_error(mnist_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="--ckpt_path last: no run under .* has checkpoints/last.ckpt"):
        run_cli("fit", tiny_args(CGAN, mnist_dir, str(tmp_path / "empty"), "--trainer.max_steps", "2",
                                 "--ckpt_path", "last"))


def test_ckpt_path_last_resumes_newest_run_in_its_folder(mnist_dir, tmp_path):
    root = str(tmp_path / "runs")
    run_cli("fit", tiny_args(CGAN, mnist_dir, root, "--trainer.max_steps", "4"))
    first = last_checkpoint(root)
    run_cli("fit", tiny_args(CGAN, mnist_dir, root, "--trainer.max_steps", "8", "--ckpt_path", "last"))
    assert last_checkpoint(root) == first  # still one run folder, its last.ckpt replaced
    assert state_of(first)["global_step"] == 8
    run_cli("fit", tiny_args(CGAN, mnist_dir, root, "--trainer.max_steps", "2"))  # a new run: a new folder
    assert len(glob.glob(os.path.join(root, "*", "checkpoints", "last.ckpt"))) == 2
    assert state_of(first)["global_step"] == 8  # the finished run is untouched


def dump_weights_config(tmp_path, out):
    dump = tmp_path / "dump.yaml"
    dump.write_text(f"trainer:\n  callbacks:\n    - class_path: tests.helpers.DumpWeights\n"
                    f"      init_args: {{out_dir: {out}}}\n")
    return str(dump)


def assert_ranks_in_sync(out):
    w0, w1, start = (torch.load(os.path.join(out, name)) for name in ("rank0_end.pt", "rank1_end.pt", "rank0_start.pt"))
    generator = [k for k in w0 if k.startswith("generator.")]
    assert generator and all(torch.equal(w0[k], w1[k]) for k in w0)  # every parameter, G and D
    assert all(not torch.equal(w0[k], start[k]) for k in generator)  # and they trained
    # (BatchNorm running statistics are per-rank buffers; DDP re-broadcasts rank 0's at every forward.)


def test_ddp_two_processes_keep_generators_identical(mnist_dir, tmp_path):
    out = str(tmp_path / "weights")
    # plain "ddp": the CLI turns on find_unused_parameters for adversarial models
    result = run_cli_process("fit", tiny_args(CGAN, mnist_dir, str(tmp_path / "runs"), "--config",
                                              dump_weights_config(tmp_path, out), "--trainer.devices", "2",
                                              "--trainer.strategy", "ddp", "--trainer.max_steps", "6"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert_ranks_in_sync(out)


FAKE_SRUN = """#!/bin/bash
# test stand-in for srun: runs the command once per task on this machine, with SLURM's per-task variables
pids=()
for ((i = 0; i < SLURM_NTASKS; i++)); do
  SLURM_PROCID=$i SLURM_LOCALID=0 SLURM_NODEID=$i "$@" &
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=$?; done
exit $rc
"""


def test_slurm_template_two_nodes_on_localhost(mnist_dir, tmp_path):
    # The SLURM batch script of configs/slurm/ run as SLURM would on 2 nodes x 1 task: srun starts one process per
    # node; Lightning's SLURMEnvironment reads rank, world size and master address from SLURM's variables.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(FAKE_SRUN)
    (bin_dir / "srun").chmod(0o755)
    out = str(tmp_path / "weights")
    args = tiny_args(CGAN, mnist_dir, str(tmp_path / "runs"), "--config", dump_weights_config(tmp_path, out),
                     "--trainer.max_steps", "6")[2:]  # the script passes --config itself
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHON": sys.executable,
           "SLURM_SUBMIT_DIR": REPO, "SLURM_JOB_NAME": "generative", "SLURM_JOB_ID": str(4000 + os.getpid() % 5000),
           "SLURM_NNODES": "2", "SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "1", "SLURM_NODELIST": "127.0.0.1"}
    result = subprocess.run(["bash", os.path.join(REPO, "configs", "slurm", "multinode.sbatch"), CGAN, *args,
                             "--trainer.accelerator", "cpu"], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_ranks_in_sync(out)


@pytest.mark.parametrize("precision", ["bf16-mixed"])  # 16-mixed on CPU: see test_gan.py (GradScaler)
def test_mixed_precision_step_runs(precision, mnist_dir, tmp_path):
    cli = run_cli("fit", tiny_args(CGAN, mnist_dir, str(tmp_path / "runs"), "--trainer.precision", precision,
                                   "--trainer.max_steps", "4", "--model.gradient_clip_val", "1.0"))
    metrics = cli.trainer.callback_metrics
    assert cli.trainer.global_step == 4
    assert torch.isfinite(metrics["train/loss_d"]) and torch.isfinite(metrics["train/loss_g"])


def test_wandb_offline_logs_losses_grids_and_config(mnist_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    save_dir = str(tmp_path / "runs")
    args = [a for a in tiny_args(CGAN, mnist_dir, save_dir, "--trainer.max_steps", "4")]
    i = args.index("--trainer.logger")
    del args[i : i + 2]  # keep the config's WandbLogger
    run_cli("fit", [*args, "--trainer.logger.init_args.save_dir", save_dir, "--trainer.log_every_n_steps", "1"])
    import wandb

    wandb.finish()  # what process exit does after `cli.py fit`: flush the run to disk
    (run,) = glob.glob(os.path.join(save_dir, "wandb", "offline-run-*"))
    assert glob.glob(os.path.join(run, "files", "media", "images", "samples", "grid_*.png"))
    (log,) = glob.glob(os.path.join(run, "run-*.wandb"))  # offline: metrics and config wait here for `wandb sync`
    deadline = time.monotonic() + 30  # the wandb service process writes the file asynchronously
    while b"lr_discriminator" not in (content := open(log, "rb").read()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert b"train/loss_d" in content and b"train/loss_g" in content
    assert b"non_saturating" in content and b"lr_discriminator" in content  # the resolved config


def wandb_offline_args(monkeypatch, args, save_dir):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    i = args.index("--trainer.logger")
    return [*args[:i], *args[i + 2:], "--trainer.logger.init_args.save_dir", save_dir]  # the config's WandbLogger


def wandb_log(run_folder, waiting_for: bytes) -> bytes:
    """The offline run's log (metrics, config, group) once it holds `waiting_for` (the service writes it late)."""
    (log,) = glob.glob(os.path.join(run_folder, "run-*.wandb"))
    deadline = time.monotonic() + 30
    while waiting_for not in (content := open(log, "rb").read()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return content


def test_test_subcommand_logs_into_the_fits_wandb_group_and_says_where(mnist_dir, tmp_path, monkeypatch, capsys):
    import wandb

    root = str(tmp_path / "runs")
    config = os.path.join(REPO, "configs", "classifier_mnist.yaml")
    args = wandb_offline_args(monkeypatch, tiny_args(config, mnist_dir, root), root)
    run_cli("fit", [*args, "--trainer.max_steps", "2"])
    wandb.finish()  # what process exit does after `cli.py fit`
    fit = state_of(last_checkpoint(root))["wandb_run"]  # recorded in the checkpoint by RunCheckpoint
    assert fit["group"] == f"classifier_mnist-{fit['id']}"
    capsys.readouterr()
    run_cli("test", [*args, "--ckpt_path", "last"])
    wandb.finish()
    runs = glob.glob(os.path.join(root, "wandb", "offline-run-*"))
    (fit_run,) = [r for r in runs if r.endswith(f"-{fit['id']}")]
    (test_run,) = [r for r in runs if r != fit_run]
    assert fit["group"].encode() in wandb_log(fit_run, b"weight_decay")
    test_log = wandb_log(test_run, b"test/accuracy")
    assert b"test/accuracy" in test_log and fit["group"].encode() in test_log  # the test metrics, in the fit's group
    assert b"classifier_mnist-test" in test_log and b"weight_decay" in test_log  # named after the fit, with config
    test_id = test_run.rsplit("-", 1)[-1]
    assert (f"test: logged to W&B run 'classifier_mnist-test' ({test_id}, group '{fit['group']}'): {test_run}"
            in capsys.readouterr().err)


def test_predict_writes_a_new_folder_per_call_in_the_run_and_says_where(mnist_dir, tmp_path):
    root = str(tmp_path / "runs")
    run_cli("fit", tiny_args(CGAN, mnist_dir, root, "--trainer.max_steps", "2"))
    run = os.path.dirname(os.path.dirname(last_checkpoint(root)))
    args = tiny_args(CGAN, mnist_dir, root, "--ckpt_path", "last", "--trainer.limit_predict_batches", "2")
    run_cli("predict", args)
    result = run_cli_process("predict", args)  # a real process: what it prints
    assert result.returncode == 0, result.stderr[-3000:]
    first, second = sorted(glob.glob(os.path.join(run, "predictions", "*")))
    assert f"predict: images written to {second}\n" in result.stderr
    for folder in (first, second):  # each holds its own call's grids, one folder per class
        assert sorted(os.listdir(os.path.join(folder, "class_3"))) == ["batch_0000.png", "batch_0001.png"]
    warnings = [line for line in result.stderr.splitlines() if re.search(r"\.py:\d+: ", line)]
    assert not warnings, warnings  # none of Lightning's ("dirpath has changed", "Couldn't infer the batch ...")


def test_a_limit_of_1_batch_on_the_command_line_or_in_a_config_is_one_batch(mnist_dir, tmp_path):
    """LightningCLI's parser turns `--trainer.limit_predict_batches 1` into 1.0, which Lightning reads as 100% of
    the batches: the CLI restores the integer the user wrote (a command-line 1.0 still means 100%)."""
    import cli

    root = str(tmp_path / "runs")
    run_cli("fit", tiny_args(CGAN, mnist_dir, root, "--trainer.max_steps", "2"))
    run = os.path.dirname(os.path.dirname(last_checkpoint(root)))
    one = run_cli("predict", tiny_args(CGAN, mnist_dir, root, "--ckpt_path", "last", "--data.eval_batch_size", "8",
                                       "--trainer.limit_predict_batches", "1"))
    assert one.trainer.limit_predict_batches == 1 and type(one.trainer.limit_predict_batches) is int
    (folder,) = glob.glob(os.path.join(run, "predictions", "*"))
    assert os.listdir(os.path.join(folder, "class_3")) == ["batch_0000.png"]  # one batch, not all of them
    whole = run_cli("predict", tiny_args(CGAN, mnist_dir, root, "--ckpt_path", "last", "--data.eval_batch_size", "8",
                                         "--trainer.limit_predict_batches=1.0"))
    assert whole.trainer.limit_predict_batches == 1.0 and type(whole.trainer.limit_predict_batches) is float
    (folder,) = set(glob.glob(os.path.join(run, "predictions", "*"))) - {folder}
    assert len(os.listdir(os.path.join(folder, "class_3"))) > 1  # 1.0: all of them
    config = tmp_path / "limits.yaml"
    config.write_text("trainer:\n  limit_test_batches: 1\n  limit_val_batches: 1.0\n")
    assert cli.integer_limits(["--config", str(config), "--trainer.limit_predict_batches", "1"]) == \
        {"limit_test_batches", "limit_predict_batches"}
    assert cli.integer_limits(["--config", str(config), "--trainer.limit_test_batches", "0.5"]) == set()


def test_non_finite_loss_exits_with_message(mnist_dir, tmp_path, capsys):
    # cli.main, as `python cli.py` runs it (a real process's exit code and single line: tests/test_bad_input.py)
    import cli

    code = cli.main(["fit", *tiny_args(CGAN, mnist_dir, str(tmp_path / "runs"), "--trainer.max_steps", "4",
                                       "--model.lr_discriminator", "1e30", "--model.lr_generator", "1e30")])
    err = capsys.readouterr().err
    assert code == 1
    assert "error: non-finite" in err and "at global step" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("config", GAN_CONFIGS, ids=lambda c: os.path.basename(c)[:-5])
def test_test_subcommand_reports_sample_metrics(config, mnist_dir, tmp_path):
    classifier_root = str(tmp_path / "classifier")
    classifier_config = os.path.join(os.path.dirname(config), "classifier_mnist.yaml")
    run_cli("fit", tiny_args(classifier_config, mnist_dir, classifier_root, "--trainer.max_steps", "3"))
    root = str(tmp_path / "gan")
    run_cli("fit", tiny_args(config, mnist_dir, root, "--trainer.max_steps", "2"))
    cli = run_cli("test", tiny_args(config, mnist_dir, root, "--ckpt_path", "last", "--model.classifier_path",
                                    classifier_root, "--model.num_eval_samples", "40"))
    metrics = cli.trainer.callback_metrics
    conditional = os.path.basename(config).startswith("cgan")
    expected = {"test/fid_classifier", "test/class_coverage", "test/min_class_fraction", "test/classifier_confidence"}
    assert expected | ({"test/conditional_accuracy"} if conditional else set()) <= set(metrics)
    assert ("test/conditional_accuracy" in metrics) == conditional
    # by hand: the 40 samples of the documented seed, through the classifier. A class is covered when at least
    # 5% of them (2 samples) are predicted in it
    model, dm = cli.model.eval(), cli.datamodule
    rng = torch.Generator().manual_seed(12345)
    chunks = list(sample_in_chunks(lambda k, y: model.sample(k, y, generator=rng), 40, dm.eval_batch_size,
                                   model.num_classes, conditional, "cpu"))
    samples = torch.cat([images for images, _ in chunks])
    features = ClassifierFeatures(load_classifier(classifier_root))
    predicted = features.logits(features(samples)).argmax(1)
    counts = torch.bincount(predicted, minlength=10)
    assert float(metrics["test/class_coverage"]) == pytest.approx(float((counts >= 2).float().mean()))
    assert float(metrics["test/min_class_fraction"]) == pytest.approx(float(counts.min() / 40))
    # the Fréchet distance of those samples to the whole test split (its math: tests/lightning_models/)
    scorer = SampleEvaluator(classifier_root, 10, conditional)
    for batch in dm.test_dataloader():
        batch = dm.on_after_batch_transfer(batch, 0)
        scorer.update_real(batch["image"], batch["label"])
    for images, labels in chunks:
        scorer.update_fake(images, labels)
    assert float(metrics["test/fid_classifier"]) == pytest.approx(float(scorer.compute()["fid_classifier"]), rel=1e-4)


def test_test_subcommand_without_classifier_explains(mnist_dir, tmp_path):
    root = str(tmp_path / "gan")
    run_cli("fit", tiny_args(CGAN, mnist_dir, root, "--trainer.max_steps", "2"))
    with pytest.raises(FileNotFoundError, match="classifier_mnist.yaml"):
        run_cli("test", tiny_args(CGAN, mnist_dir, root, "--ckpt_path", "last", "--model.classifier_path",
                                  str(tmp_path / "nowhere")))


def test_sigkill_mid_epoch_then_resume_finishes(mnist_dir, tmp_path):
    # A checkpoint every batch, so the kill very likely lands while one is being written: last.ckpt must still be
    # whole (RunCheckpoint writes a temporary file beside it and renames it; tests/test_interrupt.py checks that
    # directly), and `--ckpt_path last` must finish the run (resumed in this process from the files on disk; the
    # killed process is the real one).
    # Killed as soon as the second epoch's first checkpoint appears, with 30-odd steps to spare: after a fixed wait
    # a fast machine had already finished all steps (36) and was tearing down when the kill came.
    root, steps = str(tmp_path / "runs"), 48
    args = tiny_args(CGAN, mnist_dir, root, "--config", every_step_checkpoints(tmp_path, 2), "--trainer.max_steps",
                     str(steps))
    proc = subprocess.Popen([sys.executable, os.path.join(REPO, "cli.py"), "fit", *args], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            found = glob.glob(os.path.join(root, "*", "checkpoints", "epoch=1-*.ckpt"))  # into the second epoch
            if found:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed; raise max_steps"
        proc.kill()  # SIGKILL: no handler runs
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    killed_at = state_of(last_checkpoint(root))["global_step"]  # loads: not half-written
    assert 14 <= killed_at < steps
    assert run_cli("fit", [*args, "--ckpt_path", "last"]).trainer.global_step == steps
    assert state_of(last_checkpoint(root))["global_step"] == steps


@pytest.mark.parametrize("which", ["last", "path"])
def test_checkpoint_options_apply_and_command_line_options_win(which, mnist_dir, tmp_path):
    root = str(tmp_path / "runs")
    run_cli("fit", tiny_args(CGAN, mnist_dir, root, "--trainer.max_steps", "2", "--model.num_eval_samples", "77",
                             "--model.predict_grid_size", "5"))
    ckpt = "last" if which == "last" else last_checkpoint(root)
    cli = run_cli("predict", tiny_args(CGAN, mnist_dir, root, "--ckpt_path", ckpt, "--model.predict_grid_size", "9",
                                       "--trainer.limit_predict_batches", "2", "--trainer.callbacks+="
                                       "lightning_models.callbacks.ImageWriter", "--trainer.callbacks.output_dir",
                                       str(tmp_path / "pred")))
    assert cli.model.hparams.num_eval_samples == 77  # what it was trained with (the config says 10000)
    assert cli.model.hparams.predict_grid_size == 9  # given on this command line
