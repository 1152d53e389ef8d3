import os
import shutil
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    # `make test` runs one pytest worker per core: each worker, and the stages it runs under DVC, gets its
    # share of the cores (set before torch loads its OpenMP runtime). Two processes with two threads each
    # on two cores slow each other several times over; two with one thread each do not.
    _share = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ.setdefault("OMP_NUM_THREADS", str(_share))

from filelock import FileLock  # noqa: E402

from ul import params  # noqa: E402
from ul.common.config import Config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

# Tests by kind: tests/unit (the library in-process), tests/pipeline (real DVC, Prefect, servers, a
# browser: every one of them marked slow here), tests/hostile (hostile input, each kind). The fast
# lane, `make test-fast`, is everything not marked slow.
PIPELINE = Path(__file__).resolve().parent / "pipeline"

# The modules that take minutes, longest first: handed out first, so that the workers finish together
# rather than one of them starting the video pipeline at the end. The ci_project users lead, so the
# first worker builds the shared run while the second works through the flows.
SLOW_FIRST = (
    "test_pipeline.py",
    "test_flows.py",
    "test_video_pipeline.py",
    "test_results.py",
    "test_hostile_dvc_kill.py",
    "test_lock.py",
    "test_commands.py",
    "test_hostile_faults.py",
    "test_flows_serve.py",
    "test_metrics.py",
    "test_train.py",
)


def pytest_collection_modifyitems(items):
    for item in items:
        if PIPELINE in item.path.parents:
            item.add_marker(pytest.mark.slow)
    slow = {item.path.name for item in items if item.get_closest_marker("slow")}
    named = {item.path.name for item in items} & set(SLOW_FIRST)
    assert named <= slow, f"SLOW_FIRST names modules with no slow test: {sorted(named - slow)}"
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a module keeps its order


def preset_config(preset: str = "ci", **overrides) -> Config:
    """This project's `preset=<name>` (ul.params.preset_config), plus `key=value` overrides."""
    return params.preset_config(ROOT / "conf", preset, [f"{k}={v}" for k, v in overrides.items()])


@pytest.fixture
def ci_cfg() -> Config:
    return preset_config("ci")


@pytest.fixture(scope="session")
def ci_project(tmp_path_factory):
    """The ci preset run once by `dvc exp run -S preset=ci` (all 8 stages) in a throw-away copy of the
    project, once for the whole test run: the first worker to ask builds it under a file lock, the
    others wait for it. Read-only: a test that runs DVC commands in it works on `project.copy_of(ci_project, ...)`."""
    from project import ALL, copy_project, ran_stages, sh

    if os.environ.get("UL_TEST_CI_PROJECT"):  # a developer's shortcut: reuse a finished ci run
        return Path(os.environ["UL_TEST_CI_PROJECT"])
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # the run's folder, above the workers'
    proj, done = shared / "ci_project", shared / "ci_project.done"
    with FileLock(shared / "ci_project.lock"):
        if not done.exists():
            shutil.rmtree(proj, ignore_errors=True)  # a worker's failed attempt
            proj.mkdir()
            r = sh(["dvc", "exp", "run", "-S", "preset=ci"], copy_project(proj))
            assert ran_stages(r.stdout + r.stderr) == ALL, r.stdout[-3000:]
            done.touch()
    return proj


@pytest.fixture(scope="module")
def moto_endpoint():
    """A real S3-compatible server (moto) on 127.0.0.1, for a module's tests of S3 sources."""
    from moto.server import ThreadedMotoServer

    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    srv.start()
    host, port = srv.get_host_and_port()
    yield f"http://{host}:{port}"
    srv.stop()


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory) -> Path:
    """Untrained `ci`-preset exports (stage1/ with its latents' statistics over 96 random images in
    real shards, stage2/) in a folder of their own: for the API, the commands' mechanics and the
    adapters, where what the weights learned does not matter. Read-only."""
    import numpy as np
    import torch

    from ul.artifacts import export, latent_stats
    from ul.common.shards import ShardReader, ShardWriter
    from ul.core.model import BaseModel, UnifiedLatents

    out = tmp_path_factory.mktemp("tiny_export")
    cfg = preset_config("ci")
    torch.manual_seed(0)
    model = UnifiedLatents(cfg).eval()
    writer = ShardWriter(out / "images", shard_size=64, prefix="images")
    writer.add(np.random.default_rng(0).integers(0, 256, (96, *model.x_shape), dtype=np.uint8))
    writer.close({})
    latents = latent_stats.measure(model, ShardReader(out / "images"), "cpu", seed=0, batch_size=32, progress=False)
    export.save(model, cfg, out / "stage1", {"steps": 0}, latents)
    export.save(BaseModel(cfg), cfg, out / "stage2", {"steps": 0})
    return out
