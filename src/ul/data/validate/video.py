"""The video suite of `validate` (data.frames > 0): one row per decoded clip, and its expectations.

A clip's row holds its layout (channels, frames, height, width, dtype), its pixel statistics
(min, max, mean, std over all frames), `motion` (the mean absolute change between consecutive
frames) and `clip_sha256` (the hash of its decoded bytes). The expectations flag a wrong layout,
a blank clip (as for images: ul.data.validate.suites.pixel_expectations), a still (every frame the same:
motion 0; a video decoded from one repeated frame teaches nothing about time) and duplicates
(two clips with the same decoded bytes, e.g. one video fetched under two names).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from ul.common.shards import ShardReader
from ul.data.layout import PATHS
from ul.data.manifest import SPLITS
from ul.data.validate.suites import pixel_expectations

COLUMNS = ["split", "row", "path", "channels", "frames", "height", "width", "dtype"]
COLUMNS += ["min", "max", "mean", "std", "motion", "clip_sha256"]


def _reader(folder: Path):
    try:
        return ShardReader(folder)
    except (FileNotFoundError, ValueError):
        return None


def _rows(split: str, start: int, batch: np.ndarray, paths: list[str]) -> pd.DataFrame:
    """The table rows of one batch of N×C×T×H×W clips."""
    c, t, h, w = batch.shape[1:]
    flat = batch.reshape(len(batch), -1).astype(np.float64)
    steps = np.abs(np.diff(batch.astype(np.int16), axis=2)).reshape(len(batch), -1)
    idx = np.arange(start, start + len(batch))
    return pd.DataFrame(
        {
            "split": split,
            "row": idx,
            "path": [paths[i] if i < len(paths) else f"{split}#{i}" for i in idx],
            "channels": c,
            "frames": t,
            "height": h,
            "width": w,
            "dtype": str(batch.dtype),
            "min": flat.min(1),
            "max": flat.max(1),
            "mean": flat.mean(1),
            "std": flat.std(1),
            "motion": steps.mean(1) if steps.shape[1] else np.zeros(len(batch)),
            "clip_sha256": [hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest() for x in batch],
        }
    )


def clip_table(decoded_dir: Path, elements: int = 1 << 22) -> pd.DataFrame:
    """One row per decoded clip of both splits (see the module docstring), read in batches of about
    `elements` values. A shard folder that is not 5-D (C×T×H×W rows) gives no rows."""
    parts = []
    for s in SPLITS:
        reader = _reader(decoded_dir / s)
        if reader is None or len(reader.shape) != 5:
            continue
        paths_file = decoded_dir / s / PATHS
        paths = paths_file.read_text().splitlines() if paths_file.exists() else []
        batch_size = max(1, elements // max(1, int(np.prod(reader.shape[1:]))))
        for start, batch in zip(range(0, len(reader), batch_size), reader.iter_batches(batch_size)):
            parts.append(_rows(s, start, batch, paths))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COLUMNS)


def clip_expectations(resolution: int, channels: int, frames: int) -> list:
    """The expectations of the clips table (GX 1.x classes)."""
    import great_expectations.expectations as gxe

    still = [gxe.ExpectColumnValuesToBeBetween(column="motion", min_value=0, strict_min=True)] if frames > 1 else []
    return [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        *pixel_expectations(resolution, channels, frames),
        *still,
        gxe.ExpectColumnValuesToBeUnique(column="clip_sha256"),
    ]
