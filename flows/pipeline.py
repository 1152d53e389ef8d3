"""`ul-pipeline`: the DVC pipeline as Prefect tasks, one per stage of dvc.yaml, then `dvc push`.

    python -m flows.pipeline [--repo .] [--push] [override ...]     # one run, e.g. `preset=ci`

Each task runs `dvc repro <stage>`: DVC decides whether the stage re-runs, and the flow reports its
verdict (ran / restored from run cache / up to date). Output is streamed line by line to the run's
log. Failures on network or remote I/O are retried with exponential back-off; any other failure
(a corrupt image, a NaN loss) fails the run at once with the stage's own error line. Every task has
a time limit and `cache_policy=NO_CACHE` (they are side effects). Artifacts: `ul-pipeline-summary`
(markdown: metrics, the sample and reconstruction grids, stages, git commit, dvc.lock hash, data
commit) and `ul-pipeline-metrics` (table).
"""

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from flows import common
from ul.artifacts.bundle import provenance
from ul.artifacts.model_card import load_metrics, metrics_rows, metrics_table, provenance_lines

SUMMARY_KEY, METRICS_KEY = "ul-pipeline-summary", "ul-pipeline-metrics"
GRIDS = (
    ("Samples", "eval/samples.png"),
    ("Reconstructions (each original left of its reconstruction)", "eval/reconstructions.png"),
)
MAX_EMBED_BYTES = 2 << 20  # a grid larger than this is named, not embedded


@task(name="compose-params", task_run_name="compose-params", cache_policy=NO_CACHE, timeout_seconds=300)
def compose_params(repo: Path, overrides: list) -> None:
    """`ul params <overrides>`: compose conf/ into params.yaml (what `dvc exp run -S` would do)."""
    log = get_run_logger()
    common.run([*common.UL, "params", *overrides], repo, "ul params " + " ".join(overrides), 300, log.info, log.error)


@task(name="dvc-repro", task_run_name="dvc-repro-{stage}", cache_policy=NO_CACHE)
def repro_stage(repo: Path, stage: str, timeout_s: float) -> dict:
    """`dvc repro <stage>`; returns DVC's verdict on every stage it looked at."""
    log = get_run_logger()
    out = common.run([*common.DVC, "repro", stage], repo, f"dvc repro {stage}", timeout_s, log.info, log.error)
    found = common.verdicts(out)
    log.info("stage %s: %s", stage, found.get(stage, "no verdict in DVC's output"))
    return found


@task(name="dvc-push", task_run_name="dvc-push", cache_policy=NO_CACHE)
def dvc_push(repo: Path, remote: str, timeout_s: float) -> str:
    log = get_run_logger()
    return common.run(
        [*common.DVC, "push", "-r", remote], repo, f"dvc push -r {remote}", timeout_s, log.info, log.error
    )


def grids_markdown(repo: Path) -> str:
    """The evaluation's image grids as markdown images with data URIs: the artifact carries them, so
    the Prefect UI shows them with no file server and they stay with the run."""
    import base64

    parts = []
    for title, rel in GRIDS:
        path = Path(repo) / rel
        if not path.is_file():
            continue
        data = path.read_bytes()
        if len(data) > MAX_EMBED_BYTES:
            parts.append(f"### {title}\n\n`{rel}`: {len(data) / 2**20:.1f} MB, too large to embed here\n")
        else:
            parts.append(f"### {title}\n\n![{rel}](data:image/png;base64,{base64.b64encode(data).decode('ascii')})\n")
    return "\n## Images\n\n" + "\n".join(parts) if parts else ""


def _summary(
    prov: dict, stages: dict, order: list, selected: list, pushed, metrics: dict, failure: str | None, images: str = ""
) -> str:
    """The run's markdown artifact: metrics, each stage's verdict, provenance, push."""
    rows = "".join(
        f"| {s} | {stages.get(s) or ('not reached' if s in selected else 'not selected')} |\n" for s in order
    )
    ran = [s for s in order if stages.get(s) == "ran"]
    head = (
        (f"**FAILED**: {failure}\n\n" if failure else "")
        + f"Stages run: {', '.join(ran) or 'none'}; up to date: "
        + (", ".join(s for s in order if stages.get(s) in ("up to date", "restored from run cache")) or "none")
        + "\n\n"
    )
    push = {True: "pushed", False: "not pushed (no DVC remote configured)", None: "not attempted"}.get(pushed, pushed)
    return (
        "# ul-pipeline\n\n"
        + head
        + "## Metrics (eval/metrics.json)\n\n"
        + metrics_table(metrics)
        + images
        + "\n## Stages\n\n| stage | DVC |\n|---|---|\n"
        + rows
        + "\n## Provenance\n\n"
        + provenance_lines(prov)
        + f"- DVC remote: {push}\n"
    )


@flow(name="ul-pipeline")
def ul_pipeline(
    repo_dir: str = ".",
    overrides: list[str] | None = None,
    stages: list[str] | None = None,
    push: bool | None = None,
    remote: str | None = None,
    retries: int = 3,
    retry_delay_s: float = 10.0,
    stage_timeout_s: float = 24 * 3600.0,
    push_timeout_s: float = 3600.0,
) -> dict:
    """Reproduce the DVC pipeline in `repo_dir` stage by stage, then push its outputs.

    overrides: Hydra overrides composed into params.yaml first (`ul params ...`), e.g. ["preset=ci"];
        none: params.yaml is used as it is.
    stages: a subset of dvc.yaml's stages (DVC still brings their upstream up to date); none: all.
    push: push to the DVC remote; None pushes when one is configured (`remote`, else the default one).
    retries, retry_delay_s: retries of a task that failed on network or remote I/O, with
        exponential back-off starting at retry_delay_s.
    """
    log = get_run_logger()
    repo = common.repo_dir(repo_dir)
    order = common.dvc_stages(repo)
    selected = order if stages is None else [s for s in order if s in stages]
    unknown = sorted(set(stages or ()) - set(order))
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; dvc.yaml has {order}")
    backoff = dict(
        retries=retries,
        retry_delay_seconds=exponential_backoff(backoff_factor=retry_delay_s),
        retry_jitter_factor=0.2,
        retry_condition_fn=common.retry_if_transient,
    )

    verdicts: dict = {}
    pushed = failure = current = target = None
    try:
        if overrides:
            compose_params(repo, list(overrides))
        for current in selected:
            repro = repro_stage.with_options(timeout_seconds=stage_timeout_s + 60, **backoff)
            common.merge_verdicts(verdicts, repro(repo, current, stage_timeout_s))
        current = None
        target = remote or common.default_remote(repo)
        if push is True and not target:
            raise ValueError("push=True but no DVC remote is configured (dvc remote add -d ...) and none was given")
        if push is not False and target:
            dvc_push.with_options(timeout_seconds=push_timeout_s + 60, **backoff)(repo, target, push_timeout_s)
            pushed = True
        elif push is None:
            pushed = False
    except BaseException as err:
        failure = str(err) or type(err).__name__
        if current:
            verdicts[current] = "FAILED"
        raise
    finally:
        prov = provenance(repo)
        metrics = load_metrics(repo) if not failure else {}
        images = grids_markdown(repo) if not failure else ""
        summary = _summary(prov, verdicts, order, selected, pushed, metrics, failure, images)
        create_markdown_artifact(
            key=SUMMARY_KEY, markdown=summary, description="ul-pipeline: stages, metrics, provenance"
        )
        if metrics:
            create_table_artifact(key=METRICS_KEY, table=metrics_rows(metrics), description="eval/metrics.json")
    ran = [s for s in order if verdicts.get(s) == "ran"]
    log.info("stages run: %s; up to date: %s", ran or "none", [s for s in selected if s not in ran] or "none")
    return {
        "stages": {s: verdicts.get(s) for s in selected},
        "ran": ran,
        "pushed": pushed,
        "remote": target,
        "metrics": metrics,
        "provenance": prov,
    }


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", help="Hydra overrides for params.yaml, e.g. preset=ci")
    p.add_argument("--repo", default=str(common.REPO_ROOT))
    p.add_argument("--stage", action="append", dest="stages", help="run only these stages (repeatable)")
    p.add_argument("--push", action="store_true", default=None)
    a = p.parse_args()
    ul_pipeline(a.repo, a.overrides or None, a.stages, a.push)
