"""`ul results`: the studies of docs/results (rate-distortion, λ(0), UL vs KL-VAE, bitrate targets).

    ul results run [--study NAME] [--force]    run the missing DVC experiments, one at a time
    ul results report [--out docs/results]     write the tables and plots from `dvc exp show --json`

Each point is a DVC experiment at the `sweep` preset (`dvc exp show` lists them; `dvc exp apply
<name>` restores one). `run` works in the current DVC workspace and leaves the last point applied
there; run it on a quiet machine (about 8 minutes a point on 2 cores, 17 points).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from ul.results import studies


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="ul results", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--repo", default=".", help="DVC repository (default: %(default)s)")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the studies' missing DVC experiments")
    r.add_argument("--study", choices=sorted(studies.STUDIES), help="one study only (default: all)")
    r.add_argument("--force", action="store_true", help="run every point again, replacing experiments of the same name")
    r.add_argument(
        "--preset", default="sweep", help="preset of every point (default: %(default)s; ci checks the mechanics)"
    )
    w = sub.add_parser("report", help="write the tables and plots from the finished experiments")
    w.add_argument("--out", default="docs/results", help="output folder (default: %(default)s)")
    args = p.parse_args(argv)
    repo = Path(args.repo)
    try:
        if args.cmd == "run":
            from ul.results import run

            failed = run.run(repo, args.study, args.force, f"preset={args.preset}")
            if failed:
                print(f"error: experiments failed: {', '.join(failed)}", file=sys.stderr)
                return 1
            return 0
        from ul.results import report

        exps = report.load(repo)
        print(f"wrote {report.write(exps, repo / args.out)} ({len(exps)} of {len(studies.POINTS)} points)")
        return 0
    except subprocess.CalledProcessError as err:
        last = (err.stderr or "").strip().splitlines()[-1:] or [f"exit {err.returncode}"]
        print(f"error: {' '.join(err.cmd[2:4])}: {last[0]}", file=sys.stderr)
        return 1
