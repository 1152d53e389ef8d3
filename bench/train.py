"""Stage-1 training throughput of a preset and its CPU "MFU"; sampling throughput.

    python bench/train.py [--preset cpu] [--steps 10] [--threads 0]

Measured side by side in one run (these machines are noisy): a float32 matmul's FLOP/s, then
training steps of the preset's stage-1 model (FLOPs counted by torch's FlopCounterMode), then
DDIM reconstruction at the configured decoder steps. Prints images/s and the ratio
achieved FLOP/s ÷ matmul FLOP/s.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from ul.conf import preset_config
from ul.model import UnifiedLatents

CONF = Path(__file__).resolve().parents[1] / "conf"


def matmul_flops(n: int = 2048, reps: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = preset_config(CONF, args.preset)
    b = cfg.stage1.batch_size
    torch.manual_seed(0)
    model = UnifiedLatents(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(b, *model.x_shape) * 2 - 1

    def step():
        loss = model(x, model.draw_noise(b, gen))["loss"].mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    with FlopCounterMode(display=False) as fc:
        step()
    flops_per_step = fc.get_total_flops()
    peak_before = matmul_flops()
    step()
    t = time.perf_counter()
    for _ in range(args.steps):
        step()
    dt = (time.perf_counter() - t) / args.steps
    peak_after = matmul_flops()
    peak = (peak_before + peak_after) / 2
    achieved = flops_per_step / dt
    model.eval()
    n, steps = 32, cfg.sample.decoder_steps
    t = time.perf_counter()
    with torch.no_grad():
        z0 = model.noisy(model.encode(x[:n]), torch.randn((n, *model.z_shape), generator=gen))
        model.decode(z0, steps, cfg.sample.sampler, gen)
    sample_rate = n / (time.perf_counter() - t)
    print(f"preset={args.preset} batch={b} threads={torch.get_num_threads()}")
    print(
        f"stage-1 train: {dt * 1000:.0f} ms/step, {b / dt:.1f} images/s, {flops_per_step / b / 1e9:.2f} GFLOP/image/step"
    )
    print(f"fp32 matmul 2048²: {peak / 1e9:.0f} GFLOP/s (before {peak_before / 1e9:.0f}, after {peak_after / 1e9:.0f})")
    print(f"achieved {achieved / 1e9:.0f} GFLOP/s -> MFU ratio {achieved / peak:.2f}")
    print(f"sampling ({cfg.sample.sampler}, {steps} decoder steps): {sample_rate:.1f} images/s")


if __name__ == "__main__":
    main()
