"""The training loop shared by stage 1 (joint UL) and stage 2 (base model on cached latents).

AdamW with linear warm-up (then a constant or cosine-decayed learning rate), gradient clipping, EMA weights (evaluation and sampling use EMA),
bf16 autocast of the forward pass where the device computes bf16 natively (`precision`: auto | fp32 |
bf16, see ul.train.precision; loss terms, optimizer state and EMA stay float32), one seeded generator for
data order and every noise draw (saved in the checkpoint, so resuming on CPU is bit-identical to
never stopping), torchrun data parallelism (the global batch's random numbers are drawn on every
rank and sliced, so N processes compute what one process computes), atomic checkpoints every
`ckpt_every` steps, and a stop on the first non-finite loss that keeps the last good checkpoint.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import math
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ul.common import compiled
from ul.common.config import TrainConfig
from ul.common.device import resolve_device
from ul.common.distributed import barrier, init
from ul.common.errors import NonFiniteLossError  # noqa: F401  (re-exported)
from ul.train import checkpoint, precision

CKPT = "ckpt.pt"


def fingerprint(config: dict) -> str:
    """Identifies the run a checkpoint belongs to; a different config never resumes it."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


class MetricLog:
    """A TSV of training metrics (a `dvc plots` source). On resume, rows after the checkpoint go."""

    def __init__(self, path: Path | None, resume_step: int):
        self.path = path
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = []
        if resume_step and path.exists():
            with path.open() as f:
                rows = [r for r in csv.DictReader(f, delimiter="\t") if int(r["step"]) <= resume_step]
        self._write(rows, "w")

    def _write(self, rows, mode):
        if not rows and mode == "a":
            return
        with self.path.open(mode, newline="") as f:
            if rows:
                w = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t")
                if mode == "w":
                    w.writeheader()
                w.writerows(rows)

    def append(self, row: dict) -> None:
        if self.path is not None:
            self._write([row], "a" if self.path.stat().st_size else "w")


@dataclass
class StepDone:
    """What the loop hands each `after_step` callback (e.g. ul.train.rate_target) after each optimizer step:
    the step just taken (1-based), this rank's batch and noise, the EMA model (as of the step
    before; the EMA update follows and copies the model's buffers), and `mean`, the mean of a
    tensor over ranks. A callback returns extra metrics to log."""

    step: int
    batch: torch.Tensor
    noise: Any
    ema: nn.Module
    mean: Callable[[torch.Tensor], torch.Tensor]


def learning_rate(step: int, steps: int, lr: float, warmup: int, decay: str = "none") -> float:
    """The learning rate at 0-based `step` of `steps`: linear warm-up over `warmup` steps, then
    constant (`none`) or a cosine to 0 at the last step (`cosine`)."""
    if decay == "cosine" and step >= warmup:
        return lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(steps - warmup, 1)))
    return lr * min(1.0, (step + 1) / max(1, warmup))


def lr_at(step: int, cfg: TrainConfig) -> float:
    return learning_rate(step, cfg.steps, cfg.lr, cfg.warmup_steps, cfg.lr_decay)


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, step: int, decay: float) -> None:
    """EMA with a warm-up (1+n)/(10+n) so short runs are not dominated by the initial weights."""
    d = min(decay, (1 + step) / (10 + step))
    for pe, p in zip(ema.parameters(), model.parameters()):
        pe.lerp_(p, 1 - d)
    for be, b in zip(ema.buffers(), model.buffers()):
        be.copy_(b)


def _rng_state(gen: torch.Generator) -> dict:
    state = {"generator": gen.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, gen: torch.Generator) -> None:
    gen.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW, its multi-tensor (foreach) implementation: the same numbers as the per-parameter loop,
    bit for bit, and 1.04× the stage-1 step on a 2-core AMD EPYC (bench/train_variants.py; fused
    measured the same but rounds differently, channels_last 1.00×)."""
    return torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=cfg.weight_decay, foreach=True
    )


def _own_checkpoint(path: Path, fp: str, device, main: bool) -> dict | None:
    """This machine's checkpoint of this run (its `step` an int), or None: there is none, or it
    belongs to another configuration. An unreadable one raises CheckpointError."""
    if not path.exists():
        return None
    ck = checkpoint.load(path, map_location=device)
    if ck.get("fingerprint") != fp:
        if main:
            warnings.warn(f"{path} belongs to another configuration; training from scratch", stacklevel=3)
        return None
    return {**ck, "step": int(ck["step"])}


def _set_aside(path: Path, err: BaseException, main: bool) -> None:
    """An unusable checkpoint (written atomically, so damaged from outside) is kept aside for a
    post-mortem, and training starts from scratch."""
    if main and path.exists():
        aside = checkpoint.move_aside(path)
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        warnings.warn(f"{path}: unusable ({reason}); moved to {aside.name}, training from scratch", stacklevel=3)


def train(
    model: nn.Module,
    data: Callable[[np.ndarray], torch.Tensor],
    num_examples: int,
    cfg: TrainConfig,
    out_dir: str | Path,
    config: dict,
    seed: int = 0,
    log_path: str | Path | None = None,
    desc: str = "train",
    progress: bool = True,
    after_step: Sequence[Callable[[nn.Module, StepDone], dict]] = (),
) -> nn.Module:
    """Train `model` (its forward is `(batch, noise) -> per-example terms with "loss"`; it has
    `draw_noise(batch, generator)`) on `data(indices) -> batch`; returns the EMA model."""
    device = resolve_device(cfg.device)
    dist_ = init(device, cfg.launch.timeout_s)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(seed + dist_.rank)  # dropout may differ per rank; the draws do not
    gen = torch.Generator().manual_seed(seed)
    out_dir = Path(out_dir)
    model = model.to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = _optimizer(model, cfg)
    fp, step = fingerprint(config), 0
    ckpt_path = out_dir / CKPT
    try:
        own = _own_checkpoint(ckpt_path, fp, device, dist_.main)
    except (checkpoint.CheckpointError, KeyError, TypeError, ValueError) as err:
        own = None
        _set_aside(ckpt_path, err, dist_.main)
    ck = dist_.newest(own)  # every rank takes part, whatever its own disk holds
    if ck is not None:
        initial = {k: v.clone() for k, v in model.state_dict().items()}  # for a load that fails halfway
        try:
            model.load_state_dict(ck["model"])
            ema.load_state_dict(ck["ema"])
            opt.load_state_dict(ck["optimizer"])
            _set_rng_state(ck["rng"], gen)
            step = ck["step"]
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            # A damaged checkpoint must not wedge every later run: training starts afresh, exactly
            # as a run that never had one (weights as initialised, new optimizer, seeds as set above).
            model.load_state_dict(initial)
            ema.load_state_dict(initial)
            opt = _optimizer(model, cfg)
            torch.manual_seed(seed + dist_.rank)
            gen.manual_seed(seed)
            step = 0
            _set_aside(ckpt_path, err, dist_.main)
    if step and dist_.main:
        print(f"{desc}: resumed from {ckpt_path} at step {step}", file=sys.stderr, flush=True)
    log = MetricLog(Path(log_path) if (log_path and dist_.main) else None, step)
    net = model
    if dist_.world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    net = compiled.CompiledOrEager(net, compiled.wanted(cfg.compile, device), desc)

    def save(at_step: int) -> None:
        if dist_.main:
            checkpoint.save_atomic(
                {
                    "model": model.state_dict(),
                    "ema": ema.state_dict(),
                    "optimizer": opt.state_dict(),
                    "step": at_step,
                    "rng": _rng_state(gen),
                    "config": config,
                    "fingerprint": fp,
                },
                ckpt_path,
            )
        barrier(dist_)

    sums: dict[str, float] = {}
    bar = tqdm(
        total=cfg.steps, initial=step, desc=desc, unit="step", disable=not (progress and dist_.main), dynamic_ncols=True
    )
    t0, seen = time.perf_counter(), 0
    while step < cfg.steps:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        idx = torch.randint(num_examples, (cfg.batch_size,), generator=gen)
        noise = model.draw_noise(cfg.batch_size, gen)
        rows = dist_.slice(cfg.batch_size)
        batch = data(idx[rows].numpy()).to(device, non_blocking=True)
        noise = noise.rows(rows).to(device)
        with precision.autocast(cfg.precision, device):
            terms = net(batch, noise)
        loss = terms["loss"].mean()
        means = dist_.mean(torch.stack([t.detach().float().mean() for t in terms.values()]))
        if not torch.isfinite(means).all():
            bar.close()
            bad = {k: float(v) for k, v in zip(terms, means)}
            raise NonFiniteLossError(
                f"{desc}: non-finite loss at step {step + 1}: {bad}; stopped before the update, "
                f"the last good checkpoint ({ckpt_path}) is kept. Lower the learning rate or check the data."
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        measured = dict(zip(terms, means.tolist()))
        for callback in after_step:  # e.g. the rate target; every rank sees the same numbers
            measured.update(callback(model, StepDone(step + 1, batch, noise, ema, dist_.mean)))
        ema_update(ema, model, step, cfg.ema_decay)  # after: the EMA carries what the callbacks set
        step += 1
        seen += cfg.batch_size
        for k, v in measured.items():
            sums[k] = sums.get(k, 0.0) + v
        sums["grad_norm"] = sums.get("grad_norm", 0.0) + float(grad_norm)
        if step % cfg.log_every == 0 or step == cfg.steps:
            n = cfg.log_every if step % cfg.log_every == 0 else step % cfg.log_every
            rate = seen / (time.perf_counter() - t0)
            row = {
                "step": step,
                "lr": lr_at(step - 1, cfg),
                **{k: v / n for k, v in sums.items()},
                "images_per_s": rate,
            }
            log.append(row)
            bar.set_postfix(loss=f"{row['loss']:.1f}", img_s=f"{rate:.0f}")
            sums, t0, seen = {}, time.perf_counter(), 0
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            save(step)
        bar.update(1)
    bar.close()
    return ema
