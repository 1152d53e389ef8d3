"""`ul results`: the studies of docs/results (rate-distortion, λ(0), UL vs KL-VAE, bitrate targets).

    ul results run [--study NAME] [--force]    run the missing DVC experiments, one at a time
    ul results report [--out docs/results]     write the markdown and plots from `dvc exp show --json`

Each point is a DVC experiment at the `sweep` preset (`dvc exp show` lists them; `dvc exp apply
<name>` restores one). `run` works in the current DVC workspace and leaves the last point applied
there; run it on a quiet machine (wall times are reported).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ul.results import studies


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="ul results", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the studies' missing DVC experiments")
    r.add_argument("--study", choices=sorted(studies.STUDIES), help="one study only (default: all)")
    r.add_argument("--force", action="store_true", help="run every point again, replacing experiments of the same name")
    r.add_argument("--repo", default=".", help="DVC repository (default: %(default)s)")
    args = p.parse_args(argv)
    if args.cmd == "run":
        from ul.results import run

        failed = run.run(Path(args.repo), args.study, args.force)
        if failed:
            print(f"error: experiments failed: {', '.join(failed)}", file=sys.stderr)
            return 1
    return 0
