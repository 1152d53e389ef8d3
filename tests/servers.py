"""Loopback servers for the flow and lakeFS tests: a Prefect server, its workers and `serve`
processes, prism (the lakeFS REST API, mocked from its OpenAPI document), moto (S3) and a TCP
link that can be cut (a remote going away).

Every process is started in a session of its own and stopped by its process id (SIGTERM to the
group it leads, then SIGKILL); moto runs in a thread of the test process. Nothing listens on
anything but 127.0.0.1.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LAKEFS_SPEC = ROOT / "tests" / "vendor" / "lakefs-openapi.yml"  # a copy of ../shared/vendor (Apache-2.0)
# What prism answers for a commit: a real lakeFS commit id is a 64-hex SHA-256.
COMMIT = "c0ffee" + "0123456789abcdef" * 3 + "c0ffee0123"
BRANCH_EXAMPLE = {"id": "main", "commit_id": COMMIT}
COMMIT_EXAMPLE = {
    "id": COMMIT,
    "parents": ["0" * 64],
    "committer": "ci",
    "message": "new data",
    "creation_date": 1767225600,
    "meta_range_id": "m" * 8,
    "metadata": {},
    "generation": 2,
    "version": 1,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(
    check: Callable[[], object], timeout: float, what: str, interval: float = 0.5, alive: Process | None = None
):
    """Poll `check` until it returns something truthy; fail after `timeout` s (or when `alive` died)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if alive is not None and not alive.running:
            raise RuntimeError(f"{what}: {alive.name} exited with {alive.proc.returncode}:\n{alive.tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout} s" + (f"\n{alive.tail()}" if alive else ""))
        time.sleep(interval)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status < 500
    except urllib.error.HTTPError as e:
        return e.code < 500
    except OSError:
        return False


class Process:
    """A subprocess in its own session, output to a log file, stopped by its pid."""

    def __init__(self, name: str, cmd: list, env: dict, cwd: Path, log: Path):
        self.name, self.log = name, log
        self._fh = open(log, "wb")
        self.proc = subprocess.Popen(
            [str(c) for c in cmd],
            cwd=str(cwd),
            env=env,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.pid = self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def tail(self, n: int = 4000) -> str:
        return self.log.read_bytes()[-n:].decode(errors="replace") if self.log.exists() else ""

    def stop(self, grace: float = 20.0) -> int:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.pid, sig)  # the group this process leads (start_new_session)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
        self._fh.close()
        return self.proc.wait()


def processes_in(path: Path) -> list:
    """(pid, cmdline) of live processes whose working directory is `path` or below (leftovers)."""
    path = str(Path(path).resolve())
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(d / "cwd")
            if (cwd == path or cwd.startswith(path + os.sep)) and (d / "stat").read_text().split()[2] != "Z":
                found.append((int(d.name), (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")))
        except OSError:
            continue
    return found


# ---- Prefect -------------------------------------------------------------------------------------


class PrefectServer:
    """`prefect server start` on 127.0.0.1 with its own PREFECT_HOME (SQLite inside it)."""

    def __init__(self, home: Path, scheduler_loop_s: float = 2.0):
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"
        self.env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PREFECT_HOME": str(home),
            "PREFECT_PROFILES_PATH": str(home / "profiles.toml"),
            "PREFECT_API_URL": self.url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_UI_ENABLED": "false",
            "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": str(scheduler_loop_s),
            "PREFECT_WORKER_QUERY_SECONDS": "2",
            "PREFECT_WORKER_PREFETCH_SECONDS": "0",
            "PREFECT_RUNNER_POLL_FREQUENCY": "2",
            "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "0.5",
            "DO_NOT_TRACK": "1",
            "DVC_NO_ANALYTICS": "1",
            "GX_ANALYTICS_ENABLED": "false",
        }
        self.children: list = []
        self.server = Process(
            "prefect server",
            [BIN / "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(self.port), "--no-ui"],
            self.env,
            home,
            home / "server.log",
        )
        wait_until(lambda: http_ok(f"{self.url}/health"), 90, "prefect server health", alive=self.server)

    def cli(self, *args, cwd: Path, env: dict | None = None, timeout: float = 120) -> str:
        out = subprocess.run(
            [str(BIN / "prefect"), *map(str, args)],
            cwd=cwd,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if out.returncode != 0:
            raise RuntimeError(
                f"prefect {' '.join(map(str, args))} exited {out.returncode}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
            )
        return out.stdout

    def start(self, name: str, cmd: list, cwd: Path, env: dict | None = None) -> Process:
        """A worker or a `serve` process against this server (stopped before the server)."""
        p = Process(
            name,
            cmd,
            {**self.env, **(env or {})},
            cwd,
            self.home / f"{name.replace(' ', '-')}-{len(self.children)}.log",
        )
        self.children.append(p)
        return p

    def worker(self, pool: str, cwd: Path, env: dict | None = None) -> Process:
        return self.start(
            f"worker {pool}",
            [BIN / "prefect", "worker", "start", "--pool", pool, "--type", "process", "--limit", "1"],
            cwd,
            env,
        )

    @contextmanager
    def client(self):
        """A synchronous Prefect client for this server, from the test process."""
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: self.url}):
            with get_client(sync_client=True) as c:
                yield c

    def stop(self) -> None:
        for p in reversed(self.children):  # workers and serve first
            if p.running:
                p.stop()
        self.server.stop()


# ---- prism: the lakeFS REST API from its OpenAPI document -------------------------------------


def prism_binary() -> str | None:
    """tools/node_modules/.bin/prism (`npm ci --prefix tools`), $PRISM, or prism on PATH; None if absent."""
    for cand in (os.environ.get("PRISM"), ROOT / "tools" / "node_modules" / ".bin" / "prism", shutil.which("prism")):
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK) and shutil.which("node"):
            return str(cand)
    return None


def lakefs_spec_for_prism(dst: Path) -> Path:
    """A copy of the lakeFS OpenAPI document that prism serves the way the SDKs call it: every path
    prefixed with /api/v1 (prism mounts paths at /), `servers: [{url: /}]`, and 64-hex commit ids
    as the examples of a branch and a commit (the document has none; prism would answer "string").
    Responses whose only content type is text/html also list application/json: the SDK always sends
    `Accept: application/json` (createBranch's 201 is text/html); lakeFS ignores it, prism answers 406.
    Request bodies, parameters and security stay as the document says, so requests are still checked."""
    doc = yaml.safe_load(LAKEFS_SPEC.read_text())
    doc["servers"] = [{"url": "/"}]
    doc["paths"] = {"/api/v1" + p: v for p, v in doc["paths"].items()}
    for item in doc["paths"].values():
        for op in item.values():
            for resp in (op.get("responses") or {}).values() if isinstance(op, dict) else ():
                content = resp.get("content") if isinstance(resp, dict) else None
                if content and set(content) == {"text/html"}:
                    content["application/json"] = copy.deepcopy(content["text/html"])
    schemas = doc["components"]["schemas"]
    schemas["Ref"] = {**copy.deepcopy(schemas["Ref"]), "example": BRANCH_EXAMPLE}
    schemas["Commit"] = {**copy.deepcopy(schemas["Commit"]), "example": COMMIT_EXAMPLE}
    dst.write_text(yaml.safe_dump(doc, sort_keys=False))
    return dst


class Prism:
    """`prism mock --errors` on 127.0.0.1: answers from the document's examples, and 4xx for any
    request that violates it (a malformed body, a missing required field, no credentials)."""

    def __init__(self, workdir: Path):
        binary = prism_binary()
        if binary is None:
            raise FileNotFoundError("prism not installed: run `npm ci --prefix tools` (needs node and npm)")
        workdir.mkdir(parents=True, exist_ok=True)
        spec = lakefs_spec_for_prism(workdir / "lakefs-openapi.prism.yml")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = Process(
            "prism",
            [binary, "mock", "--errors", "-h", "127.0.0.1", "-p", str(self.port), spec],
            {**os.environ, "NO_COLOR": "1"},
            workdir,
            workdir / "prism.log",
        )
        wait_until(lambda: http_ok(f"{self.url}/api/v1/healthcheck"), 90, "prism listening", alive=self.proc)

    def requests(self) -> str:
        return self.proc.log.read_text(errors="replace")

    def stop(self) -> None:
        self.proc.stop()


# ---- moto: S3 (and the lakeFS S3 gateway's protocol) ----------------------------------------


class Moto:
    """moto's S3 server in a thread on 127.0.0.1; `port` may be chosen before it starts."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = None

    def start(self) -> Moto:
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        wait_until(lambda: http_ok(self.url), 30, "moto listening")
        return self

    def s3(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )

    def keys(self, bucket: str, prefix: str = "") -> dict:
        pages = self.s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


def _reset(s: socket.socket) -> None:
    """Close `s` with a reset (RST, never a FIN), at once. shutdown(SHUT_RD) first: close() alone
    would neither wake a thread blocked in recv() or accept() on it nor reset it (the blocked call
    keeps the socket alive), so its peer would wait on a silently dead connection; SHUT_RD wakes
    that thread and sends nothing, and the close that follows resets."""
    for call in (
        lambda: s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)),  # close = RST
        lambda: s.shutdown(socket.SHUT_RD),
    ):
        try:
            call()
        except OSError:  # already closed, by its peer or an earlier cut
            pass
    s.close()


class Link:
    """A TCP link on 127.0.0.1 to a server's port that can be cut and mended, as a network (or a
    server that died) would: `cut()` resets every open connection and closes the port (new ones are
    refused); `mend()` listens again on the same port. The server behind it keeps its state, so a
    remote reached through it goes away and comes back with what it had. `bytes_per_s` caps each
    direction's rate, so that a transfer of a few megabytes lasts long enough to be cut midway."""

    def __init__(self, target_port: int, bytes_per_s: float | None = None):
        self.target = ("127.0.0.1", target_port)
        self.bytes_per_s = bytes_per_s
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.listener: socket.socket | None = None
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()

    def mend(self) -> Link:
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()
        return self

    def cut(self) -> None:
        with self.lock:
            listener, self.listener = self.listener, None
            for s in ({listener} - {None}) | self.open:  # the listener too: accept() must wake and free the port
                _reset(s)
            self.open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # cut
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:  # the server behind is down: the client sees its connection closed
                client.close()
                continue
            with self.lock:
                if self.listener is not listener:  # cut while this one was being connected
                    _reset(client)
                    _reset(server)
                    continue
                self.open |= {client, server}
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
                if self.bytes_per_s:
                    time.sleep(len(data) / self.bytes_per_s)
            with self.lock:  # pass the end on, unless a cut woke us: then dst is reset, not ended
                if dst in self.open:
                    dst.shutdown(socket.SHUT_WR)
        except OSError:  # the other side, or a cut, closed it
            pass


# ---- reading runs back through the Prefect client -----------------------------------------------

FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _f():
    from prefect.client.schemas import filters

    return filters


def wait_final(client, run_id, timeout: float, alive: Process | None = None):
    """The flow run once it reached a final state."""

    def final():
        r = client.read_flow_run(run_id)
        return r if r.state and r.state.type.value in FINAL else None

    return wait_until(final, timeout, f"flow run {run_id} finished", alive=alive)


def cancel_unless_final(client, run_id, timeout: float = 120) -> None:
    """Cancel a flow run a failed test left running, so the worker is free for the next test."""
    from prefect.states import Cancelling

    if client.read_flow_run(run_id).state.type.value not in FINAL:
        client.set_flow_run_state(run_id, Cancelling(), force=True)
        wait_final(client, run_id, timeout)


def run_logs(client, run_id) -> str:
    """Every log line of a flow run (its tasks' included), oldest first."""
    f = _f()
    out, offset = [], 0
    while True:
        page = client.read_logs(f.LogFilter(flow_run_id=f.LogFilterFlowRunId(any_=[run_id])), limit=200, offset=offset)
        out += [log.message for log in page]
        offset += len(page)
        if len(page) < 200:
            return "\n".join(out)


def artifacts(client, run_id) -> dict:
    """{key: data} of a flow run's artifacts; table artifacts as lists of rows."""
    f = _f()
    arts = client.read_artifacts(flow_run_filter=f.FlowRunFilter(id=f.FlowRunFilterId(any_=[run_id])))
    return {a.key: (json.loads(a.data) if isinstance(a.data, str) and a.type == "table" else a.data) for a in arts}


def task_runs(client, run_id) -> dict:
    f = _f()
    runs = client.read_task_runs(flow_run_filter=f.FlowRunFilter(id=f.FlowRunFilterId(any_=[run_id])))
    return {t.name: t for t in runs}


def flow_runs_of(client, deployment_id) -> list:
    f = _f()
    return client.read_flow_runs(
        flow_run_filter=f.FlowRunFilter(deployment_id=f.FlowRunFilterDeploymentId(any_=[deployment_id]))
    )


def subflow_runs(client, run_id) -> list:
    f = _f()
    return client.read_flow_runs(
        flow_run_filter=f.FlowRunFilter(parent_flow_run_id=f.FlowRunFilterParentFlowRunId(any_=[run_id]))
    )


def run_deployment(name: str, parameters: dict):
    """Create a flow run of a deployment and return it at once (a worker or serve executes it)."""
    from prefect.deployments import run_deployment as run

    return run(name, parameters=parameters, timeout=0)


def schedules(dep) -> list:
    return [
        {
            "cron": getattr(s.schedule, "cron", None),
            "timezone": getattr(s.schedule, "timezone", None),
            "interval": getattr(s.schedule, "interval", None),
            "active": s.active,
            "id": s.id,
        }
        for s in dep.schedules
    ]


def wait_logs(client, run_id, *needles: str, timeout: float = 30) -> str:
    """A flow run's logs once every needle is in them (the last batch may land after the final state)."""
    found = {}

    def check():
        found["logs"] = run_logs(client, run_id)
        return all(n in found["logs"] for n in needles)

    try:
        wait_until(check, timeout, f"log lines {needles}", interval=1.0)
    except TimeoutError:
        pass  # the caller's assertions show what is missing
    return found["logs"]
