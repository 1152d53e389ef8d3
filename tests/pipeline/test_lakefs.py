"""lakeFS without a lakeFS server: `ul data pin` and `ul release` against the lakeFS OpenAPI document
served by prism (`prism mock --errors`: every request the SDK sends is validated against the
document, and a malformed one is answered 4xx, which fails these tests), the S3 gateway's bytes
against moto, and a DVC remote on the gateway configured the way the README says."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import preset_config
from servers import COMMIT, ROOT, Moto, Prism, free_port, prism_binary

from ul import cli, release
from ul.artifacts import export
from ul.core.model import BaseModel, UnifiedLatents
from ul.storage import StorageError, lakefs

KEY, SECRET = "AKIAUL-TEST", "ul-test-secret-do-not-log"
needs_prism = pytest.mark.skipif(
    prism_binary() is None, reason="prism (lakeFS API mock) not installed: run `npm ci --prefix tools` (needs node/npm)"
)


@pytest.fixture(scope="module")
def prism(tmp_path_factory):
    if prism_binary() is None:
        pytest.skip("prism (lakeFS API mock) not installed: run `npm ci --prefix tools` (needs node/npm)")
    p = Prism(tmp_path_factory.mktemp("prism"))
    yield p
    p.stop()


@pytest.fixture(scope="module")
def moto():
    m = Moto().start()
    yield m
    m.stop()


@pytest.fixture
def lakefs_env(monkeypatch, prism):
    monkeypatch.setenv("LAKEFS_HOST", prism.url)
    monkeypatch.setenv("LAKEFS_ACCESS_KEY_ID", KEY)
    monkeypatch.setenv("LAKEFS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.delenv("LAKEFS_ENDPOINT", raising=False)
    for v in [v for v in os.environ if v.startswith("LAKECTL_")]:
        monkeypatch.delenv(v)


def _config_copy(tmp_path: Path) -> tuple:
    shutil.copytree(ROOT / "conf", tmp_path / "conf")
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    return tmp_path / "conf" / "config.yaml", tmp_path / "params.yaml"


# ---- no server -------------------------------------------------------------------------------


def test_lakefs_urls():
    p = lakefs.LakeFSPath.parse("lakefs://repo/main/a/b/")
    assert (p.repo, p.ref, p.path, str(p)) == ("repo", "main", "a/b", "lakefs://repo/main/a/b")
    assert not p.pinned and p.at(COMMIT).pinned and str(p.at(COMMIT)) == f"lakefs://repo/{COMMIT}/a/b"
    assert str(lakefs.LakeFSPath.parse("lakefs://repo/main")) == "lakefs://repo/main"
    for bad in ("s3://repo/main/x", "lakefs://repo", "lakefs:///main/x", "lakefs://repo//x"):
        with pytest.raises(StorageError):
            lakefs.LakeFSPath.parse(bad)


def test_set_data_source_changes_only_that_value(tmp_path):
    conf, params = _config_copy(tmp_path)
    before = {f: f.read_text() for f in (conf, params)}
    value = f"lakefs://ul-data/{COMMIT}/it's/images"  # a quote inside, to be escaped
    for f in (conf, params):
        old = lakefs.set_data_source(f, value)
        assert old == yaml.safe_load(before[f])["data"]["source"]
        after = f.read_text()
        changed = [(a, b) for a, b in zip(before[f].splitlines(), after.splitlines()) if a != b]
        assert len(changed) == 1 and len(after.splitlines()) == len(before[f].splitlines())  # comments, style kept
        want = yaml.safe_load(before[f])
        want["data"]["source"] = value
        assert yaml.safe_load(after) == want
    bare = tmp_path / "bare.yaml"
    bare.write_text("seed: 0\n")
    with pytest.raises(StorageError, match="no data.source"):
        lakefs.set_data_source(bare, value)


def test_missing_environment_is_named_without_values(tmp_path, monkeypatch, capsys):
    conf, params = _config_copy(tmp_path)
    monkeypatch.setenv("LAKEFS_ACCESS_KEY_ID", KEY)
    monkeypatch.setenv("LAKEFS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.delenv("LAKEFS_HOST", raising=False)
    assert cli.main(["data", "pin", "lakefs://ul-data/main/images", "--conf", str(conf), "--params", str(params)]) == 1
    err = capsys.readouterr().err
    assert "set LAKEFS_HOST" in err and SECRET not in err and KEY not in err
    assert yaml.safe_load(params.read_text())["data"]["source"] == "builtin:fashion-mnist"  # untouched
    with pytest.raises(StorageError, match="64 hex"):
        lakefs.pin("lakefs://ul-data/main/images", conf, params, commit="main")


def test_unreachable_lakefs_is_one_clear_line(tmp_path, monkeypatch):
    conf, params = _config_copy(tmp_path)
    port = free_port()
    monkeypatch.setenv("LAKEFS_HOST", f"http://{KEY}:{SECRET}@127.0.0.1:{port}")
    monkeypatch.setenv("LAKEFS_ACCESS_KEY_ID", KEY)
    monkeypatch.setenv("LAKEFS_SECRET_ACCESS_KEY", SECRET)
    with pytest.raises(StorageError, match=f"cannot reach lakeFS at http://127.0.0.1:{port}") as err:
        lakefs.pin("lakefs://ul-data/main/images", conf, params)
    assert SECRET not in str(err.value) and KEY not in str(err.value)
    assert err.value.transient  # the flows retry it (flows/common.retry_if_transient)


@pytest.mark.parametrize(
    "status,transient", [(500, True), (503, True), (429, True), (400, False), (401, False), (403, False), (404, False)]
)
def test_only_server_failures_are_transient(status, transient):
    from lakefs_sdk.exceptions import ApiException

    def refused():
        raise ApiException(status=status, reason="Because")

    with pytest.raises(StorageError, match="lakefs://r/main") as err:
        lakefs.call("lakefs://r/main", refused)
    assert err.value.transient is transient


def test_the_gateway_is_lakefs_host_unless_lakefs_endpoint_is_set(monkeypatch):
    for var in ("LAKEFS_HOST", "LAKEFS_ENDPOINT", "LAKEFS_ACCESS_KEY_ID", "LAKEFS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(
        StorageError, match="set LAKEFS_ENDPOINT \\(or LAKEFS_HOST\\), LAKEFS_ACCESS_KEY_ID, LAKEFS_SECRET_ACCESS_KEY"
    ):
        lakefs.gateway_settings()
    monkeypatch.setenv("LAKEFS_ACCESS_KEY_ID", KEY)
    monkeypatch.setenv("LAKEFS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("LAKEFS_HOST", "http://lakefs:8000")
    assert lakefs.gateway_settings() == ("http://lakefs:8000", KEY, SECRET)
    monkeypatch.setenv("LAKEFS_ENDPOINT", "http://gateway:9000")
    assert lakefs.gateway_settings() == ("http://gateway:9000", KEY, SECRET)


# ---- against the lakeFS OpenAPI document (prism) -----------------------------------------------


@needs_prism
def test_pin_resolves_the_branch_through_the_api(tmp_path, lakefs_env, prism, capsys):
    conf, params = _config_copy(tmp_path)
    rc = cli.main(["data", "pin", "lakefs://ul-data/main/images", "--conf", str(conf), "--params", str(params)])
    out = capsys.readouterr()
    assert rc == 0, out.err
    pinned = f"lakefs://ul-data/{COMMIT}/images"
    assert pinned in out.out and SECRET not in out.out + out.err
    for f in (conf, params):
        assert yaml.safe_load(f.read_text())["data"]["source"] == pinned
    assert "GET" in prism.requests() and "/api/v1/repositories/ul-data/commits/main" in prism.requests()

    from ul.params import compose_params  # what `dvc exp run` composes now names the commit

    assert compose_params(conf.parent, ["preset=ci"])["data"]["source"] == pinned
    from ul.common.config import load

    assert load(params).data.source == pinned  # and the stages' schema takes it


@needs_prism
def test_api_refusals_are_storage_errors(lakefs_env, prism):
    import lakefs as lakefs_sdk_hl
    from lakefs_sdk import CommitCreation

    anonymous = lakefs_sdk_hl.Client(host=prism.url)  # no credentials: no Authorization header
    with pytest.raises(StorageError, match="refused the credentials") as err:
        lakefs.resolve("lakefs://ul-data/main/images", anonymous)
    assert SECRET not in str(err.value)

    sdk = lakefs.client().sdk_client
    assert sdk.commits_api.commit("ul-data", "main", CommitCreation(message="ok", metadata={"a": "b"})).id == COMMIT
    # The guard itself: a body that violates the document (metadata values must be strings) is refused.
    api = sdk.commits_api.api_client
    with pytest.raises(StorageError, match="answered 400"):
        lakefs.call(
            "malformed commit",
            api.call_api,
            "/repositories/{repository}/branches/{branch}/commits",
            "POST",
            path_params={"repository": "ul-data", "branch": "main"},
            header_params={"Content-Type": "application/json", "Accept": "application/json"},
            body={"message": "x", "metadata": {"n": 3}},
            response_types_map={"201": "Commit"},
            auth_settings=["basic_auth"],
            _return_http_data_only=True,
        )


def _trained_tree(root: Path, source: str) -> Path:
    """What `dvc repro` leaves behind, as far as `ul release` reads it (model files of any bytes)."""
    cfg = preset_config("ci", **{"decoder.channels": "[96,192,384]"})  # a stage-1 export > 8 MiB: multipart upload
    export.save(UnifiedLatents(cfg), cfg, root / "models" / "stage1", {"steps": 0})
    export.save(BaseModel(cfg), cfg, root / "models" / "stage2", {"steps": 0})
    (root / "eval").mkdir()
    (root / "eval" / "metrics.json").write_text(
        json.dumps(
            {
                "psnr_db": 24.25,
                "rfid": 31.5,
                "gfid": 48.75,
                "fid_num_samples": 64,
                "latent_bits_per_image": 412.0,
                "latent_bits_per_dim": 0.1,
                "latent_bits_per_pixel": 0.4,
                "sampler": "ddim",
            }
        )
    )
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["source"] = source
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost"]
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run([*git, "add", "params.yaml", "dvc.lock"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "run"], cwd=root, check=True)
    return root


@needs_prism
def test_release_uploads_through_the_gateway_and_commits_provenance(
    tmp_path, lakefs_env, prism, moto, monkeypatch, capsys
):
    monkeypatch.setenv("LAKEFS_ENDPOINT", moto.url)  # the S3 gateway (moto here), the API at LAKEFS_HOST (prism)
    moto.s3().create_bucket(Bucket="models")  # lakeFS repository = gateway bucket
    root = _trained_tree(tmp_path / "run", f"lakefs://ul-data/{COMMIT}/images")
    rc = cli.main(["release", "lakefs://models/release-1/ul-fmnist", "--root", str(root)])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert f"lakeFS commit {COMMIT}" in out.out and f"lakefs://models/{COMMIT}/ul-fmnist" in out.out
    assert SECRET not in out.out + out.err

    keys = moto.keys("models", "release-1/ul-fmnist/")
    models = [f"stage{i}/{f}" for i in (1, 2) for f in ("model.safetensors", "config.json", "README.md")]
    assert set(keys) == {f"release-1/ul-fmnist/{n}" for n in (*models, "metrics.json", "params.yaml", "dvc.lock")}
    body = moto.s3().get_object(Bucket="models", Key="release-1/ul-fmnist/stage1/model.safetensors")["Body"].read()
    assert body == (root / "models/stage1/model.safetensors").read_bytes() and len(body) > 8 * 2**20
    card = moto.s3().get_object(Bucket="models", Key="release-1/ul-fmnist/stage1/README.md")["Body"].read().decode()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    for want in (
        "| PSNR (dB) | 24.25 |",
        "| gFID | 48.75 |",
        "| latent bits / pixel | 0.4 |",
        f"git commit: `{head}`",
        hashlib.sha256((root / "dvc.lock").read_bytes()).hexdigest(),
        f"lakeFS commit `{COMMIT}`",
        "loss_factor: 2.1",
        'Autoencoder.load("stage1")',
    ):
        assert want in card, want
    log = prism.requests()
    assert "POST" in log and "/api/v1/repositories/models/branches" in log  # created from main if missing
    assert "/api/v1/repositories/models/branches/release-1/commits" in log

    meta = release.commit_metadata(release.provenance(root), json.loads((root / "eval/metrics.json").read_text()))
    assert meta["ul.git_commit"] == head and meta["ul.data_commit"] == COMMIT and meta["ul.gfid"] == "48.75"
    assert all(isinstance(v, str) for v in meta.values())  # lakeFS commit metadata is string to string

    (root / "models/stage2/model.safetensors").unlink()
    assert cli.main(["release", "lakefs://models/release-1/x", "--root", str(root)]) == 1
    assert "models/stage2/model.safetensors: missing" in capsys.readouterr().err
    with pytest.raises(StorageError, match="not to a commit id"):
        release.release(f"lakefs://models/{COMMIT}/x", root)


# ---- a DVC remote on the lakeFS S3 gateway (the README's commands; moto speaks the protocol) ----


def test_dvc_remote_on_the_s3_gateway(tmp_path, moto):
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
        "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
    }

    def run(*cmd):
        out = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
        assert out.returncode == 0, f"{cmd}: {out.stdout}{out.stderr}"
        return out.stdout

    run("git", "init", "-q")
    run("dvc", "init", "-q")
    (repo / "data.bin").write_bytes(os.urandom(100_000))
    run("dvc", "add", "-q", "data.bin")
    moto.s3().create_bucket(Bucket="ul-dvc")  # the lakeFS repository
    run("dvc", "remote", "add", "-d", "lakefs", "s3://ul-dvc/main/dvc-cache")  # <repo>/<branch>/<prefix>
    run("dvc", "remote", "modify", "lakefs", "endpointurl", moto.url)
    run("dvc", "remote", "modify", "--local", "lakefs", "access_key_id", KEY)
    run("dvc", "remote", "modify", "--local", "lakefs", "secret_access_key", SECRET)
    assert SECRET not in (repo / ".dvc" / "config").read_text()  # keys only in config.local (git-ignored)
    run("dvc", "push")
    md5 = yaml.safe_load((repo / "data.bin.dvc").read_text())["outs"][0]["md5"]
    assert f"main/dvc-cache/files/md5/{md5[:2]}/{md5[2:]}" in moto.keys("ul-dvc", "main/dvc-cache/")
    original = (repo / "data.bin").read_bytes()
    (repo / "data.bin").unlink()
    shutil.rmtree(repo / ".dvc" / "cache")
    run("dvc", "pull")
    assert (repo / "data.bin").read_bytes() == original
