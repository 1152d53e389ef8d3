"""Serve the three flows from this checkout on one box, no work pool or worker needed.

    python -m flows.serve                                   # ul-pipeline nightly at 02:00 UTC, ul-sweep on demand
    python -m flows.serve --watch lakefs://data/main/images --watch-every 10
    python -m flows.serve --interval 3600 --set preset=ci   # hourly ci-preset runs (from now; --anchor ISO-time)

Runs execute in this checkout, one at a time (--limit), as subprocesses of this process; stop it
with Ctrl-C / SIGTERM (its schedules are paused on the way out). For several machines use the
work-pool route instead: prefect.yaml + `prefect deploy --all` + `prefect worker start`.
"""

import argparse
import json
import os
from datetime import datetime, timedelta
from pathlib import Path

from prefect import serve
from prefect.schedules import Interval

from flows.pipeline import ul_pipeline
from flows.sweep import ul_sweep
from flows.watch import ul_watch

_ROOT = Path(__file__).resolve().parents[1]


def deployments(args) -> list:
    repo = str(_ROOT)
    params = {"repo_dir": repo, **({"overrides": args.set} if args.set else {})}
    params.update({k: json.loads(v) for k, v in (p.split("=", 1) for p in args.pipeline_param or [])})
    if args.interval:
        anchor = datetime.fromisoformat(args.anchor) if args.anchor else None
        when = {"schedules": [Interval(timedelta(seconds=args.interval), anchor_date=anchor)]}
    else:
        when = {"cron": args.cron}
    out = [
        ul_pipeline.to_deployment(
            name="nightly",
            parameters=params,
            concurrency_limit=1,
            description="The DVC pipeline, stage by stage, then dvc push",
            **when,
        ),
        ul_sweep.to_deployment(
            name="sweep",
            parameters={"repo_dir": repo},
            description="A grid of DVC experiments and a rate-distortion plot (run on demand)",
        ),
    ]
    if args.watch:
        out.append(
            ul_watch.to_deployment(
                name="watch",
                interval=timedelta(minutes=args.watch_every),
                concurrency_limit=1,
                parameters={"source": args.watch, "repo_dir": repo, **({"overrides": args.set} if args.set else {})},
                description="Pin a lakeFS branch's new head commit and run ul-pipeline on it",
            )
        )
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cron", default="0 2 * * *", help="ul-pipeline schedule (default: %(default)s, UTC)")
    p.add_argument("--interval", type=float, help="ul-pipeline every N seconds instead of --cron")
    p.add_argument(
        "--anchor", help="ISO time the --interval is counted from (default: now), e.g. 2026-01-01T03:00+00:00"
    )
    p.add_argument("--set", action="append", help="Hydra override for ul-pipeline and ul-watch runs, e.g. preset=ci")
    p.add_argument("--pipeline-param", action="append", metavar="KEY=JSON", help="another ul-pipeline parameter")
    p.add_argument("--watch", metavar="LAKEFS_URL", help="serve ul-watch on lakefs://repo/<branch>/path")
    p.add_argument(
        "--watch-every", type=float, default=10.0, help="ul-watch interval in minutes (default: %(default)s)"
    )
    p.add_argument(
        "--limit", type=int, default=1, help="flow runs at once (default: %(default)s: they share the checkout)"
    )
    args = p.parse_args(argv)
    os.chdir(_ROOT)
    serve(*deployments(args), limit=args.limit)


if __name__ == "__main__":
    main()
