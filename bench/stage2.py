"""Stage-2 training step on cached latents vs encoding each batch with the frozen encoder on the
fly, each in fp32 and in bf16 (ul.train.precision autocast of the forwards), side by side in one run.

    python bench/stage2.py [--preset cpu] [--set KEY=VALUE ...] [--precisions fp32 bf16] [--images 4096] [--steps 10] [--repeats 2]

The ratio depends on how large the encoder is against the base model: at the `cpu` preset the
encoder is small, at the `gpu` preset's networks it is large, e.g.
`--preset gpu --set data.resolution=64 stage2.batch_size=4 --images 32 --precisions fp32 --steps 2`.

All variants run the same base-model step on the same batch size, interleaved for `--repeats`
rounds (best kept). Printed: ms/step, what caching saves per step (the encoder forward on every
batch), the bf16/fp32 speed-up, and the cached step's MFU = achieved FLOP/s (FlopCounterMode)
÷ the 2048² matmul FLOP/s of the precision used, measured in the same run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _flops import add_precisions_arg, machine_note, matmul_flops
from torch.utils.flop_counter import FlopCounterMode

from ul.artifacts import latent_cache
from ul.common.images import from_uint8
from ul.common.shards import ShardReader, ShardWriter
from ul.core.model import BaseModel, UnifiedLatents
from ul.params import preset_config
from ul.train import precision

CONF = Path(__file__).resolve().parents[1] / "conf"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides on top of the preset")
    add_precisions_arg(p)
    p.add_argument("--images", type=int, default=4096, help="random images to encode and cache")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    note = machine_note()
    cfg = preset_config(CONF, args.preset, args.set)
    b = cfg.stage2.batch_size
    torch.manual_seed(0)
    model = UnifiedLatents(cfg).eval().requires_grad_(False)
    base = BaseModel(cfg)
    opt = torch.optim.AdamW(base.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        w = ShardWriter(Path(tmp) / "img")
        w.add(rng.integers(0, 256, (args.images, *model.x_shape), dtype=np.uint8))
        w.close()
        images = ShardReader(Path(tmp) / "img")
        latent_cache.write(model, images, Path(tmp) / "lat", batch_size=min(512, args.images))
        latents = ShardReader(Path(tmp) / "lat")

        mode = {"precision": "fp32"}  # the precision of the variant being timed

        def step(z):
            with precision.autocast(mode["precision"], "cpu"):
                terms = base(z, base.draw_noise(len(z), gen))
            loss = terms["loss"].mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        def cached():
            step(torch.from_numpy(latents[rng.integers(0, len(latents), b)]))

        def on_the_fly():
            with torch.no_grad(), precision.autocast(mode["precision"], "cpu"):
                z = model.encode(from_uint8(images[rng.integers(0, len(images), b)]))
            step(z)

        with FlopCounterMode(display=False) as fc:
            cached()
        flops = fc.get_total_flops()
        peak = {q: matmul_flops(q) for q in args.precisions}
        times = {}
        variants = [
            (q, name, fn) for q in args.precisions for name, fn in (("cached", cached), ("on_the_fly", on_the_fly))
        ]
        for q, _, fn in variants:  # warm-up
            mode["precision"] = q
            fn()
        for _ in range(args.repeats):  # interleaved, best of `repeats`
            for q, name, fn in variants:
                mode["precision"] = q
                t = time.perf_counter()
                for _ in range(args.steps):
                    fn()
                dt = (time.perf_counter() - t) / args.steps
                times[q, name] = min(dt, times.get((q, name), dt))
        peak = {q: max(f, matmul_flops(q)) for q, f in peak.items()}
    print(f"preset={args.preset} {' '.join(args.set)} stage-2 batch={b} {note}")
    print("matmul 2048²: " + ", ".join(f"{q} {f / 1e9:.0f} GFLOP/s" for q, f in peak.items()))
    for (q, name), dt in times.items():
        mfu = (
            f"  {flops / dt / 1e9:5.0f} GFLOP/s  MFU {flops / dt / peak[q]:.2f} of the {q} matmul"
            if name == "cached"
            else ""
        )
        print(f"{q} {name:>11}: {dt * 1000:7.1f} ms/step {b / dt:7.0f} latents/s{mfu}")
    for q in args.precisions:
        print(f"{q}: on-the-fly / cached step time: {times[q, 'on_the_fly'] / times[q, 'cached']:.2f}x")
    if len(args.precisions) == 2:
        for name in ("cached", "on_the_fly"):
            print(f"{name}: bf16 / fp32 throughput: {times['fp32', name] / times['bf16', name]:.2f}x")


if __name__ == "__main__":
    main()
