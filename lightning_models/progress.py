"""Progress of long work that runs inside one Lightning hook or batch, where Lightning's own bar stands still:
drawing the samples of `cli.py test`, the latent optimisation of GAN inversion.

Each phase logs one line with its counts when it starts and one with its time and rate when it ends (rank 0, at
INFO, as Lightning's own messages), and while the trainer shows progress bars a bar of its own runs beneath
Lightning's. Outside a trainer it is silent.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from pytorch_lightning.utilities.rank_zero import rank_zero_info

#: Without a bar, a phase longer than this logs a line with its count so far at this interval (seconds).
LOG_INTERVAL_S = 60.0


def _shows_bar(trainer: Any) -> bool:
    bar = getattr(trainer, "progress_bar_callback", None)
    return bool(bar is not None and getattr(bar, "is_enabled", False) and trainer.is_global_zero)


@contextmanager
def phase_progress(trainer: Any, description: str, total: int | None = None,
                   unit: str = "") -> Iterator[Callable[[int], None]]:
    """Yields `advance(n)`, to call as `n` of the phase's `total` `unit`s are done; logs `description` with the
    total at the start and the time taken at the end (see the module doc). Without `total`, a phase of one piece
    (no bar, no rate). `trainer` may be None (silent)."""
    if trainer is None or total == 0:
        yield lambda n: None
        return
    if total is None:
        rank_zero_info(f"{description} ...")
        start = time.perf_counter()
        yield lambda n: None
        rank_zero_info(f"{description}: {time.perf_counter() - start:.1f} s")
        return
    rank_zero_info(f"{description}: {total} {unit} ...")
    start = last_log = time.perf_counter()
    done = 0
    bar = None
    if _shows_bar(trainer):
        from tqdm import tqdm

        bar = tqdm(total=total, desc=description.split(":")[0], unit=unit.split()[0], leave=False, position=1,
                   dynamic_ncols=True, mininterval=0.5)

    def advance(n: int) -> None:
        nonlocal done, last_log
        done += n
        if bar is not None:
            bar.update(n)
        elif time.perf_counter() - last_log > LOG_INTERVAL_S:
            last_log = time.perf_counter()
            rank_zero_info(f"{description}: {done}/{total} {unit} ({last_log - start:.0f} s)")

    try:
        yield advance
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start
    rank_zero_info(f"{description}: {done} {unit} in {seconds:.1f} s ({done / max(seconds, 1e-9):.3g} {unit}/s)")
