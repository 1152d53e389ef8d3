"""FID Inception throughput: the shipped TorchScript graph against the fused rebuild (float32, the
default) and the fused rebuild in bf16 (opt-in), side by side in one run, with FLOP/s over the matmul.

    python bench/inception.py [--images 32] [--batch-size 16] [--repeats 2] [--precisions fp32 bf16]

Each variant runs `ul.eval.inception.InceptionFeatures` (resize 28→299 included) on the same real
Fashion-MNIST test images, interleaved for `--repeats` rounds (best kept). FLOPs per image are
counted by FlopCounterMode on the shipped graph; MFU = achieved FLOP/s ÷ the 2048² matmul FLOP/s
of the precision the variant computes in, measured in the same run. Also printed: how far each
variant's features and FID (first half of the images against the second) are from the shipped graph's.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _flops import add_precisions_arg, machine_note, matmul_flops
from torch.utils.flop_counter import FlopCounterMode

from ul.data.fetch.builtin import FASHION_DIR
from ul.data.fetch.idx import read_idx
from ul.eval import frechet, inception

REFERENCE = "shipped graph (before)"
VARIANTS = {  # name: (InceptionFeatures options, precision computed in)
    REFERENCE: (dict(variant="reference"), "fp32"),
    "fused fp32 (default)": (dict(variant="fused"), "fp32"),
    "fused bf16 (opt-in)": (dict(variant="fused", precision="bf16"), "bf16"),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=2)
    add_precisions_arg(p)
    args = p.parse_args()
    variants = {name: v for name, v in VARIANTS.items() if v[1] in args.precisions or name == REFERENCE}
    note = machine_note()
    images = read_idx(FASHION_DIR / "t10k-images-idx3-ubyte.gz")[: args.images, None].copy()
    nets = {
        name: inception.InceptionFeatures(batch_size=args.batch_size, progress=False, **o)
        for name, (o, _) in variants.items()
    }
    for f in nets.values():
        f(images[:2])  # load, build, warm up
    with FlopCounterMode(display=False) as fc, torch.inference_mode():
        nets[REFERENCE].model(torch.zeros(1, 3, inception.INCEPTION_SIZE, inception.INCEPTION_SIZE))
    flops_per_image = fc.get_total_flops()
    peak = {q: matmul_flops(q) for q in dict.fromkeys(["fp32", *args.precisions])}  # the reference is fp32
    best, feats = dict.fromkeys(nets, float("inf")), {}
    for _ in range(args.repeats):
        for name, f in nets.items():
            t = time.perf_counter()
            feats[name] = f(images)
            best[name] = min(best[name], time.perf_counter() - t)
    peak = {q: max(v, matmul_flops(q)) for q, v in peak.items()}

    n, half = len(images), len(images) // 2
    ref = feats[REFERENCE]
    fid_ref = frechet.fid_from_features(ref[:half], ref[half:])
    print(
        f"FID Inception on {n} Fashion-MNIST test images (28→299), batch {args.batch_size}, best of {args.repeats}; {note}"
    )
    print(
        f"{flops_per_image / 1e9:.2f} GFLOP/image; matmul 2048²: "
        + ", ".join(f"{q} {v / 1e9:.0f}" for q, v in peak.items())
        + " GFLOP/s"
    )
    base = n / best[REFERENCE]
    for name, (_, q) in variants.items():
        rate = n / best[name]
        dfe = np.abs(feats[name] - ref).max()
        fid = frechet.fid_from_features(feats[name][:half], feats[name][half:])
        print(
            f"  {name:24s} {rate:6.2f} images/s  x{rate / base:4.2f}  {rate * flops_per_image / 1e9:5.0f} GFLOP/s "
            f"= {rate * flops_per_image / peak[q]:.2f} of the {q} matmul   max|Δfeature| {dfe:.1e}  "
            f"FID {fid:.4f} ({(fid - fid_ref) / fid_ref:+.3%})"
        )


if __name__ == "__main__":
    main()
