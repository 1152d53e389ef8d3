"""`ul-watch`: when a lakeFS branch gets a new head commit, pin it into the params and run ul-pipeline.

    python -m flows.watch lakefs://repo/main/images [--repo .] [override ...]

Each run asks lakeFS (LAKEFS_HOST and keys from the environment) for the branch's head commit and
compares it with the commit of the last successful run, kept in a Prefect Variable (default
`ul_watch_<hash of the source URL>`). When it moved, `data.source` becomes
`lakefs://repo/<commit>/path` in conf/config.yaml and params.yaml (`ul data pin`) and ul-pipeline runs
as a subflow; the Variable is only updated when that run completed, so a failed run is tried again
at the next check. Schedule it every N minutes (prefect.yaml, `python -m flows.serve`) with a
concurrency limit of 1, so a slow pipeline is never started twice.
"""

import hashlib
from datetime import UTC, datetime
from pathlib import Path

from prefect import flow, get_run_logger, runtime, task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff
from prefect.variables import Variable

from flows import common
from flows.pipeline import ul_pipeline
from ul.storage import lakefs as ul_lakefs


@task(
    name="lakefs-head",
    task_run_name="lakefs-head",
    cache_policy=NO_CACHE,
    timeout_seconds=120,
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=5),
    retry_condition_fn=common.retry_if_transient,
)
def branch_head(source: str) -> str:
    """The commit id the source's branch points to now."""
    return ul_lakefs.resolve(source)


@task(name="pin-data-source", task_run_name="pin-data-source", cache_policy=NO_CACHE, timeout_seconds=60)
def pin_source(source: str, repo: Path, commit: str) -> str:
    pinned = ul_lakefs.pin(source, repo / "conf" / "config.yaml", repo / "params.yaml", commit=commit)
    get_run_logger().info("data.source = %s (conf/config.yaml, params.yaml)", pinned)
    return pinned


def state_name(source: str) -> str:
    return "ul_watch_" + hashlib.sha256(source.encode()).hexdigest()[:12]


@flow(name="ul-watch")
def ul_watch(
    source: str,
    repo_dir: str = ".",
    state_variable: str | None = None,
    overrides: list[str] | None = None,
    stages: list[str] | None = None,
    push: bool | None = None,
    remote: str | None = None,
) -> dict:
    """Run ul-pipeline on the head commit of `source` (lakefs://repo/<branch>/path) if it moved.

    state_variable: the Prefect Variable holding the last commit run (default from the source URL);
    overrides, stages, push, remote: passed to ul-pipeline.
    """
    log = get_run_logger()
    loc = ul_lakefs.LakeFSPath.parse(source)
    if loc.pinned:
        raise ValueError(f"{source}: watch a branch, not a commit id")
    repo = common.repo_dir(repo_dir)
    name = state_variable or state_name(source)
    head = branch_head(source)
    last = Variable.get(name, default=None)
    last_commit = last.get("commit") if isinstance(last, dict) else last
    if last_commit == head:
        log.info("%s: head %s already run; nothing to do", source, head)
        return {"changed": False, "commit": head, "source": str(loc.at(head))}
    log.info("%s: head moved %s -> %s", source, last_commit or "(never run)", head)
    pinned = pin_source(source, repo, head)
    result = ul_pipeline(repo_dir=str(repo), overrides=overrides, stages=stages, push=push, remote=remote)
    Variable.set(
        name,
        {
            "commit": head,
            "source": pinned,
            "flow_run": str(runtime.flow_run.id),
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
        overwrite=True,
    )
    return {
        "changed": True,
        "commit": head,
        "source": pinned,
        "pipeline": {k: result[k] for k in ("stages", "ran", "pushed")},
    }


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="lakefs://repo/<branch>/path")
    p.add_argument("overrides", nargs="*", help="Hydra overrides for ul-pipeline, e.g. preset=ci")
    p.add_argument("--repo", default=str(common.REPO_ROOT))
    a = p.parse_args()
    ul_watch(a.source, a.repo, overrides=a.overrides or None)
