"""Does bf16 training keep quality? Equal-step stage-1 runs in fp32 and bf16, over several seeds.

    python bench/precision_quality.py [--preset ci] [--steps 300] [--seeds 0 1] [--data data/pixels]

Trains the preset's stage-1 model (`stage1.precision` fp32, then bf16, same seed, same steps, same
data: the preset's first `data.max_train` images of `--data`/train) and evaluates each in float32
on the preset's `eval.num_images` test images: rate (prior loss, bits/pixel) and PSNR of decoder
reconstructions (`sample.decoder_steps` steps). Prints each run's training images/s, rate and PSNR,
and per precision the mean and the seed-to-seed spread: bf16 holds quality when its means are
within the spread of fp32's. Needs the decoded data (`dvc repro decode`). Takes a few minutes on a
CPU with native bf16; elsewhere (where `precision: auto` trains in fp32 anyway) it stops at once,
unless `--emulated` asks for the comparison in oneDNN's emulated bf16, which is very slow.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _flops import machine_note

from ul.common.config import to_dict
from ul.common.images import from_uint8
from ul.common.shards import ShardReader
from ul.core.model import UnifiedLatents
from ul.eval.psnr import psnr_db
from ul.params import preset_config
from ul.train import precision
from ul.train.loop import train

ROOT = Path(__file__).resolve().parents[1]


def run(cfg, prec: str, seed: int, train_x: torch.Tensor, test_x: torch.Tensor) -> dict:
    cfg.stage1.precision = prec
    cfg.stage1.ckpt_every = cfg.stage1.steps
    torch.manual_seed(seed)
    model = UnifiedLatents(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        ema = train(
            model,
            lambda i: train_x[torch.as_tensor(i)],
            len(train_x),
            cfg.stage1,
            tmp,
            to_dict(cfg),
            seed,
            progress=False,
        )
        dt = time.perf_counter() - t
    ema.eval()
    gen = torch.Generator().manual_seed(1000 + seed)
    with torch.no_grad():  # evaluation in float32 for both: only training precision differs
        terms = ema(test_x, ema.draw_noise(len(test_x), gen))
        z0 = ema.noisy(ema.encode(test_x), torch.randn((len(test_x), *ema.z_shape), generator=gen))
        recon = ema.decode(z0, cfg.sample.decoder_steps, cfg.sample.sampler, gen)
    pixels = test_x.shape[-1] * test_x.shape[-2]
    return {
        "images_per_s": cfg.stage1.steps * cfg.stage1.batch_size / dt,
        "bits_per_pixel": float(terms["prior"].mean()) / math.log(2) / pixels,
        "psnr_db": float(psnr_db((recon + 1) / 2, (test_x + 1) / 2).mean()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="ci")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--data", default=str(ROOT / "data" / "decoded"))
    p.add_argument("--emulated", action="store_true", help="run even where bf16 is emulated (very slow)")
    args = p.parse_args()
    if not (precision.cpu_has_native_bf16() or args.emulated):
        print(
            "precision_quality: not run: this CPU has no native bf16, so training runs in fp32 here (--emulated to compare anyway)"
        )
        return
    note = machine_note()
    cfg = preset_config(ROOT / "conf", args.preset)
    cfg.stage1.steps = args.steps
    tr, te = ShardReader(Path(args.data) / "train"), ShardReader(Path(args.data) / "test")
    n_train = min(len(tr), cfg.data.max_train or len(tr))
    train_x = from_uint8(tr[np.arange(n_train)])
    test_x = from_uint8(te[np.arange(min(len(te), cfg.eval.num_images))])
    results = {}
    for seed in args.seeds:
        for prec in ("fp32", "bf16"):  # interleaved, so load changes hit both
            results[prec, seed] = r = run(cfg, prec, seed, train_x, test_x)
            print(
                f"{prec} seed {seed}: {r['images_per_s']:7.1f} images/s  "
                f"rate {r['bits_per_pixel']:.4f} bits/pixel  PSNR {r['psnr_db']:.2f} dB",
                flush=True,
            )
    print(f"preset={args.preset} stage-1 {args.steps} steps x batch {cfg.stage1.batch_size}, {n_train} images; {note}")
    print(f"CPU bf16 native: {precision.cpu_has_native_bf16()}")
    for prec in ("fp32", "bf16"):
        rows = [results[prec, s] for s in args.seeds]
        line = []
        for k in ("images_per_s", "bits_per_pixel", "psnr_db"):
            v = [r[k] for r in rows]
            sd = statistics.stdev(v) if len(v) > 1 else float("nan")
            line.append(f"{k} {statistics.mean(v):.4g} ± {sd:.2g}")
        print(f"  {prec} (mean ± seed-to-seed sd over {len(rows)} seeds): " + ", ".join(line))
    speed = statistics.mean(results["bf16", s]["images_per_s"] / results["fp32", s]["images_per_s"] for s in args.seeds)
    print(f"  bf16 / fp32 training throughput: {speed:.2f}x")


if __name__ == "__main__":
    main()
