"""Hydra composition of conf/ into params.yaml, the same composition `dvc exp run` performs
(DVC's hydra integration: conf/config.yaml with its `preset` group). Stages never run Hydra; they
read the composed params.yaml through `ul.common.config.load`. Tests and benchmarks get a preset's
typed config from `preset_config`, the same composition."""

from __future__ import annotations

from pathlib import Path

import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from ul.common import atomic, bounded
from ul.common.config import Config, ConfigError, from_dict, to_dict, with_overrides


def _compose(conf_dir: Path, overrides: list[str] | None = None) -> dict:
    """conf/ composed by Hydra with `overrides` (`preset=ci`), as a plain, unchecked dict. Each file
    of conf/ is vetted first (ul.common.bounded): Hydra's own reader bounds nothing."""
    for path in sorted(Path(conf_dir).rglob("*.yaml")):
        try:
            bounded.read_yaml(path, what="config file")
        except bounded.ParseError as err:
            raise ConfigError(str(err)) from None
    with initialize_config_dir(config_dir=str(Path(conf_dir).resolve()), version_base=None):
        return OmegaConf.to_container(compose(config_name="config", overrides=list(overrides or [])))


def compose_params(conf_dir: Path, overrides: list[str] | None = None) -> dict:
    cfg = from_dict(_compose(conf_dir, overrides))  # fails here on unknown keys, types, ranges
    return to_dict(cfg)


def preset_config(conf_dir: Path, preset: str, overrides: list[str] | None = None) -> Config:
    """The checked Config of `preset` (what `dvc exp run -S preset=<preset>` runs), with dotlist
    `overrides` (`noise.logsnr=3`) applied the way `ul.common.config.load` applies them to params.yaml."""
    return from_dict(with_overrides(_compose(conf_dir, [f"preset={preset}"]), overrides))


def write_params(conf_dir: Path, overrides: list[str], out: Path) -> Path:
    data = compose_params(conf_dir, overrides)
    return atomic.write_text(out, yaml.safe_dump(data, sort_keys=False))
