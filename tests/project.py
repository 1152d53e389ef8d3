"""A throw-away copy of this project (the working tree's tracked and untracked, not ignored, files)
as a fresh git + DVC repository, for tests that run real `dvc` commands."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# On top of preset=ci: shorter training and FID on 16 samples, for tests of which stages run and of
# the mechanics, not of the numbers (each model stage several times cheaper).
CHEAP = (
    "stage1.steps=10",
    "stage2.steps=10",
    "sample.decoder_steps=2",
    "sample.base_steps=2",
    "eval.num_images=16",
    "eval.fid_num_samples=16",
    "eval.batch_size=16",
)
ALL = {
    "source",
    "fetch",
    "pixels",
    "validate",
    "train_stage1",
    "cache_latents",
    "train_stage2",
    "i3d_weights",
    "evaluate",
}


def env(**extra) -> dict:
    e = dict(
        os.environ,
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        DVC_NO_ANALYTICS="1",
        GX_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.com",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.com",
    )
    e.update(extra)
    return e


def sh(args, cwd, check=True, timeout=900, **extra_env) -> subprocess.CompletedProcess:
    r = subprocess.run(args, cwd=cwd, env=env(**extra_env), capture_output=True, text=True, timeout=timeout)
    if check and r.returncode:
        raise AssertionError(
            f"{' '.join(map(str, args))} failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
        )
    return r


def copy_project(dest: Path) -> Path:
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for rel in files:
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    sh(["git", "init", "-q", "-b", "main"], dest)
    sh(["git", "add", "-A"], dest)
    sh(["git", "commit", "-qm", "copy"], dest)
    return dest


def copy_of(proj: Path, tmp_path_factory, name: str = "proj") -> Path:
    """A private copy of a finished project run (links kept as links), for a test that changes it."""
    dest = tmp_path_factory.mktemp(name) / "proj"
    shutil.copytree(proj, dest, symlinks=True)
    return dest


# Stages that look at something outside the repository on every repro (dvc.yaml: always_changed):
# `dvc status` lists them as "always changed" and `dvc repro` runs them, by design.
ALWAYS = {"source"}


def pending(repo: Path) -> dict:
    """What `dvc status` lists, but for the always-changed stages: {} when the pipeline is up to date."""
    import json

    out = json.loads(sh(["dvc", "status", "--json"], repo).stdout or "{}")
    return {k: v for k, v in out.items() if not (k in ALWAYS and v == ["always changed"])}


def ran_stages(output: str) -> set[str]:
    """Stages DVC actually executed, from its log ('Running stage ...')."""
    import re

    return set(re.findall(r"Running stage '([^']+)'", output))
