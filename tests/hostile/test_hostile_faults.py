"""Faults (issue 9): a killed run never wedges the next (class 10), and SIGKILL at seeded moments
of the data stages: re-running completes and gives the bytes of an uninterrupted run. (Training
stages: tests/unit/test_train.py kills a run and resumes it bit-exactly; a full disk during a
checkpoint write: tests/hostile/test_hostile_models.py.)"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from datahelpers import class_folder, tree_hashes

from ul.common import atomic
from ul.data.fetch.sources import fetch

ROOT = Path(__file__).resolve().parents[2]


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# ---- class 10: leftovers of a killed run are cleaned by the next, also under the same pid ----------


def test_leftovers_of_a_killed_fetch_are_removed_by_the_next_run(tmp_path):
    src = class_folder(tmp_path / "src", per_class=3)
    out = tmp_path / "data" / "raw"
    fetch(f"file://{src}", out)
    first = tree_hashes(out)
    me, dead, alive = os.getpid(), _dead_pid(), os.getppid()
    leftovers = {
        f".raw.tmp-{me}-abc": "same pid (a container restarted)",
        f".raw.old-{me}": "the old folder of a run killed mid-swap",
        f".raw.download-{dead}-xyz": "a download of a run that is gone",
    }
    for name in leftovers:
        (out.parent / name).mkdir()
        (out.parent / name / "junk.png").write_bytes(b"half")
    (out.parent / f".raw.tmp-{alive}-live").mkdir()  # another live process's: not ours to remove
    fetch(f"file://{src}", out)
    assert tree_hashes(out) == first
    assert sorted(p.name for p in out.parent.iterdir()) == [f".raw.tmp-{alive}-live", "raw"]


def test_a_half_written_checkpoint_temp_file_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "ckpt.pt"
    stale = tmp_path / f".ckpt.pt.tmp-{os.getpid()}-k1ll3d.tmp"
    stale.write_bytes(b"\0" * 1000)
    atomic.write_bytes(target, b"new")
    assert target.read_bytes() == b"new" and not stale.exists()


# ---- SIGKILL at seeded moments of fetch and pixels----------------------------------------------


def _stage(name: str, cwd: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", f"ul.stages.{name}"],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _finish(name: str, cwd: Path) -> float:
    t0 = time.perf_counter()
    assert _stage(name, cwd).wait(timeout=300) == 0
    return time.perf_counter() - t0


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A folder source of 240 images and params for it (the ci preset at 32×32 grey)."""
    from ul.params import compose_params

    root = tmp_path_factory.mktemp("faults")
    src = class_folder(root / "src", per_class=120)
    params = compose_params(ROOT / "conf", ["preset=ci", f"data.source=file://{src}", "data.max_train=0"])
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


@pytest.mark.slow
@pytest.mark.parametrize("stage, output", [("fetch", "data/raw"), ("pixels", "data/pixels")])
def test_sigkill_at_seeded_moments_then_rerun_gives_the_uninterrupted_bytes(tmp_path, project, stage, output):
    import shutil

    ref = tmp_path / "ref"
    shutil.copytree(project, ref, ignore=shutil.ignore_patterns("src"))
    if stage == "pixels":
        _finish("fetch", ref)
    took = _finish(stage, ref)
    want = tree_hashes(ref / output)
    rng = random.Random(f"{stage}-9")
    for k in range(5):
        run = tmp_path / f"run{k}"
        shutil.copytree(ref, run, ignore=shutil.ignore_patterns(Path(output).name))
        if k % 2:  # an earlier, different output exists: a reader sees it or the new one, never half
            shutil.copytree(ref / output, run / output)
            (run / output / "stale.txt").write_text("previous run")
        before = tree_hashes(run / output) if (run / output).exists() else None
        proc = _stage(stage, run)
        time.sleep(rng.uniform(0.05, took))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        now = tree_hashes(run / output) if (run / output).exists() else None
        assert now in (before, want), f"moment {k}: a half-written {output}"
        _finish(stage, run)
        assert tree_hashes(run / output) == want, f"moment {k}: the re-run differs"
        assert [p.name for p in (run / output).parent.iterdir() if p.name.startswith(".")] == []
