"""torch.compile (inductor) of a training stage's forward and backward (`stageN.compile`) and of
the samplers' network (`sample.compile`): `inductor` compiles, `eager` does not, `auto` compiles
on CUDA only (on these 2-core CPUs training measured no faster, sampling 1.24× but paying off only
after about 570 decoded images: bench/compile.py). A compilation that fails falls back to eager
with one warning line, so a missing compiler or an unsupported operator never stops a run."""

from __future__ import annotations

import warnings

import torch
from torch import nn

MODES = ("auto", "eager", "inductor")


def wanted(mode: str, device: torch.device) -> bool:
    return mode == "inductor" or (mode == "auto" and device.type == "cuda")


class CompiledOrEager:
    """Call `module` compiled when `enabled`; if its first compiled call fails, warn once and go on
    in eager mode (the failed call is re-run eagerly, so an error of the model itself still raises)."""

    def __init__(self, module: nn.Module, enabled: bool, desc: str):
        self.eager, self.desc = module, desc
        self.fn = torch.compile(module) if enabled else module
        self.proven = not enabled

    @property
    def compiled(self) -> bool:
        return self.fn is not self.eager

    def __call__(self, *args, **kwargs):
        if self.proven:
            return self.fn(*args, **kwargs)
        try:
            out = self.fn(*args, **kwargs)
        except Exception as err:  # dynamo and inductor raise many types (a missing C++ compiler, an op)
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            warnings.warn(f"{self.desc}: torch.compile failed ({reason}); going on in eager mode", stacklevel=2)
            self.fn = self.eager
            out = self.eager(*args, **kwargs)
        self.proven = True
        return out
