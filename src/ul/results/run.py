"""Run the studies' DVC experiments that do not exist yet, one at a time, in the workspace."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from ul.common.device import resolve_device
from ul.results import studies
from ul.train import precision

DVC = (sys.executable, "-m", "dvc")


def native_bf16() -> bool:
    """Whether the stages' device (`auto`) computes bf16 natively here."""
    return precision.name("auto", resolve_device("auto")) == "bf16"


def existing(repo: Path) -> set[str]:
    """Names of the experiments DVC has for any commit."""
    out = subprocess.run(
        [*DVC, "exp", "list", "--all-commits", "--name-only"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout
    return {line.strip() for line in out.splitlines() if line.strip()}


def run(
    repo: Path,
    study: str | None = None,
    force: bool = False,
    preset: str | None = None,
    log=print,
    names: list[str] | None = None,
) -> dict[str, str]:
    """Run the missing points of `study` and the `names`d ones (all when neither is given);
    returns each point not done with the reason, for the one error line."""
    done = set() if force else existing(repo)
    not_done: dict[str, str] = {}
    for point in studies.points(study, names):
        if point.name in done:
            log(f"{point.name}: exists, skipped (--force to run again)")
            continue
        if point.bf16 and preset is None and not native_bf16():  # emulated bf16 is slower than fp32
            log(f"{point.name}: not run: its study trains in bf16, which this machine does not compute natively")
            not_done[point.name] = "not run: no native bf16 here"
            continue
        cmd = [*DVC, *studies.command(point, preset), *(["--force"] if force else [])]
        log(f"{point.name}: dvc {' '.join(cmd[3:])}")
        t0 = time.time()
        rc = subprocess.run(cmd, cwd=repo).returncode
        if rc == 0 and point.then:  # on the outputs the experiment left in the workspace
            log(f"{point.name}: ul results {' '.join(point.then)}")
            rc = subprocess.run([sys.executable, "-m", "ul.cli", "results", *point.then], cwd=repo).returncode
        why = f"failed (exit {rc})" if rc else ""
        log(f"{point.name}: {why or 'done'} in {(time.time() - t0) / 60:.1f} min")
        if why:
            not_done[point.name] = why
    return not_done
