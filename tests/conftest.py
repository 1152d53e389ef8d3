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
