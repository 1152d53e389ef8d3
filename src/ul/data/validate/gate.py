"""`validate`: a Great Expectations suite over the manifest, the split counts and the decoded pixels.

Three tables, one suite each:
- manifest: one row per fetched file, plus the sha256 of the file on disk now;
- counts: per split, manifest rows, skipped files and decoded rows;
- images: one row per decoded image with its shape, dtype and pixel statistics (a blank or
  saturated image has std 0 or a mean outside [1, 254]); for video (data.frames > 0) `clips`
  instead, one row per decoded clip (ul.data.validate.video: frame count, stills, duplicates),
  and the manifest's width and height come from each video's header.
GX runs offline (GX_ANALYTICS_ENABLED=false) in a throw-away File context, because only a File
context renders HTML Data Docs; the docs and the JSON results are copied to `out_dir` and written
even when an expectation fails, and only then is ValidationError raised, naming every failed
expectation with a few failing rows."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from ul.common.atomic import staged_dir
from ul.data import manifest
from ul.data.layout import DataError
from ul.data.validate.docs import RUN_SUFFIX, stable
from ul.data.validate.gx import describe, fixes, run_suites
from ul.data.validate.suites import suites
from ul.data.validate.tables import counts_table, image_table, manifest_table, skipped_paths


class ValidationError(DataError):
    """One or more expectations failed; `metrics` and the written results say which."""

    def __init__(self, message: str, metrics: dict):
        super().__init__(message)
        self.metrics = metrics


def _record_run_time(sidecar: Path, started: datetime, out_dir: Path, metrics: dict) -> None:
    """The real validation time, which the byte-stable output cannot hold: printed to stderr and
    written to `sidecar` (beside the output folder: not a DVC output, so not hashed)."""
    when = started.isoformat(timespec="seconds")
    sidecar.write_text(
        json.dumps(
            {
                "validated_at": when,
                "success": metrics["success"],
                "failed": metrics["failed"],
                "docs": (out_dir / "docs" / "index.html").as_posix(),
                "note": "The Data Docs and result.json show the fixed run time 2000-01-01T00:00:00Z so that they are "
                "byte-for-byte reproducible (the same DVC hash on every machine); this file keeps the real time "
                "of the last validation here and is not part of the stage's output.",
            },
            indent=1,
        )
        + "\n",
        encoding="utf-8",
    )
    print(
        f"validate: validated at {when} (the Data Docs show the fixed 2000-01-01 run time; real time in {sidecar})",
        file=sys.stderr,
    )


def _tables(
    raw_dir: Path, decoded_dir: Path, resolution: int, channels: int, resize_mode: str, frames: int
) -> tuple[dict[str, pd.DataFrame], dict[str, list]]:
    """The tables and their expectations: images, or with `frames` > 0 video clips."""
    expectations = suites(len(manifest.read_classes(raw_dir)), resolution, channels, resize_mode)
    skipped = set(skipped_paths(decoded_dir))
    if frames <= 0:
        raw = manifest_table(raw_dir, skipped)
        raw = raw[~raw["path"].isin(skipped_paths(decoded_dir, "duplicates"))].reset_index(
            drop=True
        )  # same bytes as a kept file
        tables = {"manifest": raw, "counts": counts_table(raw, decoded_dir), "images": image_table(decoded_dir)}
        return tables, expectations
    from ul.data.pixels import pyav
    from ul.data.validate import video

    raw = manifest_table(raw_dir, skipped, pyav.probe)
    tables = {
        "manifest": raw,
        "counts": counts_table(raw, decoded_dir),
        "clips": video.clip_table(decoded_dir),
    }
    expectations.pop("images")
    expectations["clips"] = video.clip_expectations(resolution, channels, frames)
    return tables, expectations


def validate(
    raw_dir: Path,
    decoded_dir: Path,
    out_dir: Path,
    resolution: int,
    channels: int,
    resize_mode: str = "pad",
    frames: int = 0,
) -> dict:
    """Validate fetched + decoded data; write `out_dir/result.json` and `out_dir/docs/`.
    `frames` > 0 (data.frames): the data are video clips of that many frames.

    Returns metrics; raises ValidationError (after writing) naming each failed expectation.
    """
    started = datetime.now(UTC)
    raw_dir, decoded_dir, out_dir = Path(raw_dir), Path(decoded_dir), Path(out_dir)
    sidecar = out_dir.parent / (out_dir.name + RUN_SUFFIX)
    tables, expectations = _tables(raw_dir, decoded_dir, resolution, channels, resize_mode, frames)
    with staged_dir(out_dir) as out:
        results = run_suites(tables, expectations, out / "docs", sidecar.name)
        doc = {
            "success": all(r.success for r in results.values()),
            "suites": {name: r.to_json_dict() for name, r in results.items()},
        }
        (out / "result.json").write_text(stable(json.dumps(doc, indent=1, default=str)) + "\n", encoding="utf-8")
    failures: list[str] = [describe(name, r) for name, vr in results.items() for r in vr.results if not r.success]
    metrics = {
        "success": not failures,
        "expectations": sum(len(v) for v in expectations.values()),
        "failed": len(failures),
        **({"clips": len(tables["clips"])} if frames > 0 else {"images": len(tables["images"])}),
        "rows": {name: len(df) for name, df in tables.items()},
    }
    _record_run_time(sidecar, started, out_dir, metrics)
    if failures:
        raise ValidationError(
            f"{len(failures)} expectation(s) failed (details in {Path(out_dir) / 'result.json'}, "
            f"{Path(out_dir) / 'docs' / 'index.html'}):\n  "
            + "\n  ".join(failures)
            + "".join(f"\n  fix: {fix}" for fix in fixes(results, resize_mode)),
            metrics,
        )
    return metrics
