"""One rank of a 2-process DDP job that trains several configs one after the other (used by tests/test_matrix.py).

Launched twice by the test with the environment of an externally launched job (MASTER_ADDR, MASTER_PORT,
WORLD_SIZE=2, NODE_RANK 0 or 1: what SLURM or torchrun give each process), so the two processes and their process
group are started once for the whole matrix instead of once per config.

Usage: python tests/ddp_worker.py JOBS.json   (a list of {"name": ..., "args": [arguments after `fit`]}; a job may
name another "subcommand" and a "metrics_out" folder, where each rank writes its final metrics as rank<r>.json)
"""

import json
import os
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cli  # noqa: E402


def main(path: str) -> int:
    with open(path) as f:
        jobs = json.load(f)
    failed = 0
    for job in jobs:
        try:
            run = cli.GenerativeCLI(args=[job.get("subcommand", "fit"), *job["args"]])
            if job.get("metrics_out"):
                os.makedirs(job["metrics_out"], exist_ok=True)
                metrics = {k: float(v) for k, v in run.trainer.callback_metrics.items()}
                with open(os.path.join(job["metrics_out"], f"rank{run.trainer.global_rank}.json"), "w") as f:
                    json.dump(metrics, f)
        except Exception:  # report and go on: the test names the configs that failed
            failed += 1
            print(f"DDP job {job['name']} failed on rank {os.environ.get('NODE_RANK')}:\n{traceback.format_exc()}",
                  file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
