"""One checkpoint dict per run, written atomically and loaded safely.

The dict holds model, EMA, optimizer, step, RNG states and the config, so a run killed at any
moment resumes from the last complete file: it is written atomically (`ul.common.atomic`), so a reader
sees either the old checkpoint or the new one, never half of one; a failed write (a full disk) leaves
the previous file and says so. Loading uses `weights_only=True`: a checkpoint file cannot run code,
and a file that is not a checkpoint is a CheckpointError naming it and the remedy (never torch's
advice to load it with `weights_only=False`).
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import torch

from ul.common import atomic


class CheckpointError(ValueError):
    """A checkpoint file is corrupt, truncated or holds more than tensors; names it and the remedy."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (a full disk, a read-only folder); the previous one is kept."""


def save_atomic(obj, path: str | Path) -> Path:
    """Write `obj` to `path` atomically; on failure the previous file is untouched and the error says so."""
    path = Path(path)
    try:
        with atomic.replacing(path) as tmp:
            torch.save(obj, tmp)
    except (OSError, RuntimeError) as err:  # torch wraps a failed write in a RuntimeError ("unexpected pos ...")
        code = getattr(err, "errno", None) or errno.EIO
        need = path.stat().st_size if path.exists() else 1 << 20  # the last checkpoint's size (1 MiB if none)
        if code == errno.ENOSPC or atomic.no_room(path.parent, need):
            what, code = "the disk is full", errno.ENOSPC
        else:
            what = getattr(err, "strerror", None) or str(err).splitlines()[0]
        raise CheckpointWriteError(
            code,
            f"{path}: checkpoint not written ({what}); "
            + ("the previous checkpoint is kept" if path.exists() else "there is no earlier checkpoint"),
        ) from None
    return path


def load(path: str | Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint not found (did the training stage run?)")
    try:
        ck = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # a corrupt file must name itself, not surface as an unpickling trace
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "weights_only" in str(err) or "Weights only" in str(err):  # never pass on torch's advice
            reason = "it holds objects other than tensors, which are never unpickled"
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({reason}); delete it or move it aside to train from scratch"
        ) from None
    if not isinstance(ck, dict):
        raise CheckpointError(f"{path}: not a checkpoint dict; delete it or move it aside to train from scratch")
    return ck


def move_aside(path: str | Path) -> Path:
    """Rename an unusable checkpoint to `<name>.corrupt-<UTC time>` beside it (kept for a post-mortem)."""
    path = Path(path)
    dest = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
    os.replace(path, dest)
    return dest
