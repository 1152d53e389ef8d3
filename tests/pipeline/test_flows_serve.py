"""`flows/serve.py` against a real Prefect server on 127.0.0.1: an interval schedule served from a
clone runs ul-pipeline on data with one truncated PNG; the run ends FAILED, its state and logs carry
the pixels stage's own message, and the failure is not retried (it is not transient). Its own
server, so that `serve` and the prefect.yaml worker of test_flows.py never share deployment names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from datahelpers import class_folder
from project import copy_project
from servers import (
    BIN,
    PrefectServer,
    artifacts,
    flow_runs_of,
    processes_in,
    task_runs,
    wait_final,
    wait_logs,
    wait_until,
)


def _clone(dst):
    """A throw-away copy of the project (tests/project.py) to run pipelines in."""
    dst.mkdir(parents=True)
    return copy_project(dst)


@pytest.fixture
def server(tmp_path):
    srv = PrefectServer(tmp_path / "prefect-home")
    yield srv
    srv.stop()
    leftover = processes_in(tmp_path)
    assert not leftover, f"processes left running under {tmp_path}: {leftover}"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_serve_runs_a_failing_stage_to_failed_with_its_message(server, tmp_path):
    repo = _clone(tmp_path / "repo")
    images = class_folder(tmp_path / "images", per_class=12)
    bad = sorted((images / "cat").glob("*.png"))[0]
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])  # a truncated PNG among valid ones
    anchor = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=20)
    serve = server.start(
        "serve",
        [
            BIN / "python",
            "-m",
            "flows.serve",
            "--interval",
            "3600",
            "--anchor",
            anchor.isoformat(),
            "--set",
            "preset=ci",
            "--set",
            f"data.source=file://{images}",
            "--pipeline-param",
            "retry_delay_s=1",
        ],
        repo,
    )
    try:
        with server.client() as c:

            def served_run():
                try:
                    dep = c.read_deployment_by_name("ul-pipeline/nightly")
                except Exception:  # not registered yet
                    return None
                return next((r for r in flow_runs_of(c, dep.id) if r.state and r.state.type.value != "SCHEDULED"), None)

            run = wait_until(served_run, 120, "serve picked up the scheduled run", alive=serve)
            run = wait_final(c, run.id, 180, alive=serve)
            logs = wait_logs(c, run.id, "unreadable image")
            assert run.state.type.value == "FAILED", logs[-3000:]
            assert run.auto_scheduled and run.parameters["overrides"] == ["preset=ci", f"data.source=file://{images}"]
            assert "dvc repro pixels failed" in run.state.message and bad.name in run.state.message
            assert "unreadable image" in logs and f"cat/{bad.name}" in logs  # the stage's own message, streamed
            tasks = task_runs(c, run.id)
            pixels = tasks["dvc-repro-pixels"]
            assert pixels.state.type.value == "FAILED" and pixels.run_count == 1  # not transient: no retry
            assert tasks["dvc-repro-fetch"].state.type.value == "COMPLETED" and "dvc-repro-validate" not in tasks
            summary = artifacts(c, run.id)["ul-pipeline-summary"]
            assert "**FAILED**" in summary and "| pixels | FAILED |" in summary
            assert "| validate | not reached |" in summary and "| fetch | ran |" in summary
    finally:
        serve.stop()
    assert not serve.running
    wait_until(lambda: processes_in(repo) == [], 30, "serve's flow-run processes exited")
