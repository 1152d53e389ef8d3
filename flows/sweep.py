"""`ul-sweep`: a grid of DVC experiments, run from DVC's queue, gathered into a table and a
rate-distortion plot.

    python -m flows.sweep unified.loss_factor=1.3,1.5,1.7,1.9,2.1 [--set preset=ci] [--jobs 1]

Each point of the grid is queued as `dvc exp run --queue --name <sweep>-NN -S key=value ...`, the
queue is run with `dvc exp run --run-all` (its logs streamed to the run's log), and `dvc exp show
--json` is read back. Artifacts: `ul-sweep-results` (table: swept params, PSNR, rFID, gFID, latent
bits) and `ul-sweep-summary` (markdown); the plot (latent bits per pixel against PSNR and against
gFID) is written as a PNG (default plots/<sweep>.png). Experiments stay in DVC: `dvc exp show`,
`dvc exp apply <name>`.
"""

import itertools
import json
from pathlib import Path

from prefect import flow, get_run_logger, runtime, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows import common
from ul.common import bounded
from ul.results import report, studies

RESULTS_KEY, SUMMARY_KEY = "ul-sweep-results", "ul-sweep-summary"
METRICS = ("psnr_db", "rfid", "gfid", "latent_bits_per_pixel", "latent_bits_per_dim", "fid_num_samples")


def grid_points(grid: dict) -> list:
    """The cartesian product of `grid` ({key: [values]}) as lists of `key=value` overrides."""
    keys = list(grid)
    return [[f"{k}={_value(v)}" for k, v in zip(keys, combo)] for combo in itertools.product(*(grid[k] for k in keys))]


def _value(v) -> str:
    return json.dumps(v) if isinstance(v, (list, dict, bool)) or v is None else str(v)


@task(name="queue-experiment", task_run_name="queue-{name}", cache_policy=NO_CACHE, timeout_seconds=600)
def queue_experiment(repo: Path, name: str, sets: list) -> None:
    log = get_run_logger()
    common.run([*common.DVC, *studies.exp_run(name, sets, queue=True)], repo, f"queue {name}", 600, log.info, log.error)


@task(name="run-queue", task_run_name="run-queue", cache_policy=NO_CACHE)
def run_queue(repo: Path, jobs: int, timeout_s: float) -> None:
    """`dvc exp run --run-all`: start queue workers, follow every queued experiment's log until done."""
    log = get_run_logger()
    stop = ["--kill"]  # DVC's queue workers are daemons: never leave them running behind a failed run
    try:
        common.run(
            [*common.DVC, "exp", "run", "--run-all", "--jobs", str(jobs)],
            repo,
            "dvc exp run --run-all",
            timeout_s,
            log.info,
            log.error,
        )
        stop = []  # done: the idle workers just need to exit
    finally:
        common.run([*common.DVC, "queue", "stop", *stop], repo, "dvc queue stop", 120, log.info, log.error)


@task(name="exp-show", task_run_name="exp-show", cache_policy=NO_CACHE, timeout_seconds=600)
def exp_show(repo: Path) -> list:
    log = get_run_logger()
    out = common.run([*common.DVC, "exp", "show", "--json"], repo, "dvc exp show --json", 600, log.debug)
    return bounded.load_json(out, "dvc exp show --json", max_depth=64)


def collect(show: list, names: dict) -> list:
    """Rows {experiment, <swept params>, <metrics>, state} for the experiments named in `names`
    ({name: [key=value, ...]}) from `dvc exp show --json`."""
    shown = report.parse_show(show)
    rows = []
    for name, point in names.items():
        e = shown.get(name)
        if e is None:
            rows.append({"experiment": name, "state": "missing"})
            continue
        swept = {s.split("=", 1)[0]: s.split("=", 1)[1] for s in point}
        rows.append({"experiment": name, "state": e["state"], **swept, **{m: e["metrics"].get(m) for m in METRICS}})
    return rows


def plot(rows: list, swept: list, path: Path) -> Path | None:
    """Latent bits per pixel against PSNR and against gFID, one point per experiment (the studies'
    plotting, ul.results.report.plot_panels)."""
    pts = [r for r in rows if r.get("latent_bits_per_pixel") is not None]
    if not pts:
        return None
    panels = []
    for metric, label in (("psnr_db", "PSNR (dB) ↑"), ("gfid", "gFID ↓")):
        xy = sorted(
            ((r["latent_bits_per_pixel"], r[metric], r) for r in pts if r.get(metric) is not None), key=lambda p: p[:2]
        )
        notes = [", ".join(f"{k.split('.')[-1]}={r[k]}" for k in swept) for _, _, r in xy]
        panels.append(("latent bits per pixel", label, [("UL", [p[0] for p in xy], [p[1] for p in xy], notes)], False))
    n = pts[0].get("fid_num_samples")
    return report.plot_panels(
        path, panels, "Unified Latents sweep: rate vs distortion" + (f" (FID N={n})" if n else "")
    )


@flow(name="ul-sweep")
def ul_sweep(
    grid: dict[str, list] | None = None,
    overrides: list[str] | None = None,
    repo_dir: str = ".",
    name: str | None = None,
    jobs: int = 1,
    plot_path: str | None = None,
    timeout_s: float = 7 * 24 * 3600.0,
) -> dict:
    """Queue one DVC experiment per point of `grid` (default unified.loss_factor 1.3 … 2.1), run the queue,
    and report a table and a rate-distortion plot.

    overrides: set on every experiment (e.g. ["preset=ci"]); name: experiment name prefix (default
    sweep-<run id>); plot_path: PNG path relative to repo_dir (default plots/<name>.png).
    """
    log = get_run_logger()
    repo = common.repo_dir(repo_dir)
    grid = grid or {"unified.loss_factor": [1.3, 1.5, 1.7, 1.9, 2.1]}
    prefix = name or f"sweep-{str(runtime.flow_run.id or 'local')[:8]}"
    names = {f"{prefix}-{i:02d}": point for i, point in enumerate(grid_points(grid))}
    for point in names.values():  # DVC resolves `${...}` itself when it composes params.yaml: refuse first
        common.refuse_interpolations([*(overrides or []), *point])
    for exp, point in names.items():
        queue_experiment(repo, exp, [*(overrides or []), *point])
    log.info("queued %d experiments: %s", len(names), ", ".join(names))
    run_queue(repo, jobs, timeout_s)
    rows = collect(exp_show(repo), names)
    swept = list(grid)
    out = plot(rows, swept, repo / (plot_path or f"plots/{prefix}.png"))
    table = [{k: r.get(k) for k in ("experiment", *swept, *METRICS, "state")} for r in rows]
    create_table_artifact(key=RESULTS_KEY, table=table, description=f"ul-sweep {prefix}: dvc exp show")
    lines = "".join(
        f"| {r['experiment']} | "
        + " | ".join(str(r.get(k)) for k in swept)
        + " | "
        + " | ".join(f"{r[m]:.4g}" if isinstance(r.get(m), float) else str(r.get(m)) for m in METRICS[:4])
        + f" | {r.get('state')} |\n"
        for r in rows
    )
    create_markdown_artifact(
        key=SUMMARY_KEY,
        description=f"ul-sweep {prefix}",
        markdown=(
            f"# ul-sweep {prefix}\n\nOverrides on every experiment: `{' '.join(overrides or []) or 'none'}`\n\n"
            f"| experiment | {' | '.join(swept)} | PSNR dB | rFID | gFID | latent bits/px | state |\n"
            f"|---|{'---|' * len(swept)}---|---|---|---|---|\n{lines}\n"
            f"Rate-distortion plot: `{out or 'none (no experiment finished)'}`. "
            f"Apply one: `dvc exp apply <experiment>`.\n"
        ),
    )
    failed = [r["experiment"] for r in rows if r.get("state") != "success" or r.get("psnr_db") is None]
    if len(failed) == len(rows):
        raise RuntimeError(f"no experiment of the sweep finished: {', '.join(failed)}")
    if failed:
        log.warning("experiments that did not finish: %s", ", ".join(failed))
    return {"name": prefix, "rows": table, "plot": str(out) if out else None, "failed": failed}


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("grid", nargs="+", help="key=v1,v2,... (numbers are parsed), one per swept key")
    p.add_argument("--set", action="append", dest="overrides", help="override on every experiment, e.g. preset=ci")
    p.add_argument("--repo", default=str(common.REPO_ROOT))
    p.add_argument("--jobs", type=int, default=1)
    a = p.parse_args()
    g = {
        k: [json.loads(x) if x.replace(".", "", 1).lstrip("-").isdigit() else x for x in v.split(",")]
        for k, v in (s.split("=", 1) for s in a.grid)
    }
    ul_sweep(g, a.overrides, a.repo, jobs=a.jobs)
