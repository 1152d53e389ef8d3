"""The Prefect flows against a real Prefect server on 127.0.0.1 (its own PREFECT_HOME and SQLite):
prefect.yaml deployed with `prefect deploy --all` and run by a process worker (an interval schedule
running the `ci` preset end to end), a re-run that finds every stage up to date and pushes to a DVC
remote that is down for the first attempt, ul-watch against lakeFS (prism for the REST API, moto
for the S3 gateway), and ul-sweep through DVC's queue. Runs, task runs, logs, artifacts and
variables are read back through the Prefect client. flows/serve.py: test_flows_serve.py.

The slow tests share one server, one worker and one clone (`deployed`) and run in file order: the
end-to-end run leaves the clone up to date, which the re-run/push test relies on, and which makes the
sweep's loss_factor=2.1 point a run-cache hit.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from datahelpers import class_folder
from PIL import Image
from project import CHEAP, copy_project, pending
from servers import (
    COMMIT,
    FINAL,
    ROOT,
    Link,
    Moto,
    PrefectServer,
    Prism,
    artifacts,
    cancel_unless_final,
    flow_runs_of,
    prism_binary,
    processes_in,
    run_deployment,
    schedules,
    subflow_runs,
    task_runs,
    wait_final,
    wait_logs,
    wait_until,
)

# The pipeline the flows run: the ci preset, cheaper still (the flows' mechanics are tested, not the numbers).
CI = ["preset=ci", *CHEAP]

sys.path.insert(0, str(ROOT))
from flows import common, progress  # noqa: E402
from ul.artifacts.model_card import HEADLINE  # noqa: E402
from ul.storage import StorageError  # noqa: E402

STAGES = [
    "source",
    "fetch",
    "pixels",
    "validate",
    "train_stage1",
    "cache_latents",
    "train_stage2",
    "i3d_weights",
    "evaluate",
]
KEYS = {"LAKEFS_ACCESS_KEY_ID": "AKIAUL-TEST", "LAKEFS_SECRET_ACCESS_KEY": "ul-test-secret-do-not-log"}


def no_leftovers(repo: Path, worker) -> None:
    """Nothing but the worker still runs in `repo` (a finished flow run's process exits a moment later)."""
    left = []

    def none_left():
        left[:] = [p for p in processes_in(repo) if p[0] != worker.pid]
        return not left

    try:
        wait_until(none_left, 30, "processes of finished runs exited")
    except TimeoutError:
        pytest.fail(f"still running in {repo}: {left}")


def sh(cmd: list, cwd: Path) -> str:
    out = subprocess.run([str(c) for c in cmd], cwd=cwd, env=common.subprocess_env(), capture_output=True, text=True)
    assert out.returncode == 0, f"{cmd}: {out.stdout}\n{out.stderr}"
    return out.stdout


# ---- fixtures: one server, the lakeFS stand-ins, one deployed clone with its worker ---------------


def _clone(dst):
    """A throw-away copy of the project (tests/project.py) to run pipelines in."""
    dst.mkdir(parents=True)
    return copy_project(dst)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.mktemp("flows")


@pytest.fixture(scope="module")
def server(base):
    srv = PrefectServer(base / "prefect-home")
    yield srv
    srv.stop()  # workers and serve processes first, then the server
    leftover = processes_in(base)
    for pid, _ in leftover:
        os.kill(pid, 9)
    assert not leftover, f"processes left running under {base}: {leftover}"


@pytest.fixture(scope="module")
def gateway():
    """moto standing in for lakeFS's S3 gateway (bucket = repository, key = <ref>/<path>)."""
    m = Moto().start()
    yield m
    m.stop()


@pytest.fixture(scope="module")
def prism(base):
    """The lakeFS REST API from its OpenAPI document (None when prism is not installed)."""
    if prism_binary() is None:
        yield None
        return
    p = Prism(base / "prism")
    yield p
    p.stop()


@pytest.fixture(scope="module")
def deployed(server, base, gateway, prism):
    """A clone with prefect.yaml deployed (`prefect deploy --all`) and a process worker on its pool."""
    repo = _clone(base / "repo")
    server.cli("work-pool", "create", "ul-process", "--type", "process", cwd=repo)
    server.cli("deploy", "--all", "--no-prompt", cwd=repo)
    with server.client() as c:
        deps = {n: c.read_deployment_by_name(n) for n in ("ul-pipeline/nightly", "ul-watch/watch", "ul-sweep/sweep")}
        as_deployed = {n: schedules(d) for n, d in deps.items()}
        for d in deps.values():  # no run of the real schedules during the tests (02:00 UTC, every 10 min)
            for s in d.schedules:
                c.delete_deployment_schedule(d.id, s.id)
    env = {
        **KEYS,
        "LAKEFS_ENDPOINT": gateway.url,
        "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
        "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
    }
    if prism is not None:
        env["LAKEFS_HOST"] = prism.url
    worker = server.worker("ul-process", repo, env)
    wait_until(
        lambda: "started" in worker.tail().lower() or "polling" in worker.tail().lower(),
        60,
        "worker started",
        alive=worker,
    )
    yield SimpleNamespace(repo=repo, deployments=deps, schedules=as_deployed, worker=worker)


# ---- fast: the command runner the tasks use ------------------------------------------------------


def test_run_streams_lines_and_classifies_failures(tmp_path):
    lines = []
    out = common.run(
        [sys.executable, "-c", "import sys; print('a'); sys.stdout.write('p1\\rp2\\n'); print('b')"],
        tmp_path,
        "lines",
        30,
        lines.append,
    )
    assert lines == ["a", "p1", "p2", "b"] and out == "a\np1\np2\nb"  # tqdm-style \r updates arrive as lines

    down = "print('ERROR: unexpected error - Could not connect to the endpoint URL: \"http://127.0.0.1:9/b\"'); raise SystemExit(255)"
    with pytest.raises(
        common.TransientFailure, match="push failed \\(exit 255\\): ERROR: unexpected error - Could not connect"
    ):
        common.run([sys.executable, "-c", down], tmp_path, "push", 30)
    corrupt = (
        "import sys; print('decode 3 img'); print('error: 1 unreadable image(s) in data/raw: train/cat/003.png "
        "(truncated PNG)', file=sys.stderr); sys.exit(1)"
    )
    with pytest.raises(common.CommandFailed, match="train/cat/003.png") as err:
        common.run([sys.executable, "-c", corrupt], tmp_path, "dvc repro pixels", 30)
    assert not err.value.transient

    def state(exc):
        def result():
            raise exc

        return SimpleNamespace(result=result)

    assert common.retry_if_transient(None, None, state(common.TransientFailure("x", 1, "")))
    assert not common.retry_if_transient(None, None, state(common.CommandFailed("x", 1, "")))
    assert not common.retry_if_transient(None, None, SimpleNamespace(result=lambda: None))
    assert common.retry_if_transient(None, None, state(StorageError("cannot reach lakeFS", transient=True)))
    assert not common.retry_if_transient(None, None, state(StorageError("lakefs://r/main: not found")))


BARS = """
import sys
from tqdm import tqdm
print('start')
for _ in tqdm(range(3000), desc='train', unit='step', mininterval=0): pass
for _ in tqdm(iter(range(800)), desc='hashing', unit='file', mininterval=0): pass
print('error: 1 odd file', file=sys.stderr)
with tqdm(total=10**7, unit='B', unit_scale=True, desc='download x.gz', mininterval=0) as bar:
    for _ in range(1000): bar.update(10**4)
print('done')
"""


def _bars(lines: list, name: str) -> list:
    return [ln for ln in lines if ln.startswith(name + ":") and progress.PROGRESS.match(ln)]


def test_progress_bars_are_logged_at_a_human_cadence(tmp_path):
    """Real tqdm bars refreshing thousands of times reach the log as a line per 10 %, the last state
    of a bar with no total when other output follows; every other line as it comes."""
    every = []  # what the run's log got before: every refresh (a cadence that lets all through)
    common.run(
        [sys.executable, "-c", BARS],
        tmp_path,
        "bars",
        60,
        every.append,
        cadence=progress.ProgressCadence(step_pct=0, interval_s=0),
    )
    assert len(_bars(every, "train")) > 1000 and len(every) > 2000

    logged, errors, live = [], [], io.StringIO()
    out = common.run([sys.executable, "-c", BARS], tmp_path, "bars", 60, logged.append, errors.append, live=live)
    train, hashing, download = _bars(logged, "train"), _bars(logged, "hashing"), _bars(logged, "download x.gz")
    assert [int(re.search(r"(\d+)%", ln)[1]) for ln in train] == list(range(0, 101, 10))
    assert len(download) <= 11 and "100%" in download[-1] and "10.0M/10.0M" in download[-1]
    assert len(hashing) == 2 and hashing[0].startswith("hashing: 0file") and hashing[1].startswith("hashing: 800file")
    both = out.splitlines()  # the log and the error log, in order
    assert both.index(hashing[1]) < both.index("error: 1 odd file")  # its last state before what follows
    assert errors == ["error: 1 odd file"] and logged[0] == "start" and logged[-1] == "done"
    assert len(both) <= 30 and [ln for ln in both if ln not in errors] == logged
    assert live.getvalue().count("\r") > 4000  # a terminal still sees every refresh


def test_progress_cadence_by_time_for_slow_bars():
    now = [0.0]
    c = progress.ProgressCadence(step_pct=10, interval_s=60, clock=lambda: now[0])
    got = []
    for i in range(10):  # a bar with no total, a refresh every 20 s: a line a minute
        got += c(f"hashing: {i}file [00:{i:02d}, 0.05file/s]")
        now[0] += 20
    assert got == [f"hashing: {i}file [00:{i:02d}, 0.05file/s]" for i in (0, 3, 6, 9)]
    got = []
    for i in range(0, 50):  # 1 % a second: the 10 % steps come first
        got += c(f"train:  {i:2d}%|#  | {i}/100 [00:{i:02d}<01:40, 1.00step/s]")
        now[0] += 1
    assert [int(re.search(r"(\d+)%", ln)[1]) for ln in got] == [0, 10, 20, 30, 40]
    assert c("plain line") == ["train:  49%|#  | 49/100 [00:49<01:40, 1.00step/s]", "plain line"]
    assert c.flush() == []
    assert not progress.PROGRESS.match("Running stage 'train_stage1':") and not progress.PROGRESS.match("a [1]")


def test_run_timeout_stops_the_whole_process_group(tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    code = (
        f"import subprocess, pathlib; p = subprocess.Popen(['sleep', '300']); "
        f"pathlib.Path({str(pidfile)!r}).write_text(str(p.pid)); p.wait()"
    )
    t0 = time.monotonic()
    with pytest.raises(common.CommandTimeout, match="ran past its 2 s limit"):
        common.run([sys.executable, "-c", code], tmp_path, "slow stage", 2)
    assert time.monotonic() - t0 < 20
    grandchild = int(pidfile.read_text())
    wait_until(
        lambda: (
            not Path(f"/proc/{grandchild}").exists() or Path(f"/proc/{grandchild}/stat").read_text().split()[2] == "Z"
        ),
        10,
        "grandchild stopped",
    )


def test_dvc_verdicts_are_parsed_per_stage():
    out = (
        "Stage 'fetch' didn't change, skipping\nRunning stage 'pixels':\n> python -m ul.stages.pixels\n"
        "Stage 'validate' is cached - skipping run, checking out outputs\nUpdating lock file 'dvc.lock'"
    )
    v = common.verdicts(out)
    assert v == {"fetch": "up to date", "pixels": "ran", "validate": "restored from run cache"}
    assert common.merge_verdicts({"pixels": "up to date"}, {"pixels": "ran", "x": "up to date"}) == {
        "pixels": "ran",
        "x": "up to date",
    }


def too_chatty_bars(logs: str, minutes: int) -> dict:
    """{bar: lines} for each progress bar that logged more than 12 lines per time it started, plus
    one a minute (the cadence: a line per 10 %, or per minute)."""
    from collections import Counter

    lines, starts = Counter(), Counter()
    for ln in logs.splitlines():
        m = progress.PROGRESS.match(progress.ANSI.sub("", ln).strip())
        if m:
            lines[m["desc"].strip()] += 1
            starts[m["desc"].strip()] += m["n"] in ("0", "0.00")
    return {bar: n for bar, n in lines.items() if n > 12 * max(1, starts[bar]) + minutes}


def test_grids_are_embedded_in_the_summary(tmp_path):
    from flows.pipeline import grids_markdown

    (tmp_path / "eval").mkdir()
    assert grids_markdown(tmp_path) == ""
    png = Image.new("L", (64, 32), 200)
    png.save(tmp_path / "eval" / "samples.png")
    (tmp_path / "eval" / "reconstructions.png").write_bytes(b"\x89PNG" + bytes(3 << 20))  # too large
    md = grids_markdown(tmp_path)
    (data,) = re.findall(r"!\[eval/samples\.png\]\(data:image/png;base64,([^)]+)\)", md)
    assert base64.b64decode(data) == (tmp_path / "eval" / "samples.png").read_bytes()
    assert "`eval/reconstructions.png`: 3.0 MB, too large to embed here" in md


# ---- the server, the worker and prefect.yaml ---------------------------------------------------


@pytest.mark.slow
def test_prefect_yaml_deploys_nightly_watch_and_sweep(deployed):
    s = deployed.schedules
    assert [(x["cron"], x["timezone"], x["active"]) for x in s["ul-pipeline/nightly"]] == [("0 2 * * *", "UTC", True)]
    assert [(x["interval"], x["active"]) for x in s["ul-watch/watch"]] == [(timedelta(minutes=10), True)]
    assert s["ul-sweep/sweep"] == []
    for name, dep in deployed.deployments.items():
        assert dep.work_pool_name == "ul-process"
        assert dep.pull_steps == [
            {"prefect.deployments.steps.set_working_directory": {"directory": str(deployed.repo.resolve())}}
        ], name
        assert dep.global_concurrency_limit.limit == 1, name  # the runs share one checkout
    strategy = {n: d.concurrency_options.collision_strategy.value for n, d in deployed.deployments.items()}
    assert strategy == {"ul-pipeline/nightly": "ENQUEUE", "ul-watch/watch": "CANCEL_NEW", "ul-sweep/sweep": "ENQUEUE"}
    assert deployed.deployments["ul-watch/watch"].parameters["source"].startswith("lakefs://")
    assert deployed.deployments["ul-pipeline/nightly"].entrypoint == "flows/pipeline.py:ul_pipeline"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_interval_schedule_runs_ci_pipeline_end_to_end(server, deployed):
    from prefect.client.schemas.schedules import IntervalSchedule

    repo = deployed.repo
    server.cli(
        "deploy",
        "--name",
        "nightly",
        "--no-prompt",
        "--interval",
        "600",
        "--params",
        json.dumps({"overrides": CI}),
        cwd=repo,
    )
    with server.client() as c:
        dep = c.read_deployment_by_name("ul-pipeline/nightly")
        for s in schedules(dep):  # keep only the new interval schedule, its next slot a few seconds away
            if s["cron"]:
                c.delete_deployment_schedule(dep.id, s["id"])
            else:
                anchor = datetime.now(UTC) + timedelta(seconds=8)
                c.update_deployment_schedule(
                    dep.id, s["id"], schedule=IntervalSchedule(interval=s["interval"], anchor_date=anchor)
                )
        run = wait_until(
            lambda: next(
                (r for r in flow_runs_of(c, dep.id) if r.state and r.state.type.value not in ("SCHEDULED",)), None
            ),
            120,
            "the scheduled run picked up by the worker",
            alive=deployed.worker,
        )
        assert run.auto_scheduled and run.parameters["overrides"] == CI
        for s in c.read_deployment(dep.id).schedules:  # no second run while this one is checked
            c.delete_deployment_schedule(dep.id, s.id)
        run = wait_final(c, run.id, 780, alive=deployed.worker)
        logs = wait_logs(c, run.id, "Running stage 'train_stage1'", "stage evaluate: ran")
        assert run.state.type.value == "COMPLETED", f"{run.state.message}\n{logs[-3000:]}"

        tasks = task_runs(c, run.id)
        assert {f"dvc-repro-{s}" for s in STAGES} | {"compose-params"} <= set(tasks)
        assert all(t.state.type.value == "COMPLETED" and t.run_count == 1 for t in tasks.values())
        assert "Running stage 'train_stage1'" in logs and "stage evaluate: ran" in logs  # streamed DVC output
        minutes = int(run.total_run_time.total_seconds() // 60) + 1
        assert "stage1: 100%" in logs and too_chatty_bars(logs, minutes) == {}  # progress at a human cadence

        arts = artifacts(c, run.id)
        summary = arts["ul-pipeline-summary"]
        metrics = json.loads((repo / "eval" / "metrics.json").read_text())
        assert "Stages run: " + ", ".join(STAGES) + "; up to date: none" in summary
        assert sh(["git", "rev-parse", "HEAD"], repo).strip() in summary
        assert hashlib.sha256((repo / "dvc.lock").read_bytes()).hexdigest() in summary
        assert "`builtin:fashion-mnist` (not a pinned lakeFS commit)" in summary
        assert f"| {dict(HEADLINE)['psnr_db']} | {metrics['psnr_db']:.4g} |" in summary and "| gFID |" in summary
        assert "not pushed (no DVC remote configured)" in summary
        grids = dict(re.findall(r"!\[(eval/\w+\.png)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", summary))
        assert set(grids) == {"eval/samples.png", "eval/reconstructions.png"}  # the grids themselves, embedded
        for rel, data in grids.items():
            assert base64.b64decode(data) == (repo / rel).read_bytes(), rel
        table = {r["metric"]: r["value"] for r in arts["ul-pipeline-metrics"]}
        for key in ("psnr_db", "rfid", "gfid", "fid_num_samples", "latent_bits_per_pixel"):
            assert table[key] == pytest.approx(metrics[key]), key
    assert yaml.safe_load((repo / "params.yaml").read_text())["preset"] == "ci"
    no_leftovers(repo, deployed.worker)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_rerun_is_up_to_date_and_push_is_retried_until_the_remote_is_up(server, deployed):
    repo = deployed.repo
    if not (repo / "eval" / "metrics.json").exists():
        pytest.fail("precondition: the end-to-end test above leaves the clone's pipeline up to date")
    remote = Moto()  # port chosen, server not started: the first push attempt finds nothing there
    add_remote(repo, "moto", "s3://ul-dvc/cache", remote.url)
    try:
        with server.client() as c:
            run = run_deployment("ul-pipeline/nightly", {"overrides": CI, "push": True, "retry_delay_s": 2.0})

            def push_failed_once():
                t = task_runs(c, run.id).get("dvc-push")
                return t is not None and (t.state_name in ("AwaitingRetry", "Retrying") or t.run_count >= 2)

            wait_until(push_failed_once, 240, "first dvc push attempt failed", alive=deployed.worker)
            remote.start()
            remote.s3().create_bucket(Bucket="ul-dvc")
            run = wait_final(c, run.id, 300, alive=deployed.worker)
            logs = wait_logs(c, run.id, "Could not connect to the endpoint URL", "stages run: ['source'];")
            assert run.state.type.value == "COMPLETED", f"{run.state.message}\n{logs[-3000:]}"
            push = task_runs(c, run.id)["dvc-push"]
            assert push.state.type.value == "COMPLETED" and push.run_count >= 2
            assert "Could not connect to the endpoint URL" in logs
            summary = artifacts(c, run.id)["ul-pipeline-summary"]
            assert "Stages run: source; up to date: " + ", ".join(STAGES[1:]) in summary  # source: always looked at
            assert "- DVC remote: pushed" in summary
        lock = yaml.safe_load((repo / "dvc.lock").read_text())
        model_md5 = next(o["md5"] for o in lock["stages"]["train_stage1"]["outs"] if o["path"] == "models/stage1")
        keys = remote.keys("ul-dvc")
        assert f"cache/files/md5/{model_md5[:2]}/{model_md5[2:]}" in keys, sorted(keys)[:5]
    finally:
        remote.stop()
        remove_remotes(repo)


def add_remote(repo: Path, name: str, url: str, endpoint: str) -> None:
    """The default DVC remote: S3 at `endpoint`, moto's keys in the git-ignored local config."""
    sh([*common.DVC, "remote", "add", "-d", name, url], repo)
    sh([*common.DVC, "remote", "modify", name, "endpointurl", endpoint], repo)
    sh([*common.DVC, "remote", "modify", "--local", name, "access_key_id", "testing"], repo)
    sh([*common.DVC, "remote", "modify", "--local", name, "secret_access_key", "testing"], repo)


def remove_remotes(repo: Path) -> None:
    (repo / ".dvc" / "config.local").unlink(missing_ok=True)
    sh(["git", "checkout", "--", ".dvc/config"], repo)


def tree_digest(folder: Path) -> dict:
    """{relative path: sha256} of every file under `folder`."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# How long the remote stays away: longer than botocore's retries of one file (at most 15 s of
# back-off), so some files fail, and far shorter than the whole push's remaining retries would take.
CUT_S = 30.0


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_remote_going_away_during_push_is_retried_and_nothing_is_lost(server, deployed):
    """The remote goes away mid-transfer (every connection reset, the port refusing) and comes back
    with what it had: the flow retries the push, the cache and workspace are untouched, and the
    retried push completes the remote."""
    repo = deployed.repo
    if not (repo / "eval" / "metrics.json").exists():
        pytest.fail("precondition: the end-to-end test above leaves the clone's pipeline up to date")
    moto = Moto().start()
    moto.s3().create_bucket(Bucket="ul-dvc-cut")
    link = Link(moto.port, bytes_per_s=1e6).mend()  # the raw data is a few tar shards: slow the push to cut it
    add_remote(repo, "flaky", "s3://ul-dvc-cut/cache", link.url)
    cache, workspace = tree_digest(repo / ".dvc" / "cache"), sh(["git", "status", "--porcelain"], repo)
    with server.client():
        run = run_deployment("ul-pipeline/nightly", {"overrides": CI, "push": True, "retry_delay_s": 2.0})
    try:
        with server.client() as c:
            at_cut = wait_until(lambda: len(moto.keys("ul-dvc-cut")), 240, "push uploading", 0.02, deployed.worker)
            link.cut()
            time.sleep(CUT_S)
            link.mend()
            run = wait_final(c, run.id, 300, alive=deployed.worker)
            logs = wait_logs(c, run.id, "files failed to upload", "stages run: ['source'];")
            assert run.state.type.value == "COMPLETED", f"{run.state.message}\n{logs[-3000:]}"
            push = task_runs(c, run.id)["dvc-push"]
            assert push.state.type.value == "COMPLETED" and push.run_count >= 2, logs[-3000:]
            assert "- DVC remote: pushed" in artifacts(c, run.id)["ul-pipeline-summary"]
        assert 0 < at_cut < len(moto.keys("ul-dvc-cut"))  # the cut came mid-push
        assert tree_digest(repo / ".dvc" / "cache") == cache
        assert sh(["git", "status", "--porcelain"], repo) == workspace
        assert pending(repo) == {}
        assert "Cache and remote 'flaky' are in sync" in sh([*common.DVC, "status", "--cloud"], repo)
        assert "Everything is up to date" in sh([*common.DVC, "push"], repo)
    finally:
        with server.client() as c:
            cancel_unless_final(c, run.id)
        link.cut()
        moto.stop()
        remove_remotes(repo)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_watch_pins_the_new_head_commit_and_runs_the_pipeline_once(server, deployed, prism, gateway, base):
    if prism is None:
        pytest.skip("prism (the lakeFS API mock) is not installed: run `npm ci --prefix tools` (needs node/npm)")
    from prefect.client.schemas.actions import VariableCreate

    repo = _clone(base / "watch-repo")
    images = class_folder(base / "lakefs-images", per_class=12)
    s3 = gateway.s3()
    s3.create_bucket(Bucket="ul-data")
    for f in sorted(p for p in images.rglob("*") if p.is_file()):
        s3.put_object(Bucket="ul-data", Key=f"{COMMIT}/images/{f.relative_to(images).as_posix()}", Body=f.read_bytes())
    params = {
        "source": "lakefs://ul-data/main/images",
        "repo_dir": str(repo),
        "state_variable": "ul_watch_test",
        "stages": ["fetch"],
    }
    pinned = f"lakefs://ul-data/{COMMIT}/images"
    with server.client() as c:
        c.create_variable(VariableCreate(name="ul_watch_test", value={"commit": "0" * 64}))  # an older head
        run = wait_final(c, run_deployment("ul-watch/watch", params).id, 180, alive=deployed.worker)
        logs = wait_logs(c, run.id, "head moved")
        assert run.state.type.value == "COMPLETED", f"{run.state.message}\n{logs[-3000:]}"
        assert f"head moved {'0' * 64} -> {COMMIT}" in logs
        subs = subflow_runs(c, run.id)
        assert [s.state.type.value for s in subs] == ["COMPLETED"]  # one ul-pipeline subflow
        assert c.read_variable_by_name("ul_watch_test").value["commit"] == COMMIT

        for f in ("conf/config.yaml", "params.yaml"):
            assert yaml.safe_load((repo / f).read_text())["data"]["source"] == pinned, f
        fetched = json.loads((repo / "metrics" / "fetch.json").read_text())
        assert fetched["source"] == pinned and sum(fetched["images"].values()) == 24
        lock = yaml.safe_load((repo / "dvc.lock").read_text())
        assert lock["stages"]["fetch"]["params"]["params.yaml"]["data.source"] == pinned  # DVC's hash names the commit
        assert "/api/v1/repositories/ul-data/commits/main" in prism.requests()

        again = wait_final(c, run_deployment("ul-watch/watch", params).id, 120, alive=deployed.worker)
        assert again.state.type.value == "COMPLETED"
        assert "already run; nothing to do" in wait_logs(c, again.id, "already run; nothing to do")
        assert subflow_runs(c, again.id) == []
    assert KEYS["LAKEFS_SECRET_ACCESS_KEY"] not in logs


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sweep_queues_a_grid_and_plots_rate_distortion(server, deployed):
    from PIL import Image

    repo = deployed.repo
    with server.client() as c:
        run = run_deployment(
            "ul-sweep/sweep", {"grid": {"unified.loss_factor": [1.5, 2.1]}, "overrides": CI, "name": "t-sweep"}
        )
        try:
            run = wait_final(c, run.id, 840, alive=deployed.worker)
        finally:
            if c.read_flow_run(run.id).state.type.value not in FINAL:  # never leave DVC's queue running
                sh([*common.DVC, "queue", "stop", "--kill"], repo)
        logs = wait_logs(c, run.id, "Running stage 'train_stage1'", "Reproducing experiment 't-sweep-01'")
        assert run.state.type.value == "COMPLETED", f"{run.state.message}\n{logs[-3000:]}"
        assert "Running stage 'train_stage1'" in logs and "Reproducing experiment 't-sweep-01'" in logs
        rows = artifacts(c, run.id)["ul-sweep-results"]
    assert [(r["experiment"], r["unified.loss_factor"], r["state"]) for r in rows] == [
        ("t-sweep-00", "1.5", "success"),
        ("t-sweep-01", "2.1", "success"),
    ]
    for r in rows:
        assert 0 < r["psnr_db"] < 60 and r["latent_bits_per_pixel"] > 0 and r["gfid"] > 0, r
    assert rows[0]["psnr_db"] != rows[1]["psnr_db"]  # two different models, not one result twice
    png = repo / "plots" / "t-sweep.png"
    w, h = Image.open(png).size  # two panels side by side (ul.results.report.plot_panels)
    assert w > 2 * h and h > 300, (w, h)
    shown = json.loads(sh([*common.DVC, "exp", "show", "--json"], repo))
    names = {e.get("name") for b in shown for e in (b.get("experiments") or [])}
    assert {"t-sweep-00", "t-sweep-01"} <= names
    no_leftovers(repo, deployed.worker)  # DVC's queue worker included
