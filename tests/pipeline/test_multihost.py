"""Stage-1 training across two real hosts: two network namespaces joined by a veth pair, each with
its own address, each running the real stage (`python -m ul.stages.train_stage1`) whose
`stage1.launch` params start torchrun with c10d rendezvous on host A and gloo between the hosts.

One run shows two hosts equal to one process with the same global batch; one run has host B's
worker SIGKILLed and B's link dropped for a while, and torchrun's elastic agents restart the group,
which resumes from the last complete checkpoint and ends with the uninterrupted run's exact bytes;
in one run host B never comes back, and the stage ends with one `error:` line and the checkpoint
kept. Needs root (namespaces); skipped, saying so, otherwise. The hosts share this machine's
file system (the data, and the checkpoint that rank 0 writes), as a cluster's shared volume would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from conftest import ROOT
from safetensors.torch import load_file

from ul.common.shards import ShardWriter
from ul.params import write_params
from ul.train import checkpoint

HOSTS = {"a": "10.77.0.1", "b": "10.77.0.2"}
STEPS, CKPT_EVERY = 120, 10


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def hosts():
    """Two namespaces `<tag>a` and `<tag>b` on one veth link, 10.77.0.1/24 and 10.77.0.2/24."""
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("two network namespaces need root and iproute2")
    tag = f"ul{os.getpid()}"
    names = {h: f"{tag}{h}" for h in HOSTS}
    try:
        for ns in names.values():
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("link", "add", f"{tag}va", "netns", names["a"], "type", "veth", "peer", f"{tag}vb", "netns", names["b"])
        for h, ns in names.items():
            _ip("-n", ns, "addr", "add", f"{HOSTS[h]}/24", "dev", f"{tag}v{h}")
            _ip("-n", ns, "link", "set", f"{tag}v{h}", "up")
    except subprocess.CalledProcessError as err:
        for ns in names.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        pytest.skip(f"cannot make network namespaces here: {err.stderr.decode().strip()}")
    yield {h: (ns, f"{tag}v{h}") for h, ns in names.items()}
    for ns in names.values():
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _project(root: Path, name: str, port: int | None, **launch) -> Path:
    """A project folder: 64 random 16×16 images as the stage's shards and the tiny preset's params."""
    proj = root / name
    writer = ShardWriter(proj / "data" / "pixels" / "train")
    writer.add(np.random.default_rng(0).integers(0, 256, (64, 1, 16, 16), dtype=np.uint8))
    writer.close({})
    nodes = {"nnodes": 2, "nproc_per_node": 1, "rdzv_endpoint": f"{HOSTS['a']}:{port}"} if port else {}
    over = [f"stage1.launch.{k}={v}" for k, v in {**nodes, **launch}.items()]
    steps = [f"stage1.steps={STEPS}", f"stage1.ckpt_every={CKPT_EVERY}", "stage1.log_every=10"]
    write_params(ROOT / "conf", ["preset=tiny", "stage1.precision=fp32", *steps, *over], proj / "params.yaml")
    return proj


def _stage(proj: Path, ns: str | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "ul.stages.train_stage1"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("GLOO_SOCKET_IFNAME", None)
    cmd = ["ip", "netns", "exec", ns, *cmd] if ns else cmd
    return subprocess.Popen(cmd, cwd=proj, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _done(proc: subprocess.Popen, timeout: float = 480) -> tuple[int, str]:
    """The stage's status and output; one that runs past `timeout` is killed with its torchrun
    and workers, and its output shown."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for p in [*psutil.Process(proc.pid).children(recursive=True), psutil.Process(proc.pid)]:
            p.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"the stage ran past {timeout} s:\n{out[-4000:]}") from None
    return proc.returncode, out


def _two_hosts(proj: Path, hosts) -> tuple[subprocess.Popen, subprocess.Popen]:
    return _stage(proj, hosts["a"][0]), _stage(proj, hosts["b"][0])


def _weights(proj: Path) -> dict:
    return load_file(proj / "models" / "stage1" / "model.safetensors")


def _step(proj: Path) -> int:
    try:
        return checkpoint.load(proj / "models" / "stage1" / "ckpt.pt")["step"]
    except (FileNotFoundError, checkpoint.CheckpointError):
        return 0


def _worker(stage: subprocess.Popen) -> psutil.Process:
    """The training process torchrun started under `stage` (not its agent)."""
    deadline = time.time() + 120
    while time.time() < deadline:
        for p in psutil.Process(stage.pid).children(recursive=True):
            cmd = " ".join(p.cmdline())
            if "ul.stages.train_stage1" in cmd and "torch.distributed.run" not in cmd:
                return p
        time.sleep(0.1)
    raise AssertionError("no worker started")


def _wait_for_step(proj: Path, at_least: int, *procs) -> int:
    deadline = time.time() + 240
    while (step := _step(proj)) < at_least:
        assert time.time() < deadline and all(p.poll() is None for p in procs), "training ended or stalled"
        time.sleep(0.05)
    return step


@pytest.fixture(scope="module")
def reference(tmp_path_factory, hosts):
    """One process, and two hosts uninterrupted: the runs the others are compared with."""
    root = tmp_path_factory.mktemp("multihost")
    one = _project(root, "one", None)
    rc, out = _done(_stage(one))
    assert rc == 0, out[-3000:]
    two = _project(root, "two", 29411)
    (a, b) = _two_hosts(two, hosts)
    (rca, outa), (rcb, outb) = _done(a), _done(b)
    assert rca == 0 and rcb == 0, outa[-3000:] + outb[-3000:]
    return root, one, two


def test_two_hosts_train_what_one_process_trains(reference):
    _, one, two = reference
    a, b = _weights(one), _weights(two)
    assert a.keys() == b.keys()
    # Each host's half-batch gradients are summed in another order than one process sums them.
    # Adam turns that float noise into steps of up to lr in directions with ~zero gradient (the
    # biases of convolutions before a GroupNorm, which cancels them), so over 120 steps those few
    # drift; every other weight agrees to float precision. A rank with other data or noise would
    # move every weight by ~lr per step.
    diffs = {k: (a[k] - b[k]).abs().flatten() for k in a if a[k].is_floating_point()}
    every = torch.cat(list(diffs.values()))
    assert float(every.quantile(0.99)) < 1e-5, float(every.quantile(0.99))
    worst = max((float(d.max()), k) for k, d in diffs.items() if not k.endswith(".bias"))
    assert worst[0] < 1e-3, worst
    assert sorted(p.name for p in (one / "models" / "stage1").iterdir()) == sorted(
        p.name for p in (two / "models" / "stage1").iterdir()
    ), "the same outputs, laid out alike"
    assert json.loads((two / "metrics" / "train_stage1.json").read_text())["processes"] == 2


def test_a_killed_worker_and_a_dropped_link_are_recovered_exactly(reference, hosts):
    root, _, two = reference
    # While B's link is down, each worker B's agent starts fails at once (no route to the store), and
    # the two agents may take a few rounds to meet again once it is up: each failed round spends a
    # restart, so allow enough of them (3 ran out once in a fresh-clone CI run, under load).
    proj = _project(root, "elastic", 29412, max_restarts=10, timeout_s=60)
    a, b = _two_hosts(proj, hosts)
    killed_at = _wait_for_step(proj, 3 * CKPT_EVERY, a, b)
    worker = _worker(b)
    worker.kill()  # SIGKILL; then, once its sockets are closed (its peers see that), the link goes
    psutil.wait_procs([worker], timeout=10)
    time.sleep(1)
    ns, dev = hosts["b"]
    _ip("-n", ns, "link", "set", dev, "down")
    time.sleep(6)
    _ip("-n", ns, "link", "set", dev, "up")
    (rca, outa), (rcb, outb) = _done(a), _done(b)
    assert rca == 0 and rcb == 0, outa[-3000:] + outb[-3000:]
    assert killed_at < STEPS
    resumed = [int(line.rsplit(" ", 1)[1]) for line in outa.splitlines() if "stage1: resumed from" in line]
    assert resumed and resumed[0] >= killed_at, outa[-3000:]
    want = (two / "models" / "stage1" / "model.safetensors").read_bytes()
    assert (proj / "models" / "stage1" / "model.safetensors").read_bytes() == want


def test_a_host_that_never_comes_back_ends_the_stage_with_one_error_line(reference, hosts):
    root, _, _ = reference
    proj = _project(root, "lost", 29413, max_restarts=1, timeout_s=10)
    a, b = _two_hosts(proj, hosts)
    step = _wait_for_step(proj, 2 * CKPT_EVERY, a, b)
    for p in [*psutil.Process(b.pid).children(recursive=True), psutil.Process(b.pid)]:
        p.kill()
    b.wait()
    ns, dev = hosts["b"]
    _ip("-n", ns, "link", "set", dev, "down")
    try:
        rca, outa = _done(a, timeout=240)
    finally:
        _ip("-n", ns, "link", "set", dev, "up")
    assert rca == 1, outa[-3000:]
    errors = [line for line in outa.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "torchrun" in errors[0] and "ckpt.pt" in errors[0], outa[-3000:]
    assert outa.rstrip().splitlines()[-1] == errors[0]
    assert _step(proj) >= step, "the last good checkpoint is kept"
    assert not (proj / "models" / "stage1" / "model.safetensors").exists()
