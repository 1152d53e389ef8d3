"""One checkpoint dict per run, written atomically and loaded safely.

The dict holds model, EMA, optimizer, step, RNG states and the config, so a run killed at any
moment resumes from the last complete file: it is written atomically (`ul.atomic`), so a reader
sees either the old checkpoint or the new one, never half of one. Loading uses `weights_only=True`: a checkpoint
file cannot run code.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ul import atomic


def save_atomic(obj, path: str | Path) -> Path:
    with atomic.replacing(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def load(path: str | Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint not found (did the training stage run?)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # a corrupt file must name itself, not surface as an unpickling trace
        raise ValueError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})".splitlines()[0]) from err
