"""Exported models: EMA weights plus the config that built them, loaded safely into the right class.

`models/stage1/model.pt` and `models/stage2/model.pt` are what caching, evaluation, sampling and
`ul release` read; the training checkpoint (`ckpt.pt`, with optimizer and RNG) is for resuming only.
"""
from __future__ import annotations

from pathlib import Path

from torch import nn

from ul import checkpoint
from ul.config import Config, from_dict, to_dict
from ul.model import BaseModel, UnifiedLatents

MODEL = "model.pt"


def save(model: nn.Module, cfg: Config, path: str | Path) -> Path:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return checkpoint.save_atomic({"state_dict": state, "config": to_dict(cfg), "class": type(model).__name__}, path)


def load(path: str | Path, device="cpu") -> tuple[nn.Module, Config]:
    blob = checkpoint.load(path)
    cfg = from_dict(blob["config"])
    cls = {"UnifiedLatents": UnifiedLatents, "BaseModel": BaseModel}[blob["class"]]
    model = cls(cfg)
    model.load_state_dict(blob["state_dict"])
    return model.to(device).eval().requires_grad_(False), cfg
