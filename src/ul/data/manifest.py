"""The manifest: one CSV row per fetched image, the contract between fetch, pixels and validate.

Columns `path, split, label, sha256, bytes, shard, key`; `path` is the file's name relative to the
raw folder (POSIX separators), rows are sorted by path, `label` is an integer class id or empty,
and `shard`, `key` say where its bytes are (ul.data.rawshards). The class names
live beside it in `classes.json` (id = position). The file is written with fixed formatting so
that the same images always give the same bytes.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ul.common import bounded
from ul.data.layout import DataError, bad_name, shown

MANIFEST = "manifest.csv"
CLASSES = "classes.json"
COLUMNS = ("path", "split", "label", "sha256", "bytes", "shard", "key")
SHARD_RE = re.compile(r"(train|test)-\d{6}\.tar")
KEY_RE = re.compile(r"\d{8}")
SPLITS = ("train", "test")


@dataclass(frozen=True)
class Entry:
    path: str
    split: str
    label: int | None
    sha256: str
    bytes: int
    shard: str = ""  # set when the file is packed (ul.data.rawshards.pack)
    key: str = ""


def write(folder: Path, entries: Iterable[Entry], classes: list[str]) -> Path:
    """Write `manifest.csv` (sorted by path) and `classes.json` into `folder`."""
    rows = sorted(entries, key=lambda e: e.path)
    path = Path(folder) / MANIFEST
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(COLUMNS)
        for e in rows:
            w.writerow([e.path, e.split, "" if e.label is None else e.label, e.sha256, e.bytes, e.shard, e.key])
    (Path(folder) / CLASSES).write_text(json.dumps(list(classes), indent=1) + "\n", encoding="utf-8")
    return path


def read(folder: str | Path) -> list[Entry]:
    """Read the manifest of a raw folder; a missing file or malformed row raises DataError."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        raise DataError(f"{path}: no manifest; run the fetch stage first")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return _rows(path, csv.DictReader(f))
    except (csv.Error, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a readable manifest ({err})") from None


def _rows(path: Path, reader: csv.DictReader) -> list[Entry]:
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise DataError(f"{path}: columns {reader.fieldnames}, expected {list(COLUMNS)}")
    entries, seen, keys = [], set(), set()
    try:
        for r in reader:
            label = int(r["label"]) if r["label"] != "" else None
            e = Entry(r["path"], r["split"], label, r["sha256"], int(r["bytes"]), r["shard"], r["key"])
            if reason := check_path(e.path, e.split) or check_location(e.shard, e.key, e.split):
                raise DataError(f"{path}: line {reader.line_num}: path {shown(e.path)} {reason}")
            if e.path in seen:
                raise DataError(f"{path}: line {reader.line_num}: path {shown(e.path)} is listed twice")
            if e.key in keys:
                raise DataError(f"{path}: line {reader.line_num}: key {e.key} is listed twice")
            seen.add(e.path)
            keys.add(e.key)
            entries.append(e)
    except DataError:
        raise
    except (ValueError, TypeError) as err:  # TypeError: a short row (a missing column is None)
        raise DataError(f"{path}: line {reader.line_num}: {err}") from None
    return entries


def check_path(rel: str, split: str) -> str | None:
    """Why a manifest path may not be read (None when it may): it must be a relative POSIX path
    under its split's folder, without `..`, and a printable UTF-8 name."""
    if split not in SPLITS:
        return f"has split {shown(split)}, not one of {', '.join(SPLITS)}"
    if reason := bad_name(rel):
        return reason
    parts = PurePosixPath(rel).parts
    if not parts or rel.startswith("/") or "\\" in rel:
        return "is not a relative POSIX path"
    if ".." in parts or "." in rel.split("/") or "" in rel.split("/"):
        return "escapes the raw folder or is not normalised"
    if parts[0] != split or len(parts) < 2:
        return f"is not inside {split}/"
    return None


def check_location(shard: str, key: str, split: str) -> str | None:
    """Why a row's shard and key may not be read (None when they may): a shard of its own split,
    named as ul.data.rawshards names them, and an 8-digit key."""
    if not SHARD_RE.fullmatch(shard) or not shard.startswith(f"{split}-"):
        return f"has shard {shown(shard)}, not {split}-<6 digits>.tar"
    if not KEY_RE.fullmatch(key):
        return f"has key {shown(key)}, not 8 digits"
    return None


def read_classes(folder: str | Path) -> list[str]:
    path = Path(folder) / CLASSES
    return bounded.read_json(path, what="class list") if path.exists() else []
