"""Where a stage, a command or the API runs: the one reading of `auto | cpu | cuda` (a param of
every stage that uses torch, and `--device` of the commands)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def cuda_available() -> bool:
    import torch  # here, not at the top: the data stages read this module and need torch for nothing else

    return bool(torch.cuda.is_available())


def resolve_device(name: str) -> torch.device:
    """`auto` → CUDA when visible (the local rank's GPU under torchrun), else CPU."""
    import torch

    if name == "auto":
        name = "cuda" if cuda_available() else "cpu"
    if name == "cuda":
        if not cuda_available():
            raise RuntimeError("device=cuda requested but no CUDA GPU is visible")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")
