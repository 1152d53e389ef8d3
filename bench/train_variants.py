"""Stage-1 training steps with AdamW's three implementations and two memory layouts, side by side.

    python bench/train_variants.py [--preset cpu] [--steps 4] [--repeats 3]

In one process, from the same initial weights and batch: the default (AdamW's per-parameter loop,
NCHW), AdamW with `foreach=True` and with `fused=True`, and the model and batch in
`channels_last`. Each variant's steps (forward, backward, clipping, the optimizer step: what
ul.train.loop does, in fp32) are interleaved for `--repeats` rounds, the best round kept. Prints
steps/s and the speed-up over the default, and how far each variant's weights moved from the
default's after the same steps (an implementation must not change what is computed beyond float
rounding). ul.train.loop keeps what measured faster (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch
from _flops import best_step_seconds, machine_note

from ul.core.model import UnifiedLatents
from ul.params import preset_config

CONF = Path(__file__).resolve().parents[1] / "conf"
VARIANTS = {
    "default": ({}, False),
    "foreach": ({"foreach": True}, False),
    "fused": ({"fused": True}, False),
    "channels_last": ({}, True),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu")
    p.add_argument("--steps", type=int, default=4, help="training steps per timed round")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the best is kept")
    args = p.parse_args()
    cfg = preset_config(CONF, args.preset)
    b = cfg.stage1.batch_size
    torch.manual_seed(0)
    init = UnifiedLatents(cfg)
    x = torch.rand(b, *init.x_shape, generator=torch.Generator().manual_seed(1)) * 2 - 1
    runs = {}
    for name, (opt_kw, last) in VARIANTS.items():
        model = copy.deepcopy(init)
        if last:
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.stage1.lr, betas=(0.9, 0.99), weight_decay=0.01, **opt_kw)
        batch = x.contiguous(memory_format=torch.channels_last) if last else x
        runs[name] = (model, opt, batch, torch.Generator().manual_seed(0))

    def step(name: str) -> None:
        model, opt, batch, gen = runs[name]
        loss = model(batch, model.draw_noise(b, gen))["loss"].mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.stage1.grad_clip)
        opt.step()

    dt = best_step_seconds(step, list(runs), args.steps, args.repeats)  # one warm-up step each, alike
    ref = dict(runs["default"][0].named_parameters())
    print(f"{args.preset} preset, stage 1, batch {b}, fp32; {machine_note()}")
    for name in runs:
        moved = max(float((p - ref[k]).detach().abs().max()) for k, p in runs[name][0].named_parameters())
        print(
            f"{name:<14} {1 / dt[name]:6.2f} steps/s   {dt['default'] / dt[name]:5.2f}x the default   "
            f"max |Δw| vs default after {1 + args.repeats * args.steps} steps: {moved:.1e}"
        )


if __name__ == "__main__":
    main()
