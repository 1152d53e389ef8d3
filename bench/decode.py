"""Decode throughput, DALI against Pillow, measured side by side on the same shards in one run.

    python bench/decode.py [--images 5000] [--resolution 32] [--channels 1] [--resize-mode pad] [--threads 2] [--repeats 3]

Fetches Fashion-MNIST PNGs (builtin source, packed into tar shards as the fetch stage does) into
a temporary folder, then times each back end's `batches()` over the same files: DALI's WebDataset
reader on the tars, Pillow on their bytes (decode + crop/resize, no file checks or shard writes),
alternating back ends for `--repeats` rounds and reporting the median images/s. DALI "mixed"
(GPU decode) is added when a CUDA GPU is visible. Expect ±40% noise on a shared 2-core machine:
compare the ratio, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from ul.common.device import cuda_available
from ul.data import manifest, rawshards
from ul.data.fetch.sources import fetch
from ul.data.pixels import pil as decode_pil


def _rate(batches, files, **opts) -> float:
    start = time.perf_counter()
    n = sum(len(b) for b in batches(files, **opts))
    return n / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=5000)
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--channels", type=int, default=1, choices=(1, 3))
    p.add_argument("--resize-mode", default="pad", choices=("pad", "resize"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    from ul.data.pixels import dali as decode_dali  # after argparse so --help is fast

    with tempfile.TemporaryDirectory(prefix="ul-bench-") as tmp:
        raw = Path(tmp) / "raw"
        fetch("builtin:fashion-mnist", raw, max_train=args.images, max_test=1)
        train = [e for e in manifest.read(raw) if e.split == "train"]
        files, warm = (rawshards.Selection(rawshards.Shards(raw), rows) for rows in (train, train[:512]))
        opts = dict(
            resolution=args.resolution, channels=args.channels, resize_mode=args.resize_mode, batch_size=args.batch_size
        )
        runs = {
            "pillow threads=1": (decode_pil.batches, dict(threads=1, device="cpu")),
            f"pillow threads={args.threads}": (decode_pil.batches, dict(threads=args.threads, device="cpu")),
            "dali cpu threads=1": (decode_dali.batches, dict(threads=1, device="cpu")),
            f"dali cpu threads={args.threads}": (decode_dali.batches, dict(threads=args.threads, device="cpu")),
        }
        if cuda_available():
            runs["dali mixed (gpu)"] = (decode_dali.batches, dict(threads=args.threads, device="cuda"))
        for fn, extra in runs.values():  # warm-up: imports, page cache, first pipeline build
            _rate(fn, warm, **opts, **extra)
        rates = {name: [] for name in runs}
        for _ in range(args.repeats):
            for name, (fn, extra) in runs.items():
                rates[name].append(_rate(fn, files, **opts, **extra))

    print(
        f"{len(files)} Fashion-MNIST PNGs in tar shards, {args.resize_mode} to {args.resolution}x{args.resolution}, "
        f"{args.channels} channel(s), batch {args.batch_size}, median of {args.repeats}"
    )
    base = statistics.median(rates[next(iter(runs))])
    for name, r in rates.items():
        med = statistics.median(r)
        print(
            f"  {name:24s} {med:9.0f} images/s   x{med / base:5.2f} vs Pillow   (runs: {', '.join(f'{x:.0f}' for x in r)})"
        )


if __name__ == "__main__":
    main()
