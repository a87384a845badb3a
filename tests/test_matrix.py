"""The collection-wide matrix: every config in configs/ under DDP (2 CPU processes) and exact resume, through the
real CLI on tiny data (tests/test_configs.py trains every config in bf16-mixed). A new config joins by existing
(see tests/helpers.py for the tiny options of a new model class). Marked `slow`: `python -m pytest -q -m "not slow"`
skips it while iterating."""

import glob
import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from tests.helpers import CONFIGS, REPO, last_checkpoint, run_cli, state_of, tiny_args
from tests.test_configs import IDS, data_dir_for
from tests.test_training import assert_same_training_state, every_step_checkpoints

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]


def free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    """Trains every config for 4 steps on 2 DDP processes (one process group for all of them), then runs `test` of
    a classifier and a cGAN on them; returns ({config name: folder of the per-rank weight dumps}, the job's stderr,
    the folder of the per-rank test metrics, the classifier's test metrics from one process)."""
    from tests.conftest import make_mnist_dir

    tmp = tmp_path_factory.mktemp("ddp")
    mnist = make_mnist_dir(str(tmp / "mnist"))
    jobs, outs = [], {}
    for config, name in zip(CONFIGS, IDS):
        outs[name] = str(tmp / "weights" / name)
        dump = tmp / f"dump_{name}.yaml"
        dump.write_text(f"trainer:\n  callbacks:\n    - class_path: tests.helpers.DumpWeights\n"
                        f"      init_args: {{out_dir: {outs[name]}}}\n")
        args = tiny_args(config, data_dir_for(config, mnist, tmp), str(tmp / "runs" / name), "--config", str(dump),
                         "--trainer.num_nodes", "2", "--trainer.devices", "1", "--trainer.strategy", "ddp",
                         "--trainer.max_steps", "4")
        jobs.append({"name": name, "args": args})
    # `test` under DDP: each rank scores its shard, the metrics are reduced across ranks
    classifier = next(c for c in CONFIGS if c.endswith("classifier_mnist.yaml"))
    cgan = next(c for c in CONFIGS if c.endswith("cgan_mnist.yaml"))
    run_cli("fit", tiny_args(classifier, mnist, str(tmp / "classifier"), "--trainer.max_steps", "4"))
    run_cli("fit", tiny_args(cgan, mnist, str(tmp / "cgan"), "--trainer.max_steps", "2"))
    ddp = ["--trainer.num_nodes", "2", "--trainer.devices", "1", "--trainer.strategy", "ddp"]
    tests = {"classifier": tiny_args(classifier, mnist, str(tmp / "classifier"), "--ckpt_path", "last"),
             "cgan": tiny_args(cgan, mnist, str(tmp / "cgan"), "--ckpt_path", "last", "--model.classifier_path",
                               str(tmp / "classifier"), "--model.num_eval_samples", "40")}
    for name, args in tests.items():
        jobs.append({"name": f"test_{name}", "subcommand": "test", "args": [*args, *ddp],
                     "metrics_out": str(tmp / "metrics" / name)})
    single = {k: float(v) for k, v in run_cli("test", tests["classifier"]).trainer.callback_metrics.items()}
    (tmp / "jobs.json").write_text(json.dumps(jobs))
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": free_port(), "WORLD_SIZE": "2"}
    procs = [subprocess.Popen([sys.executable, os.path.join(REPO, "tests", "ddp_worker.py"), str(tmp / "jobs.json")],
                              cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              env={**env, "NODE_RANK": str(rank)}) for rank in (0, 1)]
    errors = [p.communicate(timeout=900)[1] for p in procs]
    return outs, "\n".join(e[-4000:] for e in errors), str(tmp / "metrics"), single


@pytest.mark.parametrize("name", IDS)
def test_ddp_two_processes_keep_ranks_in_sync(name, ddp_runs):
    outs, stderr = ddp_runs[:2]
    out = outs[name]
    assert os.path.isfile(os.path.join(out, "rank1_end.pt")), f"{name} did not finish under DDP:\n{stderr}"
    w0, w1, start = (torch.load(os.path.join(out, f)) for f in ("rank0_end.pt", "rank1_end.pt", "rank0_start.pt"))
    assert w0.keys() == w1.keys()
    for key in w0:  # every parameter identical on both ranks: gradients were averaged
        torch.testing.assert_close(w0[key], w1[key], rtol=0, atol=0, msg=key)
    assert any(not torch.equal(w0[k], start[k]) for k in w0)  # and training changed them
    if name == "cyclegan_colored_mnist":  # each step leaves two of the four networks idle: all four still train
        for prefix in ("generator_ab.", "generator_ba.", "discriminator_a.", "discriminator_b."):
            assert any(not torch.equal(w0[k], start[k]) for k in w0 if k.startswith(prefix)), prefix


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_interrupted_then_resumed_equals_uninterrupted(config, mnist_dir, tmp_path):
    # Two epochs of 3 batches, a checkpoint after every batch. Resumed mid-epoch (after batch 1 of epoch 0) and
    # from the save after epoch 0's last batch (before that epoch's end hooks: Lightning then resumes in epoch 1
    # without calling its on_train_epoch_start, so epoch-level state such as schedules and pseudo-labels must
    # still come out right), both runs must end exactly where the uninterrupted one did.
    data = data_dir_for(config, mnist_dir, tmp_path)
    common = ["--config", every_step_checkpoints(tmp_path, 1), "--trainer.deterministic", "true",
              "--trainer.limit_train_batches", "3", "--trainer.max_epochs", "2", "--trainer.max_steps", "-1"]
    full = str(tmp_path / "full")
    run_cli("fit", tiny_args(config, data, full, *common))
    end = state_of(last_checkpoint(full))
    saves = sorted(glob.glob(os.path.join(full, "*", "checkpoints", "epoch=0-step=*.ckpt")),
                   key=lambda p: int(p.rsplit("=", 1)[1][:-5]))
    assert len(saves) == 3 and end["epoch"] == 1 and end["global_step"] == 2 * state_of(saves[-1])["global_step"]
    for name, start in (("mid_epoch", saves[0]), ("after_last_batch", saves[-1])):
        resumed = str(tmp_path / name)
        run_cli("fit", tiny_args(config, data, resumed, *common, "--ckpt_path", start))
        assert_same_training_state(end, state_of(last_checkpoint(resumed)))


def test_ddp_test_metrics_are_reduced_across_ranks(ddp_runs):
    _, stderr, metrics_dir, single = ddp_runs
    ranks = {}
    for name in ("classifier", "cgan"):
        paths = [os.path.join(metrics_dir, name, f"rank{r}.json") for r in (0, 1)]
        assert all(os.path.isfile(p) for p in paths), f"`test` of {name} did not finish under DDP:\n{stderr}"
        ranks[name] = [json.load(open(p)) for p in paths]
        assert ranks[name][0] == ranks[name][1]  # both ranks report the reduced value, not their shard's
    assert {"test/fid_classifier", "test/conditional_accuracy"} <= set(ranks["cgan"][0])
    # each rank saw half the test set; the reduced accuracy is that of the whole set, as one process computes it
    assert ranks["classifier"][0]["test/accuracy"] == pytest.approx(single["test/accuracy"], abs=1e-6)
    assert ranks["classifier"][0]["test/loss"] == pytest.approx(single["test/loss"], abs=1e-5)
