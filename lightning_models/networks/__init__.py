"""Plain `nn.Module` networks (no Lightning): the training schemes in `lightning_models` assemble them."""

from contextlib import contextmanager
from typing import Iterator

import torch.nn as nn


@contextmanager
def batch_statistics_frozen(module: nn.Module) -> Iterator[None]:
    """Within the block, `module`'s batch-norm layers in train mode still normalise with the batch's statistics
    but leave their running statistics (and batch counts) as they were: for passes of auxiliary inputs, such as
    augmented copies, that must not shift the statistics evaluation uses (momentum 0 keeps the running values)."""
    layers = [m for m in module.modules()
              if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats]
    saved = [(m, m.momentum, m.num_batches_tracked.clone()) for m in layers]
    for m in layers:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum, count in saved:
            m.momentum = momentum
            m.num_batches_tracked.copy_(count)
