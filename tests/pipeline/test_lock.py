"""The committed reference run's data stages reproduce byte for byte on this machine: a fresh copy
runs fetch → pixels → validate on the default data and must get the hashes in dvc.lock."""

import pytest
import yaml
from project import ROOT, copy_project, sh

pytestmark = pytest.mark.slow


def _outs(lock: dict, stage: str) -> dict:
    return {o["path"]: o["md5"] for o in lock["stages"][stage]["outs"]}


def test_data_stage_hashes_match_the_committed_lock(tmp_path):
    committed = yaml.safe_load((ROOT / "dvc.lock").read_text())
    proj = copy_project(tmp_path)
    sh(["dvc", "repro", "validate"], proj, timeout=1500)
    fresh = yaml.safe_load((proj / "dvc.lock").read_text())
    for stage in ("fetch", "pixels", "validate"):
        assert _outs(fresh, stage) == _outs(committed, stage), stage
        assert fresh["stages"][stage].get("params") == committed["stages"][stage].get("params"), stage
