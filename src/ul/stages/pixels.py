"""Pixels stage: decode the raw images into uint8 N×C×H×W shards per split with NVIDIA DALI
(videos, when data.frames > 0, into N×C×T×H×W clips with PyAV on the CPU).

    python -m ul.stages.pixels [--params params.yaml] [--raw data/raw] [--out data/pixels] [--metrics metrics/pixels.json]

Reads data.resolution, data.channels, data.resize_mode (pad: centre pad/crop, no resampling;
resize: shorter side to the resolution, then centre crop), data.background (refuse | white | black: images
with transparent pixels refused, or flattened onto that colour) and pixels.* (device auto|cpu|cuda,
on_error fail|skip, threads, batch_size), and data.frames and data.fps (clip length; frames per
second, 0 = the file's own rate). A corrupt image or video stops the stage naming its path, or
with pixels.on_error=skip is left out and listed in <out>/skipped.json. pixels.drop=[duplicates,blank]
leaves out, on request, exact duplicate files (the first is kept) and blank or saturated images,
each listed there with its reason, and counted in the metrics: what the validate stage would
otherwise refuse.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ul.data.pixels.images import decode
from ul.stages import _cli


def main(argv=None) -> int:
    p = _cli.parser("pixels", __doc__)
    p.add_argument("--raw", default="data/raw", help="fetched folder with manifest.csv (default: %(default)s)")
    p.add_argument("--out", default="data/pixels", help="shard output folder (default: %(default)s)")
    args = p.parse_args(argv)

    def body(cfg):
        metrics = decode(
            Path(args.raw),
            Path(args.out),
            cfg.data.resolution,
            cfg.data.channels,
            cfg.data.resize_mode,
            cfg.pixels.device,
            cfg.pixels.on_error,
            cfg.pixels.threads,
            cfg.pixels.batch_size,
            frames=cfg.data.frames,
            fps=cfg.data.fps,
            drop=tuple(cfg.pixels.drop),
            background=cfg.data.background,
        )
        # Throughput varies run to run; printed, not stored, so the stage's DVC hash is reproducible.
        unit = "clips" if cfg.data.frames > 0 else "images"
        print(f"decode: {metrics.pop(f'{unit}_per_s')} {unit}/s", file=sys.stderr)
        return metrics

    return _cli.run(args, body)


if __name__ == "__main__":
    sys.exit(main())
