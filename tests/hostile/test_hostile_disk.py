"""A real full disk (issue 9): a size-limited tmpfs is mounted for each test (root only; elsewhere
the tests skip, saying why). Fetch, pixels and a checkpoint write that run out of space fail with
one `error:` line, leave no half-written output or temporary file, and keep what was there."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from datahelpers import class_folder, tree_hashes

from ul.params import compose_params
from ul.stages import fetch as fetch_stage
from ul.stages import pixels as pixels_stage
from ul.train.checkpoint import CheckpointWriteError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def disk(tmp_path):
    """mount(kib) -> a fresh tmpfs of that size at tmp_path/disk; unmounted after the test."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    mounted = []

    def mount(kib: int) -> Path:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(mnt)], capture_output=True)
        if r.returncode:
            pytest.skip(f"cannot mount a size-limited tmpfs here ({r.stderr.decode().strip()}); needs root")
        mounted.append(mnt)
        return mnt

    yield mount
    for m in mounted:
        subprocess.run(["umount", "-l", str(m)], check=False)


@pytest.fixture
def project(tmp_path):
    src = class_folder(tmp_path / "src", per_class=150)  # 300 images, about 450 KB
    params = compose_params(ROOT / "conf", ["preset=ci", f"data.source=file://{src}", "data.max_train=0"])
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def _one_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("error: ") and "Traceback" not in err, err
    return lines[-1]


def _leftovers(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_fetch_onto_a_full_disk_is_one_error_and_keeps_the_previous_output(tmp_path, disk, project, capsys):
    metrics = str(tmp_path / "fetch.json")
    full = disk(96)  # holds a previous small output, not a new one
    previous = full / "raw"
    previous.mkdir()
    (previous / "manifest.csv").write_text("path,split,label,sha256,bytes\n")
    before = tree_hashes(previous)
    assert fetch_stage.main(["--params", str(project), "--metrics", metrics, "--out", str(previous)]) == 1
    line = _one_error(capsys)
    assert "No space left on device" in line or "disk is full" in line, line
    assert tree_hashes(previous) == before and _leftovers(full) == []


def test_pixels_onto_a_full_disk_is_one_error_and_leaves_nothing(tmp_path, disk, project, capsys):
    raw = tmp_path / "raw"
    assert fetch_stage.main(["--params", str(project), "--metrics", str(tmp_path / "f.json"), "--out", str(raw)]) == 0
    full = disk(64)  # 300 images of 32×32 decode to about 300 KB
    args = ["--params", str(project), "--metrics", str(tmp_path / "d.json"), "--raw", str(raw)]
    assert pixels_stage.main([*args, "--out", str(full / "decoded")]) == 1
    line = _one_error(capsys)
    assert "No space left on device" in line or "disk is full" in line, line
    assert list(full.iterdir()) == []


def test_a_checkpoint_write_on_a_full_disk_keeps_the_previous_one(tmp_path, disk):
    from test_hostile_models import _tiny, _train

    cfg = _tiny()
    cfg.stage1.steps = 3
    _train(cfg, tmp_path / "measure")  # how big is a checkpoint of this model?
    size = (tmp_path / "measure" / "ckpt.pt").stat().st_size
    out = disk(max(64, (size * 3 // 2) // 1024)) / "run"  # room for one checkpoint, not for its replacement beside it
    with pytest.raises(CheckpointWriteError, match="the disk is full.*previous checkpoint is kept"):
        _train(cfg, out)
    kept = torch.load(out / "ckpt.pt", weights_only=True)
    assert kept["step"] == 1 and _leftovers(out) == []
