"""A resumable batch loader over tensors already in memory.

`torch.utils.data.DataLoader` collates one sample at a time in Python and restarts its epoch on resume.
Here a batch is one fancy-index per tensor, the order is a pure function of `(seed, epoch)`, each rank takes
its own shard, and `state_dict()` records how far into the epoch training got, so Lightning's fit loop
(which calls `state_dict`/`load_state_dict` on loaders that have them) resumes mid-epoch exactly.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch
from torch import Tensor


class BatchLoader:
    """Yields `{name: tensor[idx]}` dicts of `batch_size` rows (per rank) from tensors sharing their first dim.

    Args:
        tensors: the split, e.g. `{"image": uint8 (N, C, H, W), "label": int64 (N,)}`.
        batch_size: rows per batch on each rank.
        shuffle: a new permutation every epoch, derived from `(seed, epoch)`.
        drop_last: drop the last incomplete batch.
        seed: the data-order seed.
        epoch_fn: returns the current epoch (the trainer's), read when an epoch starts.
        progress_fn: returns how many batches of the current epoch the training loop has finished; used by
            `state_dict` because the loop pre-fetches batches it has not trained on yet.
        rank, world_size: the shard this process reads (DDP); every rank gets the same number of batches.
    """

    def __init__(
        self,
        tensors: dict[str, Tensor],
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        epoch_fn: Callable[[], int] | None = None,
        progress_fn: Callable[[], int] | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        sizes = {len(t) for t in tensors.values()}
        if len(sizes) != 1:
            raise ValueError(f"BatchLoader: tensors differ in length: { {k: len(t) for k, t in tensors.items()} }")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.tensors = tensors
        self.num_rows = sizes.pop()
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.epoch_fn = epoch_fn or (lambda: 0)
        self.progress_fn = progress_fn
        self.rank = rank
        self.world_size = world_size
        self._epoch = 0
        self._yielded = 0
        self._resume: dict | None = None

    def _shard(self, epoch: int) -> Tensor:
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            order = torch.randperm(self.num_rows, generator=gen)
        else:
            order = torch.arange(self.num_rows)
        per_rank = self.num_rows // self.world_size if self.world_size > 1 else self.num_rows
        return order[self.rank : per_rank * self.world_size : self.world_size]

    def __len__(self) -> int:
        rows = self.num_rows // self.world_size
        return rows // self.batch_size if self.drop_last else -(-rows // self.batch_size)

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        start = 0
        self._epoch = self.epoch_fn()
        if self._resume is not None and self._resume["epoch"] == self._epoch:
            start = self._resume["batches"]
        self._resume = None
        index = self._shard(self._epoch)
        self._yielded = start
        for b in range(start, len(self)):
            idx = index[b * self.batch_size : (b + 1) * self.batch_size]
            self._yielded = b + 1
            yield {name: t[idx] for name, t in self.tensors.items()}

    def state_dict(self) -> dict:
        done = self.progress_fn() if self.progress_fn is not None else self._yielded
        return {"epoch": self._epoch, "batches": int(done), "seed": self.seed, "world_size": self.world_size}

    def load_state_dict(self, state: dict) -> None:
        if state.get("seed") != self.seed or state.get("world_size") != self.world_size:
            # A different order or shard: resuming the position would not mean the same batches.
            self._resume = None
            return
        self._resume = {"epoch": state["epoch"], "batches": state["batches"]}
