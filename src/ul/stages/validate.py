"""Validate stage: a Great Expectations suite over the manifest, split counts and decoded pixels.

    python -m ul.stages.validate [--params params.yaml] [--raw data/raw] [--decoded data/pixels] [--out data/validation] [--metrics metrics/validate.json]

Reads data.resolution, data.channels and data.resize_mode (pad: sources must not exceed the
resolution; resize: not be up-sampled more than 2x), and data.frames (> 0: the video suite, per
clip: frame count, size, dtype, statistics, stills and duplicates). Writes <out>/result.json and HTML Data Docs in
<out>/docs/index.html, also when an expectation fails; then prints `error: ...` naming each
failed expectation with a few failing rows and exits with status 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ul.data.validate.gate import validate
from ul.stages import _cli


def main(argv=None) -> int:
    p = _cli.parser("validate", __doc__)
    p.add_argument("--raw", default="data/raw", help="fetched folder with manifest.csv (default: %(default)s)")
    p.add_argument("--decoded", default="data/pixels", help="decoded shard folder (default: %(default)s)")
    p.add_argument("--out", default="data/validation", help="results and Data Docs folder (default: %(default)s)")
    args = p.parse_args(argv)
    return _cli.run(
        args,
        lambda cfg: validate(
            Path(args.raw),
            Path(args.decoded),
            Path(args.out),
            cfg.data.resolution,
            cfg.data.channels,
            cfg.data.resize_mode,
            frames=cfg.data.frames,
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
