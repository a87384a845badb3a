"""Reading the IDX files of MNIST-style datasets, gzipped (as distributed) or extracted (as torchvision leaves them).

torchvision's own readers only take the extracted files and its dataset classes extract into the data folder;
we read either form in place, so nothing is ever written into the user's data folder unless they ask to download.
"""

from __future__ import annotations

import gzip
import os

import numpy as np
import torch
from torch import Tensor

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def find_idx_file(folder: str, name: str) -> str | None:
    """`folder/name` as `name.gz` or extracted `name`, whichever exists (gz first)."""
    for candidate in (os.path.join(folder, name + ".gz"), os.path.join(folder, name)):
        if os.path.isfile(candidate):
            return candidate
    return None


def read_idx(path: str) -> Tensor:
    """Decodes one IDX file into a tensor; a truncated or corrupt file raises ValueError naming it."""
    try:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as err:  # gzip raises these on truncated/corrupt archives
        raise ValueError(f"{path}: cannot read ({err}). The file is corrupt or truncated: delete it and "
                         "download it again (--data.download true).") from err
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number). Replace it with the original file.")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header. Download the file again.")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_DTYPES[data[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"{path}: {len(data)} bytes, but its header {shape} needs {expected}; the file is "
                         "truncated or corrupt. Download it again (--data.download true).")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return torch.from_numpy(array.astype(array.dtype.newbyteorder("=")).copy())
