"""Hydra composition of conf/ into params.yaml, the same composition `dvc exp run` performs
(DVC's hydra integration: conf/config.yaml with its `preset` group). Stages never run Hydra; they
read the composed params.yaml through `ul.config.load`."""
from __future__ import annotations

from pathlib import Path

import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from ul import atomic
from ul.config import from_dict, to_dict


def compose_params(conf_dir: Path, overrides: list[str] | None = None) -> dict:
    with initialize_config_dir(config_dir=str(Path(conf_dir).resolve()), version_base=None):
        raw = compose(config_name="config", overrides=list(overrides or []))
    cfg = from_dict(OmegaConf.to_container(raw))  # fails here on unknown keys, types, ranges
    return to_dict(cfg)


def write_params(conf_dir: Path, overrides: list[str], out: Path) -> Path:
    data = compose_params(conf_dir, overrides)
    return atomic.write_text(out, yaml.safe_dump(data, sort_keys=False))
