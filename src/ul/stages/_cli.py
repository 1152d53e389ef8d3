"""What every thin stage entry point shares: `--params`/`--metrics` arguments, the config load,
the metrics file, and turning expected errors into one `error: ...` line and exit status 1."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from ul import atomic
from ul.config import Config, ConfigError, load
from ul.data import DataError
from ul.errors import ExportError, NonFiniteLossError


def parser(stage: str, doc: str) -> argparse.ArgumentParser:
    """The parser of `python -m ul.stages.<stage>`, whose help is the stage's module docstring."""
    p = argparse.ArgumentParser(
        prog=f"python -m ul.stages.{stage}", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--params", default="params.yaml", help="parameter file read through ul.config.load (default: %(default)s)"
    )
    p.add_argument(
        "--metrics", default=f"metrics/{stage}.json", help="where the stage's metrics JSON goes (default: %(default)s)"
    )
    return p


def write_metrics(path: str | Path, metrics: dict) -> None:
    atomic.write_text(path, json.dumps(metrics, indent=1, sort_keys=True) + "\n")


def run(args: argparse.Namespace, body: Callable[[Config], dict]) -> int:
    """Load the config, run `body`, write its metrics; expected failures → stderr + status 1."""
    try:
        metrics = body(load(args.params))
    except (ConfigError, DataError, ExportError, FileNotFoundError, NonFiniteLossError) as err:
        if getattr(err, "metrics", None):  # a failed validation still reports what it measured
            write_metrics(args.metrics, err.metrics)
        print(f"error: {err}", file=sys.stderr)
        return 1
    write_metrics(args.metrics, metrics)
    print(json.dumps(metrics, sort_keys=True))
    return 0


def run_identity(cfg: Config, keys: tuple, data) -> dict:
    """What a training checkpoint must match to be resumed: the stage's params and its data."""
    from ul.config import to_dict

    d = to_dict(cfg)
    return {**{k: d[k] for k in keys}, "data_index": data.index}


def last_row(tsv: str | Path) -> dict:
    """The final logged training metrics, prefixed `final_`."""
    import csv

    with open(tsv) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return {f"final_{k}": float(v) for k, v in rows[-1].items() if k != "step"} if rows else {}


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())
