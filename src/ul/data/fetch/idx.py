"""Read the IDX format of (Fashion-)MNIST, gzip-compressed or not.

Layout: two zero bytes, a type code (0x08 = uint8), the number of dimensions, one big-endian
uint32 per dimension, then the data in C order. Only uint8 is used by these datasets.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from ul.data.layout import DataError


def read_idx(path: str | Path) -> np.ndarray:
    """Return the array stored in an IDX(.gz) file; a wrong header or size raises DataError."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise DataError(f"{path}: cannot read IDX file: {err}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    if raw[2] != 0x08:
        raise DataError(f"{path}: IDX type code 0x{raw[2]:02x} unsupported (only uint8, 0x08)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    if len(raw) - header != int(np.prod(shape)):
        raise DataError(f"{path}: IDX header says shape {shape} but holds {len(raw) - header} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)
