"""Evaluation's own compute: the FLOPs of its sampling, counted as training's are (ul.train.flops)
by FlopCounterMode, on one image of each kind, on float32 CPU copies in eager mode, so that neither
the models nor the run's random streams are touched. The count is exact for any N: the networks'
FLOPs do not depend on the values they see."""

from __future__ import annotations

import copy

import torch
from torch.utils.flop_counter import FlopCounterMode

from ul.common.config import Config


def _counted(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


@torch.no_grad()
def sampling_flops(model, base, cfg: Config, n: int, n_fid: int) -> float:
    """FLOPs of evaluation's sampling: `n` reconstructions decoded from z0, and `n_fid` Algorithm-2
    samples (the base model down to z0, then the decoder), at `cfg.sample`'s sampler and steps."""
    s = cfg.sample
    m, b = (copy.deepcopy(x).float().cpu().eval() for x in (model, base))
    m.sample_compile = b.sample_compile = "eager"  # FlopCounterMode counts eager calls
    gen = torch.Generator().manual_seed(0)
    z0 = torch.randn((1, *m.z_shape), generator=gen)
    decode = _counted(lambda: m.decode(z0, s.decoder_steps, s.sampler, gen))
    latent = _counted(lambda: b.sample_latents(1, s.base_steps, s.sampler, gen, "cpu"))
    return (n + n_fid) * decode + n_fid * latent
