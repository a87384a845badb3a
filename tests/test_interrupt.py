"""Stopping a run with a signal: Ctrl-C, SIGTERM and SLURM's requeue signal finish the batch, save a last.ckpt that
`--ckpt_path last` resumes exactly (the same final state as an uninterrupted run), and print how to resume.
Checkpoints are written atomically."""

import glob
import os
import shlex
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch

import cli
from lightning_models.callbacks import RunCheckpoint
from tests.conftest import make_mnist_dir
from tests.helpers import CONFIGS, REPO, last_checkpoint, run_cli, state_of, tiny_args
from tests.test_training import assert_same_training_state

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
DCGAN = next(c for c in CONFIGS if c.endswith("dcgan_mnist.yaml"))
STEPS = 20  # 10 batches of 2 optimizer steps; an epoch is 7 batches (56 training images, batch 8)


class PauseInBatch(pl.Callback):
    """Test helper: in training batch `batch` (counted from 1), just before its first optimizer step (the
    discriminator's, before the generator's), writes `marker` and waits (at most a minute) until a stop signal has
    arrived: the test's signal lands in the middle of a known batch."""

    def __init__(self, batch: int, marker: str) -> None:
        self.batch, self.marker, self.paused = batch, marker, False

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self.paused or trainer.fit_loop.epoch_loop.total_batch_idx + 1 != self.batch:
            return
        self.paused = True
        (run_checkpoint,) = [cb for cb in trainer.callbacks if isinstance(cb, RunCheckpoint)]
        open(self.marker, "w").close()
        deadline = time.monotonic() + 60
        while run_checkpoint.received_signal is None and time.monotonic() < deadline:
            time.sleep(0.02)


class SignalInBatch(pl.Callback):
    """Test helper: this process sends itself `signum` in training batch `batch` (counted from 1), just before its
    first optimizer step."""

    def __init__(self, batch: int, signum: int) -> None:
        self.batch, self.signum, self.sent = batch, signum, False

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if not self.sent and trainer.fit_loop.epoch_loop.total_batch_idx + 1 == self.batch:
            self.sent = True
            os.kill(os.getpid(), self.signum)


@pytest.fixture(scope="module")
def data_and_full_run(tmp_path_factory):
    """Tiny MNIST and the last.ckpt of an uninterrupted run of STEPS steps on it."""
    root = tmp_path_factory.mktemp("interrupt")
    data = make_mnist_dir(str(root / "data"))
    full = str(root / "full")
    run_cli("fit", args_for(data, full))
    return data, state_of(last_checkpoint(full))


def args_for(data, root, *extra):
    return tiny_args(DCGAN, data, root, "--trainer.deterministic", "true", "--trainer.max_steps", str(STEPS), *extra)


@pytest.mark.parametrize("signum, batch", [(signal.SIGINT, 3), (signal.SIGTERM, 7)],
                         ids=["sigint", "sigterm_epoch_end"])
def test_signal_saves_last_checkpoint_that_resumes_exactly(signum, batch, data_and_full_run, tmp_path, capsys):
    # The signal arrives between the D and the G step of batch `batch`: the run finishes that batch and saves (batch
    # 7 is the epoch's last: saved at the epoch's end, where Lightning resumes into the next epoch). Ctrl-C goes to
    # a real process from outside; SIGTERM is sent by the run to itself (`cli.main` in this process).
    data, full = data_and_full_run
    root, marker = str(tmp_path / "runs"), str(tmp_path / "marker")
    args = args_for(data, root)
    if signum == signal.SIGINT:
        stop = ["--trainer.callbacks+=tests.test_interrupt.PauseInBatch", "--trainer.callbacks.batch", str(batch),
                "--trainer.callbacks.marker", marker]
        proc = subprocess.Popen([sys.executable, os.path.join(REPO, "cli.py"), "fit", *args, *stop], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 120
            while not os.path.exists(marker) and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert os.path.exists(marker), "the run never reached the batch"
            proc.send_signal(signum)
            _, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
        code = proc.returncode
    else:
        stop = ["--trainer.callbacks+=tests.test_interrupt.SignalInBatch", "--trainer.callbacks.batch", str(batch),
                "--trainer.callbacks.signum", str(int(signum))]
        code = cli.main(["fit", *args, *stop])
        err = capsys.readouterr().err
        assert signal.getsignal(signum) in (signal.SIG_DFL, None)  # handlers are given back
    assert code == 128 + signum, err[-3000:]
    last = last_checkpoint(root)
    name = signal.Signals(signum).name
    lines = [line for line in err.splitlines() if line.startswith(f"{name}: stopped")]
    resume = shlex.join(["python", "cli.py", "fit", *args, *stop, "--ckpt_path", "last"])
    assert lines == [f"{name}: stopped at global step {2 * batch}, saved {last}. Resume with: {resume}"], err[-3000:]
    assert "Traceback" not in err
    assert state_of(last)["global_step"] == 2 * batch  # the batch it arrived in was finished, and saved
    assert glob.glob(os.path.join(root, "*", "checkpoints", "*")) == [last]  # no temporary file left
    run_cli("fit", [*args, "--ckpt_path", "last"])
    assert_same_training_state(full, state_of(last))


def test_slurm_requeue_signal_saves_requeues_and_resumes_exactly(data_and_full_run, tmp_path, monkeypatch, capsys):
    # Under SLURM (Lightning's SLURMEnvironment, auto_requeue), SIGUSR1 (`#SBATCH --signal=USR1@90`) saves last.ckpt
    # at the batch end (not Lightning's mid-batch hpc_ckpt) and requeues the job; the requeued job resumes it.
    data, full = data_and_full_run
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'scontrol.log'}\n")
    (bin_dir / "scontrol").chmod(0o755)
    slurm = {"SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "generative", "SLURM_NTASKS": "1", "SLURM_NNODES": "1",
             "SLURM_NTASKS_PER_NODE": "1", "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0",
             "SLURM_NODELIST": "127.0.0.1", "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    for key, value in slurm.items():
        monkeypatch.setenv(key, value)
    root = str(tmp_path / "runs")
    args = args_for(data, root)
    send = ["--trainer.callbacks+=tests.test_interrupt.SignalInBatch", "--trainer.callbacks.batch", "5",
            "--trainer.callbacks.signum", str(int(signal.SIGUSR1))]
    assert cli.main(["fit", *args, *send]) == 128 + signal.SIGUSR1
    err = capsys.readouterr().err
    assert "SIGUSR1: stopped at global step 10" in err and "SLURM job 4242 requeued" in err, err[-3000:]
    assert (tmp_path / "scontrol.log").read_text() == "requeue 4242\n"
    assert not glob.glob(os.path.join(root, "**", "hpc_ckpt_*.ckpt"), recursive=True)
    assert signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, None)  # handlers are given back
    assert state_of(last_checkpoint(root))["global_step"] == 10
    run_cli("fit", [*args, "--ckpt_path", "last"])  # what configs/slurm/multinode.sbatch runs when requeued
    assert_same_training_state(full, state_of(last_checkpoint(root)))


def test_second_ctrl_c_stops_at_once():
    run_checkpoint = RunCheckpoint()
    run_checkpoint._on_signal(signal.SIGINT, None)
    assert run_checkpoint.received_signal == signal.SIGINT
    run_checkpoint._on_signal(signal.SIGTERM, None)  # a SIGTERM after it (SLURM, scancel): still finishing the batch
    with pytest.raises(KeyboardInterrupt):
        run_checkpoint._on_signal(signal.SIGINT, None)


def fake_trainer(write):
    return SimpleNamespace(save_checkpoint=lambda path, weights_only=False: write(path), is_global_zero=True,
                           global_step=7, loggers=[])


def test_checkpoint_is_written_beside_and_renamed(tmp_path):
    target = tmp_path / "last.ckpt"
    target.write_bytes(b"previous checkpoint")
    written = []

    def write_half_then_die(path):
        written.append(path)
        with open(path, "wb") as f:
            f.write(b"half of the new")
        raise KeyboardInterrupt  # a second Ctrl-C (or a crash) in the middle of the write

    with pytest.raises(KeyboardInterrupt):
        RunCheckpoint()._save_checkpoint(fake_trainer(write_half_then_die), str(target))
    assert os.path.dirname(written[0]) == str(tmp_path) and written[0] != str(target)  # beside it, not over it
    assert target.read_bytes() == b"previous checkpoint"
    assert os.listdir(tmp_path) == ["last.ckpt"]  # the temporary file is removed

    def write(path):
        torch.save({"global_step": 7}, path)

    RunCheckpoint()._save_checkpoint(fake_trainer(write), str(target))
    assert state_of(str(target)) == {"global_step": 7} and os.listdir(tmp_path) == ["last.ckpt"]
