import os
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ul.config import Config, from_dict

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


def preset_config(preset: str = "ci", **overrides) -> Config:
    """What Hydra composes for `preset=<name>` (conf/config.yaml + conf/preset/<name>.yaml), plus dotlist overrides."""
    raw = OmegaConf.merge(OmegaConf.load(ROOT / "conf/config.yaml"), OmegaConf.load(ROOT / f"conf/preset/{preset}.yaml"))
    del raw["defaults"]
    if overrides:
        raw = OmegaConf.merge(raw, OmegaConf.from_dotlist([f"{k}={v}" for k, v in overrides.items()]))
    return from_dict(raw)


@pytest.fixture
def ci_cfg() -> Config:
    return preset_config("ci")
