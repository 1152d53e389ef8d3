"""Source stage: what `data.source` holds now, as one fingerprint that `fetch` depends on.

    python -m ul.stages.source [--params params.yaml] [--out data/source.json]

Reads data.source, data.sha256 and data.frames. Writes data/source.json: the source (credentials
removed), its kind, its number of files and bytes, and a SHA-256 over every file's path, size and
content hash (for a bucket: its keys, sizes and ETags; ul.data.fetch.fingerprint). DVC runs this
stage on every `dvc repro` (always_changed), and re-runs fetch only when the fingerprint changed:
a folder or bucket whose files were added, removed, edited or renamed is fetched again, an unchanged
one is not. File hashes are cached in data/source.cache.json (not a DVC output), so an unchanged
folder costs a listing and a stat per file, and a file whose mtime alone moved is read once.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ul.data.fetch.fingerprint import fingerprint
from ul.stages import _cli


def main(argv=None) -> int:
    p = _cli.parser("source", __doc__)
    p.set_defaults(metrics="data/source.json")
    p.add_argument("--cache", default="data/source.cache.json", help="file hash cache (default: %(default)s)")
    args = p.parse_args(argv)
    return _cli.run(args, lambda cfg: fingerprint(cfg.data.source, cfg.data.sha256, cfg.data.frames, Path(args.cache)))


if __name__ == "__main__":
    sys.exit(main())
