"""BatchLoader: DDP shards, per-epoch order, mid-epoch resume (alone and through a real Lightning fit)."""

from __future__ import annotations

import pytorch_lightning as pl
import pytest
import torch

from datamodules import MNISTDataModule
from datamodules.loader import BatchLoader


def rows(n: int = 50) -> dict[str, torch.Tensor]:
    return {"index": torch.arange(n), "image": torch.zeros(n, 1, 2, 2, dtype=torch.uint8)}


def seen(loader: BatchLoader) -> list[list[int]]:
    return [batch["index"].tolist() for batch in loader]


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_get_disjoint_shards_of_equal_length(world_size):
    shards = [seen(BatchLoader(rows(), 4, shuffle=True, drop_last=True, rank=r, world_size=world_size))
              for r in range(world_size)]
    flat = [[i for batch in shard for i in batch] for shard in shards]
    assert len({len(s) for s in shards}) == 1 and len({len(f) for f in flat}) == 1  # no rank waits on another
    assert len(set().union(*map(set, flat))) == sum(map(len, flat))  # disjoint
    assert all(len(batch) == 4 for shard in shards for batch in shard)


def test_eval_loader_keeps_every_row_in_order():
    assert sum(seen(BatchLoader(rows(), 8)), []) == list(range(50))
    assert len(BatchLoader(rows(), 8)) == 7 and len(BatchLoader(rows(), 8, drop_last=True)) == 6


def test_order_depends_on_seed_and_epoch():
    epoch = {"value": 0}
    loader = BatchLoader(rows(), 5, shuffle=True, seed=1, epoch_fn=lambda: epoch["value"])
    first = seen(loader)
    assert seen(BatchLoader(rows(), 5, shuffle=True, seed=1)) == first
    assert seen(BatchLoader(rows(), 5, shuffle=True, seed=2)) != first
    epoch["value"] = 1
    assert seen(loader) != first and sorted(sum(seen(loader), [])) == list(range(50))


def test_state_dict_resumes_mid_epoch_at_the_next_batch():
    full = seen(BatchLoader(rows(), 5, shuffle=True, seed=3))
    loader = BatchLoader(rows(), 5, shuffle=True, seed=3)
    iterator = iter(loader)
    for _ in range(3):
        next(iterator)
    state = loader.state_dict()
    assert state["batches"] == 3
    resumed = BatchLoader(rows(), 5, shuffle=True, seed=3)
    resumed.load_state_dict(state)
    assert seen(resumed) == full[3:]
    assert seen(resumed) == full  # the resume offset applies to one epoch only


def test_state_from_another_seed_or_world_size_restarts_the_epoch():
    loader = BatchLoader(rows(), 5, shuffle=True, seed=3)
    loader.load_state_dict({"epoch": 0, "batches": 4, "seed": 4, "world_size": 1})
    assert len(seen(loader)) == 10
    loader.load_state_dict({"epoch": 0, "batches": 4, "seed": 3, "world_size": 2})
    assert len(seen(loader)) == 10


def test_state_counts_batches_trained_not_prefetched():
    done = {"value": 2}
    loader = BatchLoader(rows(), 5, progress_fn=lambda: done["value"])
    iterator = iter(loader)
    for _ in range(3):  # one batch ahead of training, as Lightning's fit loop is
        next(iterator)
    assert loader.state_dict()["batches"] == 2


class Recorder(pl.LightningModule):
    """Trains nothing useful; records the labels of every training batch it gets."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.labels: list[list[int]] = []

    def training_step(self, batch, batch_idx):
        self.labels.append(batch["label"].tolist())
        return self.layer(batch["image"].mean((1, 2, 3))[:, None]).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def fit(data_dir: str, root: str, max_steps: int, ckpt_path: str | None = None) -> Recorder:
    model = Recorder()
    trainer = pl.Trainer(default_root_dir=root, max_steps=max_steps, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, accelerator="cpu", devices=1,
                         callbacks=[pl.callbacks.ModelCheckpoint(dirpath=root, every_n_train_steps=8,
                                                                 save_top_k=-1)])
    dm = MNISTDataModule(data_dir=data_dir, batch_size=8, val_size=16, seed=5)
    trainer.fit(model, dm, ckpt_path=ckpt_path)
    return model


@pytest.mark.filterwarnings("ignore:.*val_dataloader", "ignore:.*LeafSpec", "ignore:.*dirpath has changed")
def test_lightning_resumes_mid_epoch_at_the_right_batch(mnist_dir, tmp_path):
    # 48 training images / 8 = 6 batches per epoch; the checkpoint at step 8 is batch 2 of epoch 1.
    reference = fit(mnist_dir, str(tmp_path / "a"), max_steps=12).labels
    fit(mnist_dir, str(tmp_path / "b"), max_steps=8)
    resumed = fit(mnist_dir, str(tmp_path / "c"), max_steps=12,
                  ckpt_path=str(tmp_path / "b" / "epoch=1-step=8.ckpt")).labels
    assert reference[:6] != reference[6:12]  # a new order every epoch
    assert resumed == reference[8:12]
