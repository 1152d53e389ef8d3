"""A requested latent rate (unified.target_bits_per_pixel), reached in training: a callback of the
training loop (ul.train.loop.train's `after_step`) that steers the loss factor c_lf, a buffer of the
model (so it is checkpointed and exported), on the rate of the EMA weights."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ul.common.config import Config
from ul.core.model import UnifiedLatents
from ul.core.schedules import bits

# The share of stage 1 a rate target holds c_lf at unified.loss_factor before steering: early on the
# untrained prior charges 10-40x the final rate (0.6 bits/pixel at step 25 of the sweep preset,
# settling from about step 150), and steering on that drove c_lf to its floor and collapsed the
# latent before the prior had learnt anything (docs/results/README.md).
HOLD = 0.3


@dataclass
class RateController:
    """Steers log c_lf so that the EMA model's rate (bits per pixel) converges to `target`.

    Raising c_lf makes the decoder's loss dearer than the prior's, so the encoder spends more bits;
    lowering it spends fewer. The rate is a noisy per-batch estimate, so it is smoothed (EMA) first;
    after `hold` steps, log c_lf moves by `gain`·log(target / rate) per step (integral control:
    it also follows the rate's slow drift while the prior keeps learning), kept within
    [log c_min, log c_max] (c_lf ≤ 1 collapses the latent; docs/method.md). The gain is small
    because the rate answers a change of c_lf over tens of steps; a larger one overshoots.
    """

    target: float
    hold: int = 0
    gain: float = 0.02
    smoothing: float = 0.9
    c_min: float = 1.2
    c_max: float = 20.0

    def update(self, step: int, log_c: torch.Tensor, rate_ema: torch.Tensor, bpp: float) -> None:
        bpp = max(float(bpp), 1e-9)
        ema = bpp if float(rate_ema) < 0 else self.smoothing * float(rate_ema) + (1 - self.smoothing) * bpp
        rate_ema.fill_(ema)
        if step > self.hold:
            moved = float(log_c) + self.gain * math.log(self.target / ema)
            log_c.fill_(min(max(moved, math.log(self.c_min)), math.log(self.c_max)))


class RateTarget:
    """After each optimizer step: measure the rate of the EMA weights (what is exported, cached and
    evaluated) on this step's batch and noise, steer the model's c_lf with it, and return it to be
    logged (bits per pixel; pixels are T·H·W for video)."""

    def __init__(self, target: float, steps: int):
        self.controller = RateController(target, hold=round(HOLD * steps))

    @torch.no_grad()
    def __call__(self, model: UnifiedLatents, done) -> dict:
        ema = done.ema
        nats = done.mean(ema.rate_nats(ema.encode(done.batch), done.noise.prior).mean())
        bpp = bits(nats, image_shape=model.x_shape)["bits_per_pixel"]
        self.controller.update(done.step, model.log_loss_factor, model.rate_ema, bpp)
        return {"ema_rate_bpp": bpp}


def callbacks(model, cfg: Config) -> list:
    """The stage-1 training callbacks the config asks for: a RateTarget under a rate target."""
    target = cfg.unified.target_bits_per_pixel
    return [RateTarget(target, cfg.stage1.steps)] if target and isinstance(model, UnifiedLatents) else []
