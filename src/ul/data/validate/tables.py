"""The tables validate checks, as pandas frames: the manifest (one row per fetched file, with the
sha256 of its bytes now and its size), the split counts, and the decoded images' layout and pixel
statistics."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ul.common import bounded, hashing
from ul.common.shards import ShardReader
from ul.data import manifest, rawshards
from ul.data.layout import PATHS, SKIPPED, DataError, shown
from ul.data.manifest import SPLITS


def _member(shards: rawshards.Shards, rel: str, split: str, shard: str, key: str) -> bytes | None:
    """A manifest row's file from its shard; None when the row cannot name one or it is missing."""
    if manifest.check_location(shard, key, split):
        return None
    try:
        return shards.read(manifest.Entry(rel, split, None, "", 0, shard, key))
    except DataError:
        return None


def _int_or_text(value: str):
    """'' → None, '3' → 3, anything else stays text so the label expectation can show it."""
    if value == "":
        return None
    try:
        return int(value)
    except ValueError:
        return value


def manifest_table(raw_dir: Path, skipped: set[str] = frozenset(), size_of=None) -> pd.DataFrame:
    """The manifest as written (not parsed by ul.data.manifest, so bad values reach GX), plus
    `file_sha256`, the hash of the file in its shard now ("missing" when it is not there), and the
    header's width and height (empty for the files decode skipped: they are counted, not measured).
    `size_of(bytes)` reads them (default: the image header)."""
    path = raw_dir / manifest.MANIFEST
    if not path.exists():
        raise DataError(f"{path}: no manifest; run the fetch stage first")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, UnicodeDecodeError) as err:  # pandas' ParserError is a ValueError
        raise DataError(f"{path}: not a readable manifest ({str(err).strip().splitlines()[0]})") from None
    missing = [c for c in manifest.COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}")
    for k, (rel, split) in enumerate(zip(df["path"], df["split"])):
        if reason := manifest.check_path(rel, split):  # before any file is opened
            raise DataError(f"{path}: row {k + 1}: path {shown(rel)} {reason}")
    df["label"] = pd.Series([_int_or_text(v) for v in df["label"]], index=df.index, dtype=object)
    df["bytes"] = pd.to_numeric(df["bytes"], errors="coerce")
    shards, size_of = rawshards.Shards(raw_dir), size_of or _size
    files = [_member(shards, *row) for row in zip(df["path"], df["split"], df["shard"], df["key"])]
    df["file_sha256"] = ["missing" if b is None else hashing.sha256_bytes(b) for b in files]
    sizes = [(None, None) if p in skipped else size_of(b or b"") for p, b in zip(df["path"], files)]
    df["width"] = pd.Series([w for w, _ in sizes], index=df.index, dtype="Int64")
    df["height"] = pd.Series([h for _, h in sizes], index=df.index, dtype="Int64")
    return df


def _size(data: bytes) -> tuple:
    """(width, height) from the image header (no pixel decode); (0, 0) when unreadable."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except Exception:  # unreadable files are decode's to name; here they only fail the size check
        return (0, 0)


def _reader(folder: Path):
    try:
        return ShardReader(folder)
    except (FileNotFoundError, ValueError):
        return None


def skipped_paths(decoded_dir: Path, drop: str | None = None) -> list[str]:
    """The manifest paths decode left out (`skipped.json`), or only those it dropped as `drop`
    (pixels.drop); a malformed file is a DataError."""
    path = decoded_dir / SKIPPED
    if not path.exists():
        return []
    try:
        listed = bounded.read_json(path, what="skipped list")
        return [str(s["path"]) for s in listed if drop is None or s.get("drop") == drop]
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise DataError(f"{path}: not a list of skipped files ({type(err).__name__})") from None


def counts_table(raw: pd.DataFrame, decoded_dir: Path) -> pd.DataFrame:
    """Per split: manifest rows (of `raw`), skipped files among them, and decoded rows."""
    skipped = skipped_paths(decoded_dir)
    split_of = dict(zip(raw["path"], raw["split"]))
    rows = []
    for s in SPLITS:
        reader = _reader(decoded_dir / s)
        n_manifest = int((raw["split"] == s).sum())
        n_skipped = sum(split_of.get(p) == s for p in skipped)
        rows.append(
            {
                "split": s,
                "manifest": n_manifest,
                "skipped": n_skipped,
                "expected_decoded": n_manifest - n_skipped,
                "decoded": len(reader) if reader else 0,
            }
        )
    return pd.DataFrame(rows)


def image_table(decoded_dir: Path, elements: int = 1 << 22) -> pd.DataFrame:
    """Per decoded image: split, row, manifest path, C/H/W, dtype, min, max, mean, std.

    Reads batches of about `elements` pixel values (32 MB as float64), whatever the image size.
    """
    parts = []
    for s in SPLITS:
        reader = _reader(decoded_dir / s)
        if reader is None:
            continue
        paths_file = decoded_dir / s / PATHS
        paths = paths_file.read_text().splitlines() if paths_file.exists() else []
        c, h, w = (list(reader.shape[1:]) + [0, 0, 0])[:3]
        batch_size = max(1, elements // max(1, int(np.prod(reader.shape[1:]))))
        for start, batch in zip(range(0, len(reader), batch_size), reader.iter_batches(batch_size)):
            flat = batch.reshape(len(batch), -1).astype(np.float64)
            idx = np.arange(start, start + len(batch))
            parts.append(
                pd.DataFrame(
                    {
                        "split": s,
                        "row": idx,
                        "path": [paths[i] if i < len(paths) else f"{s}#{i}" for i in idx],
                        "channels": c,
                        "height": h,
                        "width": w,
                        "dtype": str(batch.dtype),
                        "min": flat.min(1),
                        "max": flat.max(1),
                        "mean": flat.mean(1),
                        "std": flat.std(1),
                    }
                )
            )
    cols = ["split", "row", "path", "channels", "height", "width", "dtype", "min", "max", "mean", "std"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)
