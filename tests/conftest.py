import os
from pathlib import Path

import pytest

from ul import conf
from ul.config import Config

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


def preset_config(preset: str = "ci", **overrides) -> Config:
    """This project's `preset=<name>` (ul.conf.preset_config), plus `key=value` overrides."""
    return conf.preset_config(ROOT / "conf", preset, [f"{k}={v}" for k, v in overrides.items()])


@pytest.fixture
def ci_cfg() -> Config:
    return preset_config("ci")


@pytest.fixture(scope="session")
def ci_project(tmp_path_factory):
    """The ci preset run once by `dvc exp run -S preset=ci` (all 8 stages) in a throw-away copy of
    the project; shared by the pipeline and command tests (the command tests only read it)."""
    from project import ALL, copy_project, ran_stages, sh

    if os.environ.get("UL_TEST_CI_PROJECT"):  # a developer's shortcut: reuse a finished ci run
        return Path(os.environ["UL_TEST_CI_PROJECT"])
    proj = copy_project(tmp_path_factory.mktemp("proj"))
    r = sh(["dvc", "exp", "run", "-S", "preset=ci"], proj)
    assert ran_stages(r.stdout + r.stderr) == ALL, r.stdout[-3000:]
    return proj
