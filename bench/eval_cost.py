"""Evaluation's cost at fewer sampler steps, side by side in one process: the whole evaluation
(`ul.eval.evaluate`: reconstructions, Algorithm-2 samples, Inception features, FID, KID, PSNR,
latent use) at each setting of base steps, decoder steps and, optionally, the Inception's precision
(`eval.inception_precision`, fp32 by default), on a preset's networks.

    python bench/eval_cost.py [--preset cpu] [--n 100] [--settings 50,50 25,25 25,25,bf16] [--repeats 2]

Prints for each setting the wall time (best of `--repeats` interleaved rounds, after one warm-up
call that also caches the reference features), the counted sampling FLOPs (`sampling_flops`), and
both as ratios to the first setting. The networks are freshly initialised and the images random:
evaluation's cost does not depend on either. Whether the numbers hold at fewer steps is the
recipe study's question (docs/results/recipe.md), not this one's.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _flops import machine_note

from ul.common.shards import ShardReader, ShardWriter
from ul.core.model import BaseModel, UnifiedLatents
from ul.eval.evaluate import evaluate
from ul.params import preset_config

CONF = Path(__file__).resolve().parents[1] / "conf"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu")
    p.add_argument("--n", type=int, default=100, help="eval.num_images = eval.fid_num_samples")
    p.add_argument(
        "--settings", nargs="+", default=["50,50", "25,25", "25,25,bf16"], help="base,decoder[,inception precision]"
    )
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    cfg = preset_config(CONF, args.preset)
    cfg.eval.num_images = cfg.eval.fid_num_samples = args.n
    torch.manual_seed(0)
    model, base = UnifiedLatents(cfg).eval(), BaseModel(cfg).eval()
    tmp = Path(tempfile.mkdtemp(prefix="eval-cost-"))
    w = ShardWriter(tmp / "test")
    w.add(np.random.default_rng(0).integers(0, 256, (4 * args.n, *model.x_shape), dtype=np.uint8))
    w.close()
    test = ShardReader(tmp / "test")
    settings = {}
    for s in args.settings:
        c = copy.deepcopy(cfg)
        base_steps, decoder_steps, *inception = s.split(",")
        c.sample.base_steps, c.sample.decoder_steps = int(base_steps), int(decoder_steps)
        c.eval.inception_precision = inception[0] if inception else "fp32"
        settings[s] = c

    def run(name: str) -> dict:
        return evaluate(model, base, test, settings[name], tmp / "out", tmp / "fid", "cpu")

    flops = {name: run(name)["sampling_flops"] for name in settings}  # warm-up; the reference features are cached
    best = dict.fromkeys(settings, float("inf"))
    for _ in range(args.repeats):
        for name in settings:
            t = time.perf_counter()
            run(name)
            best[name] = min(best[name], time.perf_counter() - t)
    first = next(iter(settings))
    print(f"evaluation at the {args.preset} preset, N = {args.n}; {machine_note()}")
    print(f"{'setting':>18} {'wall s':>8} {'ratio':>6} {'sampling TFLOPs':>16} {'ratio':>6}")
    for name in settings:
        print(
            f"{name:>18} {best[name]:8.1f} {best[name] / best[first]:6.2f} "
            f"{flops[name] / 1e12:16.3f} {flops[name] / flops[first]:6.2f}"
        )


if __name__ == "__main__":
    main()
