"""The DVC pipeline end to end, with real `dvc` commands in a temporary git + DVC repository."""

import hashlib
import json
import math
import socket
from pathlib import Path

import pytest
import yaml
from project import ALL, ALWAYS, CHEAP, copy_of, pending, ran_stages, sh

from ul import Autoencoder
from ul.common.errors import ExportError

DATA = {"fetch", "pixels", "validate", "i3d_weights"}  # never re-run by a model parameter

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ci_project(ci_project, tmp_path_factory):
    """This module's own copy of the shared ci run: its tests re-run stages in it."""
    return copy_of(ci_project, tmp_path_factory, "pipeline")


def test_ci_preset_runs_all_stages_and_then_none(ci_project):
    metrics = json.loads((ci_project / "eval/metrics.json").read_text())
    for key in (
        "psnr_db",
        "rfid",
        "gfid",
        "fid_num_samples",
        "latent_bits_per_image",
        "latent_bits_per_dim",
        "latent_bits_per_pixel",
        "latent_use_elbo_nats",
        "gkid",
        "gkid_stderr",
        "fid_floor",
        "sampling_flops",
    ):
        assert isinstance(metrics.get(key), int | float) and math.isfinite(metrics[key]), (key, metrics.get(key))
    assert 5 < metrics["psnr_db"] < 100 and metrics["gfid"] > 0 and metrics["latent_bits_per_image"] > 0
    assert metrics["sampling_flops"] > 1e6
    trained = [json.loads((ci_project / f"metrics/train_stage{k}.json").read_text())["train_flops"] for k in (1, 2)]
    assert (
        metrics["train_flops"] == sum(trained) and metrics["pipeline_flops"] == sum(trained) + metrics["sampling_flops"]
    )
    assert "train_stage1.json" not in sh(["dvc", "metrics", "show"], ci_project).stdout  # bookkeeping is not a metric
    for png in ("samples.png", "reconstructions.png"):
        assert (ci_project / "eval" / png).stat().st_size > 100
    # every output is ignored by the root .gitignore: a run leaves no stray .gitignore (nor outputs) to commit
    untracked = sh(["git", "status", "--porcelain", "--untracked-files=all"], ci_project).stdout
    assert "??" not in untracked, untracked
    again = sh(["dvc", "exp", "run", "-S", "preset=ci"], ci_project)
    assert ran_stages(again.stdout + again.stderr) == ALWAYS, again.stdout[-2000:]  # the source is looked at
    shown = sh(["dvc", "metrics", "show", "--json"], ci_project).stdout
    assert "psnr_db" in shown and "latent_bits_per_pixel" in shown


def _set(*overrides: str) -> list:
    return [a for o in overrides for a in ("-S", o)]


@pytest.mark.parametrize("logsnr", ["3", "10"])
def test_logsnr_change_reruns_training_onwards_never_data(ci_project, logsnr):
    r = sh(["dvc", "exp", "run", *_set("preset=ci", f"noise.logsnr={logsnr}", *CHEAP)], ci_project)
    ran = ran_stages(r.stdout + r.stderr)
    assert ran == ALL - DATA, r.stdout[-3000:]
    assert yaml.safe_load((ci_project / "params.yaml").read_text())["noise"]["logsnr"] == float(logsnr)


def test_the_klvae_baseline_runs_through_every_model_stage(ci_project):
    """`-S latent=klvae`: the SD-style baseline trains, caches, feeds the same base model and is
    evaluated by the same stage; the data stages are not re-run."""
    r = sh(["dvc", "exp", "run", *_set("preset=ci", "latent=klvae", *CHEAP)], ci_project)
    assert ran_stages(r.stdout + r.stderr) == ALL - DATA, r.stdout[-3000:]
    config = json.loads((ci_project / "models/stage1/config.json").read_text())
    assert config["class"] == "KLVAE" and "final_kl" in config["training"]
    metrics = json.loads((ci_project / "eval/metrics.json").read_text())
    assert metrics["latent_bits_per_pixel"] > 0 and metrics["gfid"] > 0 and "latent_use_elbo_nats" not in metrics
    sh(["dvc", "exp", "run", "-S", "preset=ci"], ci_project)  # back to UL for the tests that follow


def test_dvc_repro_runs_the_training_stages_under_torchrun_when_launch_asks(ci_project):
    """`stageN.launch.nproc_per_node=2`: the same dvc.yaml command starts torchrun (gloo, 2 CPU
    processes); DVC records outputs laid out as a one-process run's, and rank 0 alone writes them."""
    layout = {s: sorted(p.name for p in (ci_project / "models" / s).iterdir()) for s in ("stage1", "stage2")}
    two = ("stage1.launch.nproc_per_node=2", "stage2.launch.nproc_per_node=2")
    r = sh(["dvc", "exp", "run", *_set("preset=ci", *two, *CHEAP)], ci_project, OMP_NUM_THREADS="1")
    out = r.stdout + r.stderr
    assert ran_stages(out) == ALL - DATA, out[-3000:]
    for stage in ("train_stage1", "train_stage2"):
        assert json.loads((ci_project / "metrics" / f"{stage}.json").read_text())["processes"] == 2
    assert {s: sorted(p.name for p in (ci_project / "models" / s).iterdir()) for s in layout} == layout
    assert pending(ci_project) == {}, "dvc status: every output as dvc.lock records it"
    rows = (ci_project / "metrics" / "stage1_train.tsv").read_text().splitlines()
    assert len(rows) == 1 + 10 // 10, "one process wrote the training curve"
    sh(["dvc", "exp", "run", "-S", "preset=ci"], ci_project)  # back to one process for the tests that follow


def test_caching_and_evaluation_over_two_processes_give_what_one_process_gives(ci_project, tmp_path):
    """`cache.launch` / `eval.launch`: each rank its share of the batches, gathered on rank 0: the
    latent cache byte for byte, the metrics within float tolerance (features gathered, one FID)."""
    params = yaml.safe_load((ci_project / "params.yaml").read_text())
    params["eval"]["batch_size"] = 16  # 64 images and 32 samples: batches for both ranks

    def run(stage: str, n: int, *args: str) -> Path:
        out = tmp_path / f"{stage}-{n}"
        p = json.loads(json.dumps(params))
        p["cache" if stage == "cache_latents" else "eval"]["launch"]["nproc_per_node"] = n
        (tmp_path / f"{stage}-{n}.yaml").write_text(yaml.safe_dump(p))
        cmd = ["python", "-m", f"ul.stages.{stage}", "--params", tmp_path / f"{stage}-{n}.yaml"]
        sh([*cmd, "--out", out, "--metrics", out / "metrics.json", *args], ci_project, OMP_NUM_THREADS="1")
        return out

    one, two = run("cache_latents", 1), run("cache_latents", 2)
    assert json.loads((two / "metrics.json").read_text())["processes"] == 2
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file() and p.name != "metrics.json")
    assert files and files == sorted(
        p.relative_to(two) for p in two.rglob("*") if p.is_file() and p.name != "metrics.json"
    )
    for f in files:
        assert (one / f).read_bytes() == (two / f).read_bytes(), f
    a, b = (json.loads((run("evaluate", n) / "metrics.json").read_text()) for n in (1, 2))
    assert (a.pop("processes"), b.pop("processes")) == (1, 2) and a.keys() == b.keys()
    for k, v in a.items():
        assert b[k] == (pytest.approx(v, rel=1e-4, abs=1e-6) if isinstance(v, float) else v), k


def test_training_curves_are_dvc_plots(ci_project):
    out = sh(["dvc", "plots", "show", "--json"], ci_project).stdout
    assert "stage1_train.tsv" in out and "samples.png" in out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_push_pull_round_trip_through_s3(ci_project, tmp_path):
    import boto3
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    creds = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    try:
        boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{port}",
            **{k.lower(): v for k, v in creds.items() if k != "AWS_DEFAULT_REGION"},
            region_name="us-east-1",
        ).create_bucket(Bucket="ul-dvc")
        sh(["dvc", "remote", "add", "-f", "-d", "store", "s3://ul-dvc/dvc"], ci_project)
        sh(["dvc", "remote", "modify", "store", "endpointurl", f"http://127.0.0.1:{port}"], ci_project)
        sh(["git", "add", "-A"], ci_project)
        sh(["git", "commit", "-qm", "run"], ci_project)
        sh(["dvc", "push"], ci_project, **creds)
        clone = tmp_path / "clone"
        sh(["git", "clone", "-q", str(ci_project), str(clone)], tmp_path)
        sh(["dvc", "pull"], clone, **creds)
        for rel in (
            "data/pixels/train/index.json",
            "models/stage1/model.safetensors",
            "models/stage2/model.safetensors",
            "data/latents/train/index.json",
            "eval/samples.png",
        ):
            assert (clone / rel).read_bytes() == (ci_project / rel).read_bytes(), rel
        assert pending(clone) == {}  # but the source stage, which looks at the source on every repro

        # an object altered on the remote (same size): `verify = true` (the README's remote setup) makes
        # `dvc pull` refuse it; without it DVC uses it, and the export's recorded weight hash refuses it
        weights = (clone / "models/stage1/model.safetensors").read_bytes()
        md5 = hashlib.md5(weights).hexdigest()
        s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id="test",
                          aws_secret_access_key="test", region_name="us-east-1")  # fmt: skip
        altered = weights[:-1] + bytes([weights[-1] ^ 1])
        s3.put_object(Bucket="ul-dvc", Key=f"dvc/files/md5/{md5[:2]}/{md5[2:]}", Body=altered)
        for name, verify in (("verified", True), ("trusting", False)):
            other = tmp_path / name
            sh(["git", "clone", "-q", str(ci_project), str(other)], tmp_path)
            if verify:
                sh(["dvc", "remote", "modify", "store", "verify", "true"], other)
            r = sh(["dvc", "pull"], other, check=False, **creds)
            got = other / "models/stage1/model.safetensors"
            if verify:
                assert r.returncode != 0 and not got.exists(), r.stdout + r.stderr
            else:
                assert got.read_bytes() == altered  # DVC's default trusts the remote
                with pytest.raises(ExportError, match="sha256 differs from the weights_sha256"):
                    Autoencoder.load(other / "models/stage1")
    finally:
        server.stop()
    # the server is gone: a clear error, and the local cache is untouched
    r = sh(["dvc", "push", "-v"], ci_project, check=False, timeout=300, **creds)
    assert r.returncode != 0
    assert "127.0.0.1" in (r.stdout + r.stderr) or "connect" in (r.stdout + r.stderr).lower()
    assert pending(ci_project) == {}


def _image_folder(tmp_path: Path, n=24) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for split in ("train", "test"):
        for i in range(n if split == "train" else 8):
            p = root / split / f"c{i % 2}" / f"{i:03d}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(20, 230, (32, 32), dtype=np.uint8)).save(p)
    return root


def test_corrupt_image_stops_at_pixels_or_is_listed(ci_project, tmp_path):
    root = _image_folder(tmp_path)
    bad = root / "train/c0/bad.png"
    good = (root / "train/c0/000.png").read_bytes()
    bad.write_bytes(good[: len(good) // 2])
    src = ["-S", "preset=ci", "-S", f"data.source=file://{root}"]
    r = sh(["dvc", "exp", "run", "validate", *src], ci_project, check=False)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "bad.png" in out, out[-3000:]
    assert "validate" not in ran_stages(out)
    r = sh(["dvc", "exp", "run", "validate", *src, "-S", "pixels.on_error=skip"], ci_project)
    skipped = json.loads((ci_project / "data/pixels/skipped.json").read_text())
    assert any("bad.png" in json.dumps(s) for s in skipped)
    assert json.loads((ci_project / "metrics/pixels.json").read_text())["skipped"] == 1


def _plant_duplicate(root: Path) -> str:
    (root / "train/c1/dup.png").write_bytes((root / "train/c0/000.png").read_bytes())
    return "dup.png"


def _plant_oversized(root: Path) -> str:
    import numpy as np
    from PIL import Image

    Image.fromarray(np.full((40, 40), 128, dtype=np.uint8)).save(root / "train/c1/big.png")
    return "big.png"


@pytest.mark.parametrize("plant,expectation", [(_plant_duplicate, "unique"), (_plant_oversized, "between")])
def test_duplicate_or_oversized_image_fails_validate_readably(ci_project, tmp_path, plant, expectation):
    root = _image_folder(tmp_path)
    name = plant(root)
    r = sh(
        ["dvc", "exp", "run", "validate", "-S", "preset=ci", "-S", f"data.source=file://{root}"],
        ci_project,
        check=False,
    )
    out = r.stdout + r.stderr
    assert r.returncode != 0, out[-3000:]
    assert "validate" in ran_stages(out) and "train_stage1" not in ran_stages(out)
    assert expectation in out.lower() and name in out, out[-3000:]
