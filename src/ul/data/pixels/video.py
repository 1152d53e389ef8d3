"""The pixels stage for video (data.frames > 0): each fetched file → one uint8 C×T×H×W clip, in shards.

The clip rules and the backend are ul.data.pixels.pyav's (PyAV on the CPU; see there which backend
runs where). Every file is decoded once and a file that cannot give a clip is named by path as a
corrupt image is: `on_error="fail"` stops with one DataError listing them all, `"skip"` leaves them
out and lists them in `skipped.json`. The output has the image layout (ul.data.pixels.images): per split a
shard folder of N×C×T×H×W rows with `paths.txt`, labels when every file has one, and index stats
that add `frames` and `fps` to the image ones.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ul.common.atomic import staged_dir
from ul.common.shards import ShardWriter
from ul.data import rawshards
from ul.data.layout import PATHS, SKIPPED, DataError, refuse
from ul.data.manifest import SPLITS, Entry
from ul.data.pixels import pyav


def _device(device: str) -> str:
    if device == "cuda":
        raise DataError(
            "pixels.device=cuda: video is decoded with PyAV on the CPU (a GPU video decoder is not "
            "built yet); use pixels.device=auto or cpu"
        )
    return "cpu"


def _clips(raw_dir: Path, keep: list[Entry], opts: dict, threads: int):
    """(entry, clip or None, reason or None) for each entry, in order; decoded `threads` at a time."""
    shards = rawshards.Shards(raw_dir)

    def one(e: Entry):
        try:
            return e, pyav.load(shards.read(e), **opts), None
        except pyav.ClipError as err:
            return e, None, str(err)

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for start in range(0, len(keep), 4 * threads):
            yield from pool.map(one, keep[start : start + 4 * threads])


def _write(out: Path, raw_dir: Path, entries: list[Entry], opts: dict, threads: int) -> tuple[dict, dict]:
    """Decode every entry into its split's shards; returns (counts, {path: reason} of the bad ones)."""
    labelled = all(e.label is not None for e in entries)
    writers = {s: ShardWriter(out / s) for s in SPLITS}
    paths: dict[str, list[str]] = {s: [] for s in SPLITS}
    bad: dict[str, str] = {}
    for e, clip, reason in tqdm(
        _clips(raw_dir, entries, opts, threads), total=len(entries), desc="decode", unit="clip", mininterval=1.0
    ):
        if reason:
            bad[e.path] = reason
            continue
        writers[e.split].add(clip[None], np.array([e.label]) if labelled else None)
        paths[e.split].append(e.path)
    counts = {}
    for s in SPLITS:
        if writers[s].count == 0:
            if bad:
                return {}, bad
            raise DataError(f"split {s!r}: no decodable videos in {raw_dir}")
        writers[s].close(stats=dict(opts))
        (out / s / PATHS).write_text("".join(f"{p}\n" for p in paths[s]), encoding="utf-8")
        counts[s] = writers[s].count
    return counts, bad


def decode(
    raw_dir: Path,
    out_dir: Path,
    entries: list[Entry],
    opts: dict,
    device: str = "auto",
    on_error: str = "fail",
    threads: int = 2,
) -> dict:
    """Decode `entries` of `raw_dir` into `out_dir`; `opts` = frames, fps, resolution, channels,
    resize_mode (checked by the caller, ul.data.pixels.images.decode). Returns metrics; raises DataError."""
    dev = _device(device)
    start = time.perf_counter()
    with staged_dir(out_dir) as out:
        counts, bad = _write(out, raw_dir, entries, opts, threads)
        if bad and on_error == "fail":
            refuse(bad, raw_dir, "video")
        if not counts:  # a split lost every clip to skipping
            empty = next(s for s in SPLITS if all(e.path in bad for e in entries if e.split == s))
            raise DataError(f"split {empty!r}: no decodable videos left in {raw_dir}")
        seconds = time.perf_counter() - start
        (out / SKIPPED).write_text(
            json.dumps([{"path": p, "reason": r} for p, r in sorted(bad.items())], indent=1) + "\n",
            encoding="utf-8",
        )
    return {
        "clips": counts,
        "frames": opts["frames"],
        "skipped": len(bad),
        "backend": pyav.BACKEND,
        "device": dev,
        "clips_per_s": round(sum(counts.values()) / max(seconds, 1e-9), 1),
    }
