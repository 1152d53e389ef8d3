""".npz files (what `ul encode` writes) read with every size checked from the headers before any
memory is spent: the zip directory's declared sizes against the file's own, and each array's
`.npy` header (dtype, shape) against its member's size. `np.load` trusts both, so a small file
that declares an enormous array, or inflates far past its size, would be allocated first.
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path

import numpy as np

from ul.common.regular import NotRegularFile, open_regular

MAX_INFLATION = 4  # declared bytes per byte on disk (np.savez stores, so about 1; compressed latents ~1.1)
SLACK = 1 << 20  # small files: headers and names
MAX_HEADER = 10_000  # numpy's own default bound on a .npy header


class NpzError(ValueError):
    """The .npz is not one we read; the message says why (the caller names the file)."""


def read(path: str | Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The arrays `keys` of the .npz at `path` (a regular file), each checked before it is read."""
    try:
        f = open_regular(path)
    except NotRegularFile:
        raise NpzError("not a regular file") from None
    st = os.fstat(f.fileno())
    with f:
        try:
            with zipfile.ZipFile(f) as zf:
                infos = {i.filename: i for i in zf.infolist()}
                declared = sum(i.file_size for i in infos.values())
                if declared > MAX_INFLATION * st.st_size + SLACK:
                    raise NpzError(f"declares {declared:,} bytes of arrays in a file of {st.st_size:,} bytes")
                return {k: _member(zf, infos, k) for k in keys}
        except (zipfile.BadZipFile, EOFError, OSError) as err:
            raise NpzError(f"not a readable .npz ({type(err).__name__}: {err})".splitlines()[0]) from None


def _member(zf: zipfile.ZipFile, infos: dict, key: str) -> np.ndarray:
    info = infos.get(f"{key}.npy")
    if info is None:
        raise KeyError(key)
    with zf.open(info) as m:
        version = np.lib.format.read_magic(m)
        if version not in ((1, 0), (2, 0)):
            raise NpzError(f"array {key!r}: .npy format {version} is not read")
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = reader(m, max_header_size=MAX_HEADER)
        if dtype.hasobject or dtype.fields is not None:
            raise NpzError(f"array {key!r}: dtype {dtype} holds objects or records, not numbers or text")
        nbytes = math.prod(shape) * dtype.itemsize
        if m.tell() + nbytes != info.file_size:
            raise NpzError(
                f"array {key!r}: its header declares {shape} {dtype} ({nbytes:,} bytes) in a member of {info.file_size:,} bytes"
            )
        data = m.read(nbytes)  # the member ends at its declared size (zipfile), and its CRC is checked
    if len(data) != nbytes:
        raise NpzError(f"array {key!r}: truncated")
    return np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")
