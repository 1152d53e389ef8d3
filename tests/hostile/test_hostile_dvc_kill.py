"""SIGKILL of a model stage while DVC runs it (issue 9, faults): `dvc repro` afterwards completes it
and gives the bytes of the uninterrupted run — the weights resumed from the last checkpoint
(bit-exact), the latent cache, the evaluation's metrics and grids. One copy of the shared ci run,
one seeded kill moment per stage, stages in pipeline order."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from project import copy_of, env, sh

pytestmark = pytest.mark.slow

# What must come back byte for byte (the exports' config.json also holds wall times, so not it).
OUTPUTS = {
    "train_stage1": ["models/stage1/model.safetensors"],
    "cache_latents": ["data/latents"],
    "train_stage2": ["models/stage2/model.safetensors"],
    "evaluate": ["eval/metrics.json", "eval/samples.png", "eval/reconstructions.png"],
}


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(path.rglob("*")) if path.is_dir() else [path]:
        if f.is_file():
            h.update(str(f.relative_to(path.parent)).encode() + f.read_bytes())
    return h.hexdigest()


def _stage_pid(name: str) -> int | None:
    out = subprocess.run(["pgrep", "-f", f"ul.stages.{name}"], capture_output=True, text=True).stdout.split()
    return int(out[0]) if out else None


@pytest.fixture(scope="module")
def proj(ci_project, tmp_path_factory):
    return copy_of(ci_project, tmp_path_factory, "dvckill")


@pytest.mark.parametrize("stage", list(OUTPUTS))
def test_sigkill_during_a_dvc_stage_then_repro_gives_the_uninterrupted_bytes(proj, stage):
    want = {p: _digest(proj / p) for p in OUTPUTS[stage]}
    for ckpt in (proj / "models").glob("stage*/ckpt.pt"):  # train from scratch, not from the finished run's state
        if stage.startswith("train") and ckpt.parent.name == f"stage{stage[-1]}":
            ckpt.unlink()
    rng = random.Random(f"kill-{stage}")
    run = subprocess.Popen(
        ["dvc", "repro", "--force", "--single-item", stage],
        cwd=proj,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: DVC and the stage under it die together
    )
    deadline = time.monotonic() + 120
    while _stage_pid(stage) is None and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run.poll() is None, f"{stage} finished before it could be killed"
    time.sleep(rng.uniform(1.0, 4.0))  # into the work: checkpoints, shards or sampling under way
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    sh(["dvc", "repro", stage], proj)
    got = {p: _digest(proj / p) for p in OUTPUTS[stage]}
    assert got == want, f"{stage}: the re-run after a kill differs from the uninterrupted run"
    assert (
        sh(["dvc", "status", stage], proj)
        .stdout.strip()
        .endswith(("up to date.", "Data and pipelines are up to date."))
    )
