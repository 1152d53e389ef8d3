"""The rows of docs/results/results.json carry their own metrics: an experiment stopped before
`evaluate` commits the eval/metrics.json it started from, which describes another model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ul.results import report, studies

ROOT = Path(__file__).resolve().parents[2]


def _lock(stage1_out: str, evaluated: str) -> dict:
    return {
        "stages": {
            "train_stage1": {"outs": [{"path": "models/stage1", "md5": stage1_out}]},
            "evaluate": {"deps": [{"path": "models/stage1", "md5": evaluated}, {"path": "src/ul/eval", "md5": "x"}]},
        }
    }


def test_metrics_are_kept_only_when_evaluate_read_this_commits_model():
    metrics = {"gfid": 54.5}
    assert report.own_metrics(metrics, _lock("a.dir", "a.dir")) == metrics
    assert report.own_metrics(metrics, _lock("b.dir", "a.dir")) == {}  # trained anew, never evaluated
    assert report.own_metrics(metrics, {"stages": {}}) == {}  # no evaluate in the lock at all


@pytest.mark.parametrize("name, row", sorted(json.loads((ROOT / "docs/results/results.json").read_text()).items()))
def test_every_committed_row_carries_its_own_metrics(name, row):
    point = {p.name: p for p in studies.POINTS}.get(name)
    if point is not None and point.stop_at not in (None, "evaluate"):
        assert row["metrics"] == {}, f"{name} stops at {point.stop_at}: its metrics are another model's"
    m, p = row["metrics"], row["params"]
    for key in ("fid_num_samples", "num_images"):
        if key in m and f"eval.{key}" in p:
            assert m[key] == min(p[f"eval.{key}"], m.get("num_images", m[key])), (name, key)
