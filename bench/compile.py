"""torch.compile (inductor) against eager, side by side in one process: stage-1 and stage-2 training
steps of a preset, and decoder sampling.

    python bench/compile.py [--preset cpu] [--steps 4] [--repeats 3] [--samples 16] [--precision fp32]

For each: the compile time (the first compiled call, less one eager call), steps/s (or images/s)
after warm-up for both, best of `--repeats` interleaved rounds, the speed-up, and after how many
steps the compilation pays for itself. `--precision` as the stages' (`fp32`, or `bf16` autocast
around the forward pass, as training runs it); the default `stageN.compile: auto` follows what this
prints (inductor only on CUDA while the CPU speed-up stays below ~1.1x).
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
from _flops import machine_note

from ul.core.model import BaseModel, UnifiedLatents
from ul.params import preset_config
from ul.train import precision

CONF = Path(__file__).resolve().parents[1] / "conf"


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def compare(
    name: str, eager, compiled, steps: int, repeats: int, unit: str, per_step: int, call: str = "steps"
) -> None:
    """eager() and compiled() run one step each; prints the comparison line."""
    first_eager = timed(eager)
    first_compiled = timed(compiled)  # compiles here
    best = {"eager": float("inf"), "inductor": float("inf")}
    for _ in range(repeats):
        for mode, fn in (("eager", eager), ("inductor", compiled)):
            best[mode] = min(best[mode], timed(lambda fn=fn: [fn() for _ in range(steps)]) / steps)
    compile_s = first_compiled - first_eager
    gain = best["eager"] - best["inductor"]
    pays = f"pays off after {compile_s / gain:,.0f} {call}" if gain > 0 else "never pays off"
    print(
        f"{name}: eager {per_step / best['eager']:.1f} {unit}/s, inductor {per_step / best['inductor']:.1f} {unit}/s "
        f"= {best['eager'] / best['inductor']:.2f}x; compile {compile_s:.0f} s, {pays}"
    )


def train_step(model, b: int, x_shape, gen, precision_: str):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.rand(b, *x_shape) * 2 - 1

    def make(net):
        def step():
            with precision.autocast(precision_, "cpu"):
                terms = net(x, model.draw_noise(b, gen))
            opt.zero_grad(set_to_none=True)
            terms["loss"].mean().backward()
            opt.step()

        return step

    return make


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    args = p.parse_args()
    cfg = preset_config(CONF, args.preset)
    print(f"preset={args.preset} precision={args.precision} torch {torch.__version__} {machine_note()}")
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)

    ul = UnifiedLatents(cfg)
    for stage, model, batch, shape in (
        ("stage-1", ul, cfg.stage1.batch_size, ul.x_shape),
        ("stage-2", BaseModel(cfg), cfg.stage2.batch_size, ul.z_shape),
    ):
        twin = copy.deepcopy(model)
        compare(
            f"{stage} train (batch {batch})",
            train_step(model, batch, shape, gen, args.precision)(model),
            train_step(twin, batch, shape, gen, args.precision)(torch.compile(twin)),
            args.steps, args.repeats, "steps", 1,
        )  # fmt: skip

    n, dsteps = args.samples, cfg.sample.decoder_steps
    ul.eval()
    comp_s = copy.deepcopy(ul)
    comp_s.decoder = torch.compile(comp_s.decoder)  # the network every sampler step evaluates
    with torch.no_grad():
        z0 = ul.noisy(ul.encode(torch.rand(n, *ul.x_shape) * 2 - 1), torch.randn((n, *ul.z_shape), generator=gen))

        def decode(m):
            def run():
                with precision.autocast(args.precision, "cpu"):
                    m.decode(z0, dsteps, cfg.sample.sampler, torch.Generator().manual_seed(1))

            return run

        compare(
            f"sampling ({dsteps} decoder steps, {n} images)",
            decode(ul), decode(comp_s), 1, max(1, args.repeats - 1), "images", n, f"decodes of {n} images",
        )  # fmt: skip


if __name__ == "__main__":
    main()
