"""Arrays stored as a few large `.npy` shards plus a JSON index, read back memory-mapped.

Used for the decoded images (uint8, N×C×H×W) and for the stage-2 latent cache (float32 `z_clean`).
A few large files keep DVC fast (one hash per shard, not per image) and let readers `np.load(...,
mmap_mode="r")` without reading everything into memory. The index is written last, atomically:
a folder without `index.json` is incomplete and is refused by the reader.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ul.common import atomic, bounded

INDEX = "index.json"
MAX_INDEX_BYTES = 64 << 20  # one entry per shard: far below this for any dataset


class ShardWriter:
    """Append arrays of one shape/dtype; flushes a shard every `shard_size` rows."""

    def __init__(self, folder: str | Path, shard_size: int = 10_000, prefix: str = "shard"):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in self.folder.glob(f"{prefix}-*.npy"):
            stale.unlink()
        (self.folder / INDEX).unlink(missing_ok=True)
        self.shard_size, self.prefix = shard_size, prefix
        self._buf: list[np.ndarray] = []
        self._buffered = 0
        self.shards: list[dict] = []
        self.count = 0
        self.labels: list[np.ndarray] = []

    def add(self, batch: np.ndarray, labels: np.ndarray | None = None) -> None:
        batch = np.ascontiguousarray(batch)
        if labels is not None:
            self.labels.append(np.asarray(labels, dtype=np.int64).reshape(-1))
        self._buf.append(batch)
        self._buffered += len(batch)
        self.count += len(batch)
        while self._buffered >= self.shard_size:
            self._flush(self.shard_size)

    def _flush(self, n: int) -> None:
        data = np.concatenate(self._buf) if len(self._buf) > 1 else self._buf[0]
        head, rest = data[:n], data[n:]
        name = f"{self.prefix}-{len(self.shards):05d}.npy"
        try:
            np.save(self.folder / name, head)
        except OSError as err:  # numpy's tofile says only "N requested and M written": name the cause
            if not atomic.no_room(self.folder, head.nbytes):
                raise
            raise OSError(
                errno.ENOSPC, f"{self.folder / name}: cannot write {head.nbytes:,} bytes ({os.strerror(errno.ENOSPC)})"
            ) from err
        self.shards.append({"file": name, "count": int(len(head))})
        self._buf = [rest] if len(rest) else []
        self._buffered = len(rest)

    def close(self, stats: dict | None = None) -> Path:
        if self._buffered:
            self._flush(self._buffered)
        if not self.shards:
            raise ValueError(f"{self.folder}: no rows written")
        first = np.load(self.folder / self.shards[0]["file"], mmap_mode="r")
        index = {
            "count": self.count,
            "dtype": str(first.dtype),
            "shape": list(first.shape[1:]),
            "shards": self.shards,
            "stats": stats or {},
        }
        if self.labels:
            labels = np.concatenate(self.labels)
            if len(labels) != self.count:
                raise ValueError(f"{self.folder}: {len(labels)} labels for {self.count} rows")
            np.save(self.folder / "labels.npy", labels)
            index["labels"] = "labels.npy"
        return atomic.write_text(self.folder / INDEX, json.dumps(index, indent=1, sort_keys=True))


class ShardReader:
    """A read-only, memory-mapped view of a shard folder; `reader[indices]` gathers rows."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        path = self.folder / INDEX
        if not path.exists():
            raise FileNotFoundError(f"{self.folder}: no {INDEX}; the folder is missing or was not completely written")
        self.index = bounded.read_json(path, MAX_INDEX_BYTES, "shard index")
        self.arrays = [np.load(self.folder / s["file"], mmap_mode="r") for s in self.index["shards"]]
        self.offsets = np.cumsum([0] + [len(a) for a in self.arrays])
        if self.offsets[-1] != self.index["count"]:
            raise ValueError(f"{self.folder}: shards hold {self.offsets[-1]} rows, index says {self.index['count']}")
        lab = self.index.get("labels")
        self.labels = np.load(self.folder / lab) if lab else None

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def shape(self) -> tuple:
        return (len(self), *self.index["shape"])

    @property
    def stats(self) -> dict:
        return self.index.get("stats", {})

    def __getitem__(self, idx) -> np.ndarray:
        if isinstance(idx, slice):
            idx = np.arange(len(self))[idx]
        idx = np.atleast_1d(np.asarray(idx, dtype=np.int64))
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"{self.folder}: index out of range [0, {len(self)})")
        shard = np.searchsorted(self.offsets, idx, side="right") - 1
        out = np.empty((len(idx), *self.index["shape"]), dtype=self.index["dtype"])
        for s in np.unique(shard):
            m = shard == s
            out[m] = self.arrays[s][idx[m] - self.offsets[s]]
        return out

    def iter_batches(self, batch_size: int) -> Iterable[np.ndarray]:
        for start in range(0, len(self), batch_size):
            yield self[np.arange(start, min(start + batch_size, len(self)))]
