"""Run the suites with Great Expectations in a throw-away File context (only a File context renders
HTML Data Docs), and say in words what failed."""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from ul.data.validate.docs import RUN_SUFFIX, offline_docs, stable

EXAMPLES = 5


INDEX_COLUMN = {"manifest": "path", "counts": "split", "images": "path", "clips": "path"}


def run_suites(
    tables: dict[str, pd.DataFrame],
    expectations: dict[str, list],
    docs_dir: Path,
    sidecar_name: str = "validation" + RUN_SUFFIX,
) -> dict:
    """Run one checkpoint per table in a temporary File context; copy the Data Docs to `docs_dir`,
    byte-stable and with their web assets vendored (see offline_docs)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import ProgressBarsConfig

    run_id = RunIdentifier(run_name="ul-validate", run_time=datetime(2000, 1, 1, tzinfo=UTC))

    results = {}
    with tempfile.TemporaryDirectory(prefix="ul-gx-") as root:
        ctx = gx.get_context(mode="file", project_root_dir=root)
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
        source = ctx.data_sources.add_pandas("data")
        for name, df in tables.items():
            batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all")
            suite = ctx.suites.add(gx.ExpectationSuite(name=name, expectations=expectations[name]))
            vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
            checkpoint = ctx.checkpoints.add(
                gx.Checkpoint(
                    name=name,
                    validation_definitions=[vd],
                    result_format={
                        "result_format": "SUMMARY",
                        "partial_unexpected_count": 20,
                        "unexpected_index_column_names": [INDEX_COLUMN[name]],
                    },
                )
            )
            run = checkpoint.run(batch_parameters={"dataframe": df}, run_id=run_id)
            (results[name],) = run.run_results.values()
        ctx.build_data_docs()
        site = Path(root) / "gx" / "uncommitted" / "data_docs" / "local_site"
        shutil.copytree(site, docs_dir)
    for html in docs_dir.rglob("*.html"):
        html.write_text(stable(html.read_text(encoding="utf-8")), encoding="utf-8")
    offline_docs(docs_dir, sidecar_name)
    return results


def _plain(value):
    """numpy scalars → Python values, so messages read `0.0`, not `np.float64(0.0)`."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + " ...]"


def describe(table: str, r) -> str:
    cfg = r.expectation_config
    kwargs = ", ".join(f"{k}={_short(v)}" for k, v in cfg.kwargs.items() if k != "batch_id")
    res, exc = r.result or {}, r.exception_info or {}
    if exc.get("raised_exception"):
        detail = f"raised {exc.get('exception_message')}"
    elif "unexpected_count" in res:
        rows = res.get("partial_unexpected_index_list") or res.get("partial_unexpected_list") or []
        detail = f"{res['unexpected_count']} of {res.get('element_count')} rows fail, e.g. {_plain(rows[:EXAMPLES])}"
    else:
        detail = f"observed {res.get('observed_value')!r}"
    return f"{table}: {cfg.type}({kwargs}): {detail}"


def fixes(results: dict, resize_mode: str) -> list[str]:
    """What a user can set to get past the failed expectations, where an option does it: drop what
    should be dropped rather than fixed (pixels.drop), rescale what pad mode would crop."""
    failed = {
        (r.expectation_config.type, r.expectation_config.kwargs.get("column"))
        for vr in results.values()
        for r in vr.results
        if not r.success
    }
    out = []
    if ("expect_column_values_to_be_unique", "sha256") in failed:
        out.append("exact duplicate files: set pixels.drop=[duplicates] to keep the first of each")
    if any(t == "expect_column_values_to_be_between" and c in ("std", "mean") for t, c in failed):
        out.append(
            "blank or saturated images: set pixels.drop=[blank] to leave them out (both: pixels.drop=[duplicates,blank])"
        )
    if resize_mode == "pad" and any(c in ("width", "height") for _, c in failed):
        out.append(
            "images larger than data.resolution: set data.resize_mode=resize to scale them (pad only pads or crops)"
        )
    return out
