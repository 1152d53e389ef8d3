"""The pixels stage: decode the fetched files into uint8 N×C×H×W shards per split, with NVIDIA DALI.

The files are read from the raw folder's tar shards (ul.data.rawshards: DALI's WebDataset reader,
or their bytes for Pillow and video). Every file is first checked cheaply (ul.data.pixels.imagecheck) so a corrupt or truncated image is named
by path: `on_error="fail"` stops with a DataError listing the bad files, `"skip"` leaves them out
and lists them in `skipped.json`. Devices are `auto | cpu | cuda`, as in every stage: DALI
decodes on the GPU (DALI's `device="mixed"`) for `cuda`, or for `auto` when one is visible, else on
the CPU; Pillow is used only when DALI cannot be imported, and the metrics say which ran.
Output: `out_dir/<split>/` (ul.common.shards, with labels when every image has one and `paths.txt`, the
manifest path of each row), `out_dir/skipped.json`; written all-or-nothing.

With `frames` > 0 (data.frames) the files are videos and ul.data.pixels.video decodes them into
N×C×T×H×W clips instead (PyAV on the CPU), with the same error handling and output layout.
"""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ul.common.atomic import staged_dir
from ul.common.device import cuda_available, resolve_device
from ul.common.shards import ShardWriter
from ul.data import manifest, rawshards
from ul.data.layout import PATHS, SKIPPED, BackendError, DataError, refuse, shown
from ul.data.manifest import SPLITS, Entry
from ul.data.pixels import imagecheck, pil

DROPS = ("duplicates", "blank")  # what pixels.drop may name


def _backend(name: str) -> tuple[str, Callable, str | None]:
    """(name, batches function, why DALI is missing) for "auto" | "dali" | "pillow"."""
    if name != "pillow":
        try:
            return "dali", importlib.import_module("ul.data.pixels.dali").batches, None
        except ImportError as err:
            if name == "dali":
                raise DataError(f"NVIDIA DALI cannot be imported ({err}); pip install nvidia-dali-cuda120") from None
            missing = str(err)
    else:
        missing = None
    return "pillow", pil.batches, missing


def _device(device: str, backend: str) -> str:
    """ "cpu" or "cuda": where this backend decodes for pixels.device `device`."""
    if device == "cpu":
        return "cpu"
    if device == "cuda":
        if backend != "dali":
            raise DataError("pixels.device=cuda needs NVIDIA DALI, which is not available; use auto or cpu")
        if not cuda_available():
            raise DataError(
                "pixels.device=cuda but no CUDA GPU is visible (torch.cuda.is_available() is False); use auto or cpu"
            )
        return "cuda"
    return resolve_device("auto").type if backend == "dali" else "cpu"  # auto: the GPU where DALI can use one


def _check_args(
    resolution: int, channels: int, resize_mode: str, device: str, on_error: str, threads: int, batch_size: int
) -> None:
    for ok, what in (
        (resolution >= 1, f"resolution={resolution} must be >= 1"),
        (channels in (1, 3), f"channels={channels} must be 1 or 3"),
        (resize_mode in ("pad", "resize"), f"resize_mode={resize_mode!r} must be pad or resize"),
        (device in ("auto", "cpu", "cuda"), f"device={device!r} must be auto, cpu or cuda"),
        (on_error in ("fail", "skip"), f"on_error={on_error!r} must be fail or skip"),
        (threads >= 1 and batch_size >= 1, f"threads={threads}, batch_size={batch_size} must be >= 1"),
    ):
        if not ok:
            raise DataError(what)


def blank(batch: np.ndarray) -> np.ndarray:
    """Per decoded image (uint8 N×C×H×W): True where it is blank or saturated, as the validate stage
    judges it (ul.data.validate.suites.pixel_expectations): no variation, or a mean outside [1, 254]."""
    flat = batch.reshape(len(batch), -1).astype(np.float64)
    mean = flat.mean(1)
    return (flat.std(1) <= 0) | (mean < 1) | (mean > 254)


def _duplicates(entries: list[Entry]) -> dict[str, str]:
    """{path: reason} for every file whose bytes an earlier one of the manifest (its order) holds."""
    first: dict[str, str] = {}
    out = {}
    for e in entries:
        if e.sha256 in first:
            out[e.path] = f"an exact duplicate of {first[e.sha256]}"
        else:
            first[e.sha256] = e.path
    return out


def _write(
    out: Path, raw_dir: Path, keep: list[Entry], batches: Callable, opts: dict, drop_blank: bool = False
) -> tuple[dict[str, int], dict[str, str]]:
    """Decode `keep` (manifest order) into one shard folder per split; returns counts and, with
    `drop_blank`, {path: reason} of the blank images left out."""
    labelled = all(e.label is not None for e in keep)
    writers = {s: ShardWriter(out / s) for s in SPLITS}
    files = rawshards.Selection(rawshards.Shards(raw_dir), keep)
    split_of = np.array([e.split for e in keep])
    labels = np.array([e.label if labelled else -1 for e in keep], dtype=np.int64)
    pos = 0
    with tqdm(total=len(files), desc="decode", unit="img", mininterval=1.0) as bar:
        blanks: dict[str, str] = {}
        for batch in batches(files, **opts):
            rows = slice(pos, pos + len(batch))
            kept = ~blank(batch) if drop_blank else np.ones(len(batch), bool)
            blanks.update({keep[pos + i].path: "blank or saturated" for i in np.flatnonzero(~kept)})
            for s in SPLITS:
                m = (split_of[rows] == s) & kept
                if m.any():
                    writers[s].add(batch[m], labels[rows][m] if labelled else None)
            pos += len(batch)
            bar.update(len(batch))
    counts = {}
    for s in SPLITS:
        if writers[s].count == 0:
            raise DataError(f"split {s!r}: no decodable images left in {raw_dir}")
        writers[s].close(stats={k: opts[k] for k in ("resolution", "channels", "resize_mode")})
        paths = "".join(f"{e.path}\n" for e in keep if e.split == s and e.path not in blanks)
        (out / s / PATHS).write_text(paths, encoding="utf-8")
        counts[s] = writers[s].count
    return counts, blanks


def decode(
    raw_dir: Path,
    out_dir: Path,
    resolution: int,
    channels: int,
    resize_mode: str = "pad",
    device: str = "auto",
    on_error: str = "fail",
    threads: int = 2,
    batch_size: int = 256,
    backend: str = "auto",
    frames: int = 0,
    fps: float = 0.0,
    drop: tuple[str, ...] = (),
    background: str = "refuse",
) -> dict:
    """Decode the manifest of `raw_dir` into `out_dir`; returns metrics. Raises DataError.

    `drop` (pixels.drop) leaves out, on request, what validate would refuse but a user wants gone
    rather than fixed: "duplicates" (files whose bytes an earlier file holds; the first is kept) and
    "blank" (images that decode to no variation or a mean outside [1, 254]). Each is listed in
    `skipped.json` with its reason and `"drop"`, and counted in the metrics.

    `backend` ("auto" | "dali" | "pillow") exists for tests and benchmarks; "auto" = DALI if importable.
    `frames` > 0: the files are videos, decoded to clips of `frames` frames at `fps` (0 = native).
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    _check_args(resolution, channels, resize_mode, device, on_error, threads, batch_size)
    if frames < 0 or not 0 <= fps < float("inf"):
        raise DataError(f"frames={frames}, fps={fps}: frames must be >= 0 and fps a finite number >= 0")
    entries = manifest.read(raw_dir)
    if not entries:
        raise DataError(f"{raw_dir / manifest.MANIFEST}: no images listed")
    if frames > 0:
        from ul.data.pixels import video

        opts = dict(frames=frames, fps=fps, resolution=resolution, channels=channels, resize_mode=resize_mode)
        return video.decode(raw_dir, out_dir, entries, opts, device, on_error, threads)
    name, batches, dali_missing = _backend(backend)
    dev = _device(device, name)
    if unknown := set(drop) - set(DROPS):
        raise DataError(f"pixels.drop={list(drop)}: unknown {sorted(unknown)}; choose from {list(DROPS)}")
    shards = rawshards.Shards(raw_dir)
    dropped = {p: ("duplicates", r) for p, r in _duplicates(entries).items()} if "duplicates" in drop else {}
    skipped, largest, pillow_only = {}, 1, []
    for e in tqdm([e for e in entries if e.path not in dropped], desc="check", unit="img", mininterval=1.0):
        data = shards.read(e)
        reason, pixels = imagecheck.check(data, resolution, background)
        if reason:
            skipped[e.path] = reason
        else:
            largest = max(largest, pixels)
            if name == "dali" and not imagecheck.dali_reads(data):
                pillow_only.append(e.path)
    if skipped and on_error == "fail":
        refuse(skipped, raw_dir)
    if pillow_only:  # WebP, BMP, TIFF, GIF, CMYK JPEG or alpha to flatten: one decoder for the whole set
        if backend == "dali":
            raise DataError(
                f"{len(pillow_only)} file(s) DALI is not given here, e.g. {shown(pillow_only[0])}; use auto"
            )
        name, batches = "pillow", pil.batches
        dev = "cpu"
    opts = dict(
        resolution=resolution,
        channels=channels,
        resize_mode=resize_mode,
        threads=threads,
        batch_size=min(batch_size, max(1, imagecheck.BATCH_BYTES // (4 * largest))),  # memory, not output
        device=dev,
        **({"background": background} if name == "pillow" else {}),
    )
    start = time.perf_counter()
    with staged_dir(out_dir) as out:
        while True:
            keep = [e for e in entries if e.path not in skipped and e.path not in dropped]
            try:
                counts, blanks = _write(out, raw_dir, keep, batches, opts, "blank" in drop)
                dropped.update({p: ("blank", r) for p, r in blanks.items()})
                break
            except BackendError as err:  # passed the quick check, still undecodable: find it, then retry
                late = {e.path: r for e in keep[err.first :] if (r := imagecheck.full(shards.read(e)))}
                if not late:
                    raise DataError(f"decoding {raw_dir} failed and no single file could be blamed: {err}") from None
                if on_error == "fail":
                    refuse(late, raw_dir)
                skipped.update(late)
        seconds = time.perf_counter() - start
        listed = [{"path": p, "reason": r} for p, r in skipped.items()]
        listed += [{"path": p, "reason": r, "drop": kind} for p, (kind, r) in dropped.items()]
        (out / SKIPPED).write_text(
            json.dumps(sorted(listed, key=lambda x: x["path"]), indent=1) + "\n", encoding="utf-8"
        )
    metrics = {
        "images": counts,
        "skipped": len(skipped),
        "backend": name,
        "device": dev,
        "images_per_s": round(sum(counts.values()) / max(seconds, 1e-9), 1),
    }
    if drop:  # only on request, so that the default run's metrics stay as they were
        metrics["dropped"] = {kind: sum(k == kind for k, _ in dropped.values()) for kind in drop}
        metrics["dropped_files"] = [{"path": p, "reason": r, "drop": k} for p, (k, r) in sorted(dropped.items())]
    if dali_missing:
        metrics["dali_import_error"] = dali_missing
    if pillow_only:
        metrics["pillow_because"] = (
            f"{len(pillow_only)} file(s) DALI is not given (WebP, BMP, TIFF, GIF, CMYK or alpha to flatten)"
        )
    return metrics
