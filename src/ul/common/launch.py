"""A stage under torchrun (training, latent caching, evaluation), when its `launch` params ask for
more than one process.

The stage's entry point (what dvc.yaml and the flows run) calls `relaunch` first. With one process
on one machine it returns None and the stage trains in this process, as it always has. Otherwise it
runs `python -m torch.distributed.run ... -m <the stage> <its arguments>` and waits: torchrun's
elastic agent starts the processes, restarts the whole group up to `max_restarts` times after a
failure (training resumes from the last complete checkpoint: ul.train.loop), and gives up when
a machine has not joined within `timeout_s`. Every machine of a multi-node run starts the stage
this way, with the same params and data; c10d rendezvous at `rdzv_endpoint` (a port on one of them)
assigns the ranks, and global rank 0 writes the outputs.

Two things torchrun leaves to each machine are found here from the endpoint, so that one params
file serves every machine: whether this machine hosts the rendezvous store (it holds the
endpoint's address), and the name and network interface the other machines reach it by
(torchrun's `--local_addr`, which they connect back to, and gloo's GLOO_SOCKET_IFNAME: a machine's
host name may resolve to an address that the others cannot reach). Global rank 0, which writes the
outputs, is the machine whose name (or address) sorts first.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

from ul.common.config import LaunchConfig
from ul.common.errors import error_line

SIOCGIFADDR = 0x8915  # linux/sockios.h: an interface's IPv4 address


def inside_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ


def processes(launch: LaunchConfig) -> int:
    return launch.nnodes * launch.nproc_per_node


def split_endpoint(endpoint: str) -> tuple[str, int]:
    host, port = endpoint.rsplit(":", 1)
    return host.strip("[]"), int(port)


def holds_address(host: str) -> bool:
    """Whether this machine holds an address of `host` (binding to it succeeds only if it does)."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror:
        return False
    for family, _, _, _, addr in infos:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            try:
                s.bind((addr[0], 0))
                return True
            except OSError:
                continue
    return False


def route_to(host: str, port: int) -> str:
    """The local address this machine's packets to host:port leave from (a UDP connect sends nothing)."""
    family = socket.getaddrinfo(host, port, proto=socket.IPPROTO_UDP)[0][0]
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect((host, port))
        return s.getsockname()[0]


def node_address(routed: str) -> str:
    """What the other machines reach this one by: its host name where that resolves to a
    non-loopback address it holds (a Kubernetes pod's name: torchrun then numbers the machines in
    the order of their names, pod 0 first), else `routed`, the address its packets to them leave from."""
    name = socket.getfqdn()
    try:
        loopback = all(ipaddress.ip_address(i[4][0]).is_loopback for i in socket.getaddrinfo(name, None))
    except (socket.gaierror, ValueError):
        loopback = True
    return name if not loopback and holds_address(name) else routed


def interface_of(address: str) -> str | None:
    """The name of the network interface that holds the IPv4 `address`, if one does."""
    for _, name in socket.if_nameindex():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                packed = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
            except OSError:  # no IPv4 address on it
                continue
        if socket.inet_ntoa(packed[20:24]) == address:
            return name
    return None


def command(launch: LaunchConfig, module: str, argv: list[str]) -> tuple[list[str], dict]:
    """The torchrun command line and environment that run `python -m module argv` as `launch` asks."""
    run = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={launch.nproc_per_node}",
        f"--max_restarts={launch.max_restarts}",
        "--monitor_interval=1",
    ]
    env = dict(os.environ)
    if not launch.rdzv_endpoint:
        run.append("--standalone")
    else:
        host, port = split_endpoint(launch.rdzv_endpoint)
        routed = route_to(host, port)
        is_host = holds_address(host)
        run += [
            f"--nnodes={launch.nnodes}",
            "--rdzv_backend=c10d",
            f"--rdzv_endpoint={launch.rdzv_endpoint}",
            f"--rdzv_id=ul-{module.rsplit('.', 1)[-1]}",
            f"--rdzv_conf=join_timeout={int(launch.timeout_s)},is_host={str(is_host).lower()}",
            f"--local_addr={node_address(routed)}",
        ]
        iface = interface_of(routed)
        if iface and "GLOO_SOCKET_IFNAME" not in env:  # a user's own choice stands
            env["GLOO_SOCKET_IFNAME"] = iface
    return [*run, "-m", module, *argv], env


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM it when the process that started it dies, even by SIGKILL,
    so that a killed stage (`dvc repro` stopped, a flow cancelled) never leaves torchrun training."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _run_tied(cmd: list[str], env: dict) -> int:
    """Run torchrun and wait; SIGTERM and SIGINT sent to this process are passed on to it (its
    agent then stops the workers), and its own death by any signal ends it too."""
    proc = subprocess.Popen(cmd, env=env, preexec_fn=_die_with_parent)
    forward = lambda sig, _frame: proc.send_signal(sig)  # noqa: E731
    main = threading.current_thread() is threading.main_thread()  # only it may set handlers
    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)} if main else {}
    try:
        return proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def relaunch(launch: LaunchConfig, module: str, argv: list[str], ckpt: str | Path | None = None) -> int | None:
    """Run the stage under torchrun and return its exit status, or None to run it in this process
    (one process asked for, or already one of torchrun's). `ckpt`: a training stage's checkpoint."""
    if inside_torchrun() or processes(launch) == 1:
        return None
    cmd, env = command(launch, module, argv)
    status = _run_tied(cmd, env)
    if status == 0:
        return 0
    stage = module.rsplit(".", 1)[-1]
    if ckpt is None:
        kept = "re-run the stage"
    elif Path(ckpt).exists():
        kept = f"the last complete checkpoint is kept ({ckpt}) and a re-run resumes from it"
    else:
        kept = "no checkpoint was written yet"
    print(
        error_line(
            f"{stage}: torchrun ({launch.nnodes} machine(s) × {launch.nproc_per_node} process(es)) failed "
            f"with exit status {status} after at most {launch.max_restarts} restart(s) (a process failed, or a "
            f"machine did not join within {launch.timeout_s:g} s); {kept}"
        ),
        file=sys.stderr,
    )
    return 1
