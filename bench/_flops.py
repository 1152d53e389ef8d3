"""Shared by the benchmarks: the matmul reference figure of a precision, measured in the same run,
and the `--precisions` option that says which precisions to measure.

A benchmark's "MFU" is its achieved FLOP/s over the FLOP/s of a 2048² matmul in the precision the
measured code actually computes in (fp32, or bf16 under autocast), measured in the same process
next to it, so that the load of a shared machine cancels out of the ratio.
"""

from __future__ import annotations

import argparse
import time

import torch

from ul.train.precision import cpu_has_native_bf16

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def matmul_flops(precision: str = "fp32", n: int = 2048, reps: int = 6, repeats: int = 3) -> float:
    """Best-of-`repeats` FLOP/s of an n×n matmul in `precision` ("fp32" | "bf16")."""
    a, b = (torch.randn(n, n).to(DTYPES[precision]) for _ in range(2))
    a @ b  # warm-up: oneDNN/MKL kernel selection
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t))
    return best


def best_step_seconds(step, names, steps: int, repeats: int) -> dict:
    """Seconds per `step(name)` for each name: one warm-up step each (kernel selection, allocator),
    then `repeats` interleaved rounds of `steps` steps, the best round kept."""
    for name in names:
        step(name)
    best = dict.fromkeys(names, float("inf"))
    for _ in range(repeats):
        for name in names:
            t = time.perf_counter()
            for _ in range(steps):
                step(name)
            best[name] = min(best[name], (time.perf_counter() - t) / steps)
    return best


def machine_note() -> str:
    """The load average when the benchmark started: ratios are comparable, absolute figures only on a quiet machine."""
    try:
        with open("/proc/loadavg") as f:
            load = f.read().split()[0]
    except OSError:
        load = "?"
    return f"threads={torch.get_num_threads()} load average={load} (ratios are side by side; absolute figures need a quiet machine)"


def add_precisions_arg(parser: argparse.ArgumentParser) -> None:
    """`--precisions`: by default fp32, and bf16 where the CPU computes it natively. Elsewhere oneDNN
    emulates bf16, slower than fp32 (a bench/train.py run with it did not finish in 15 minutes), so
    `make bench` would stall; `--precisions fp32 bf16` still asks for it."""
    parser.add_argument(
        "--precisions",
        nargs="+",
        default=["fp32", "bf16"] if cpu_has_native_bf16() else ["fp32"],
        choices=("fp32", "bf16"),
        help="default: fp32, and bf16 where this CPU has native bf16 (emulated bf16 is very slow)",
    )
