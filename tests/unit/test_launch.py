"""`stageN.launch`: the params that run a training stage under torchrun (ul.common.launch), checked
like every param, and the torchrun command they make. The runs themselves, on two real hosts, are
in tests/pipeline/test_multihost.py."""

import pytest
from conftest import preset_config

from ul.common import launch
from ul.common.config import ConfigError, LaunchConfig


def test_one_process_trains_here_and_torchrun_s_own_processes_never_relaunch(monkeypatch):
    assert launch.relaunch(LaunchConfig(), "ul.stages.train_stage1", [], "out") is None
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")
    assert launch.relaunch(LaunchConfig(nproc_per_node=2), "ul.stages.train_stage1", [], "out") is None


def test_one_machine_runs_standalone_with_the_stage_s_own_arguments():
    cmd, _ = launch.command(LaunchConfig(nproc_per_node=3, max_restarts=2), "ul.stages.train_stage2", ["--out", "o"])
    assert "--standalone" in cmd and "--nproc_per_node=3" in cmd and "--max_restarts=2" in cmd
    assert cmd[cmd.index("-m", 3) :] == ["-m", "ul.stages.train_stage2", "--out", "o"]
    assert not any(a.startswith("--rdzv") for a in cmd)


def test_several_machines_meet_at_the_endpoint_and_the_host_of_its_address_hosts_the_store(monkeypatch):
    monkeypatch.delenv("GLOO_SOCKET_IFNAME", raising=False)
    lc = LaunchConfig(nnodes=2, rdzv_endpoint="127.0.0.1:29499", timeout_s=30)
    cmd, env = launch.command(lc, "ul.stages.train_stage1", [])
    opts = dict(a[2:].split("=", 1) for a in cmd if a.startswith("--") and "=" in a)
    assert opts["nnodes"] == "2" and opts["rdzv_backend"] == "c10d" and opts["rdzv_endpoint"] == "127.0.0.1:29499"
    assert opts["rdzv_conf"] == "join_timeout=30,is_host=true"
    assert opts["rdzv_id"] == "ul-train_stage1"
    assert env["GLOO_SOCKET_IFNAME"] == "lo"  # the interface that holds the route to the endpoint


def test_an_address_this_machine_does_not_hold_is_another_machine_s():
    assert launch.holds_address("127.0.0.1")
    assert not launch.holds_address("192.0.2.1")  # TEST-NET-1: nobody's
    assert launch.interface_of("127.0.0.1") == "lo" and launch.interface_of("192.0.2.1") is None


def test_a_user_s_own_gloo_interface_stands(monkeypatch):
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "eth7")
    _, env = launch.command(LaunchConfig(nnodes=2, rdzv_endpoint="127.0.0.1:29499"), "m", [])
    assert env["GLOO_SOCKET_IFNAME"] == "eth7"


@pytest.mark.parametrize(
    "override, why",
    [
        ("stage1.launch.nnodes=2", "must name host:port when nnodes > 1"),
        ("stage1.launch.rdzv_endpoint=node0", "must be host:port"),
        ("stage1.launch.rdzv_endpoint=node0:70000", "must be host:port"),
        ("stage1.launch.rdzv_endpoint='node0:29400 --no-python'", "must be host:port"),
        ("stage1.launch.rdzv_endpoint='a\\nb:1'", "must be host:port"),
        ("stage1.launch.nproc_per_node=0", "must be in [1, 4096]"),
        ("stage1.launch.max_restarts=-1", "must be in [0, 100]"),
        ("stage2.launch.timeout_s=0.5", "must be in [1, 86400] seconds"),
        ("stage1.launch.nproc_per_node=3", "must divide batch_size"),
    ],
)
def test_launch_params_are_checked_by_name(override, why):
    key, value = override.split("=", 1)
    with pytest.raises(ConfigError, match=key.rsplit(".", 1)[0].replace(".", r"\.")) as err:
        preset_config("ci", **{key: value.strip("'").replace("\\n", "\n")})
    assert why in str(err.value)


def test_ipv6_and_names_are_endpoints():
    for ep in ("[::1]:29400", "ul-train-stage1-0.ul-train-stage1:29400", "10.0.0.1:1"):
        cfg = preset_config("ci", **{"stage1.launch.nnodes": 2, "stage1.launch.rdzv_endpoint": f"'{ep}'"})
        assert cfg.stage1.launch.rdzv_endpoint == ep


PARENT = """
import sys
from ul.common.config import LaunchConfig
from ul.common import launch
sys.exit(launch.relaunch(LaunchConfig(nproc_per_node=2), "http.server", ["0", "--bind", "127.0.0.1"]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_a_stage_killed_while_torchrun_runs_takes_torchrun_and_its_workers_with_it(how):
    """The stage's own process is what DVC and the flows stop: torchrun must not outlive it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    env = dict(os.environ, OMP_NUM_THREADS="1")
    parent = subprocess.Popen([sys.executable, "-c", PARENT], env=env, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(family := psutil.Process(parent.pid).children(recursive=True)) < 3:  # torchrun + 2 workers
        assert time.time() < deadline and parent.poll() is None, "torchrun did not start its workers"
        time.sleep(0.2)
    parent.send_signal(getattr(signal, how))
    parent.wait(30)
    gone, alive = psutil.wait_procs(family, timeout=60)
    assert not alive, [p.cmdline() for p in alive]
