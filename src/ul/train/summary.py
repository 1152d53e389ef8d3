"""What a training stage reports and resumes by: the run's identity (its params and data, which
a checkpoint must match), the summary of its training curve, and parameter counts."""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

from ul.common.config import Config, TrainConfig, to_dict
from ul.common.device import resolve_device
from ul.train import precision


def run_identity(cfg: Config, keys: tuple, data) -> dict:
    """What a training checkpoint must match to be resumed: the stage's params and its data."""
    d = to_dict(cfg)
    for stage in ("stage1", "stage2"):  # how many processes run it is not what it computes
        d[stage].pop("launch")
    return {**{k: d[k] for k in keys}, "data_index": data.index}


def training_summary(cfg: TrainConfig, t0: float, tsv: str | Path) -> dict:
    """What both training stages report: steps, wall time, the precision the forward pass ran in
    (`precision: auto` resolved on this machine), how many processes trained (torchrun's world
    size) and the last logged training metrics."""
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    return {
        "steps": cfg.steps,
        "wall_s": round(time.time() - t0, 1),
        "precision": precision.name(cfg.precision, resolve_device(cfg.device)),
        "processes": processes,
        **last_row(tsv),
    }


def last_row(tsv: str | Path) -> dict:
    """The final logged training metrics, prefixed `final_`."""
    with open(tsv) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return {f"final_{k}": float(v) for k, v in rows[-1].items() if k != "step"} if rows else {}


def count(module) -> int:
    """The number of parameters of a module."""
    return sum(p.numel() for p in module.parameters())
