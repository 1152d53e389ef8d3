"""Fetch stage: bring `data.source` into a raw folder of encoded images plus `manifest.csv`.

    python -m ul.stages.fetch [--params params.yaml] [--out data/raw] [--metrics metrics/fetch.json]

Reads data.source, data.sha256 (required for https archives), data.max_train, data.max_test, data.shard_mb,
data.frames (> 0: videos, not images) and data.moving_mnist (builtin:moving-mnist).
Sources: builtin:fashion-mnist | builtin:mnist | builtin:moving-mnist | file:///dir | https://…/x.tar.gz (.tgz .tar .zip)
| s3://bucket/prefix (AWS_ENDPOINT_URL or S3_ENDPOINT_URL, AWS_* keys) | lakefs://repo/ref/path
(the S3 gateway at LAKEFS_ENDPOINT, else LAKEFS_HOST; LAKEFS_ACCESS_KEY_ID, LAKEFS_SECRET_ACCESS_KEY).
The output is written all-or-nothing; errors print `error: ...` and exit with status 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ul.data.fetch.sources import fetch
from ul.stages import _cli


def main(argv=None) -> int:
    p = _cli.parser("fetch", __doc__)
    p.add_argument("--out", default="data/raw", help="raw output folder (default: %(default)s)")
    args = p.parse_args(argv)
    return _cli.run(
        args,
        lambda cfg: fetch(
            cfg.data.source,
            Path(args.out),
            cfg.data.sha256,
            cfg.data.max_train,
            cfg.data.max_test,
            frames=cfg.data.frames,
            shard_mb=cfg.data.shard_mb,
            moving_mnist=cfg.data.moving_mnist,
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
