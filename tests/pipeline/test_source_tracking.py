"""A mutable source is versioned: with real DVC, `dvc repro` re-runs fetch when a folder's or a
bucket's contents change (a file added, removed, edited at the same size, renamed) and skips it
when they do not (an unchanged source, or an mtime touched on equal bytes): the `source` stage's
fingerprint (ul.data.fetch.fingerprint) is what fetch depends on."""

from __future__ import annotations

import io
import json
import os

import boto3
from datahelpers import noise, write_folder
from PIL import Image
from project import copy_project, ran_stages, sh


def _png(seed: int) -> bytes:
    """An uncompressed PNG: its size depends only on its shape, so an edit can keep the size."""
    buf = io.BytesIO()
    Image.fromarray(noise(seed)).save(buf, format="PNG", compress_level=0)
    return buf.getvalue()


def _project(tmp_path, source: str, **env):
    proj = copy_project(tmp_path / "proj")
    sh(["ul", "params", "preset=ci", f"data.source={source}"], proj, **env)
    return proj


def _fetch_ran(proj, **env) -> bool:
    r = sh(["dvc", "repro", "fetch"], proj, **env)
    ran = ran_stages(r.stdout + r.stderr)
    assert "source" in ran, r.stdout[-2000:]  # looked at on every repro
    return "fetch" in ran


def test_a_changed_folder_is_fetched_again_and_an_unchanged_one_is_not(tmp_path):
    images = write_folder(tmp_path / "images", {f"{k:02d}.png": _png(k) for k in range(8)})
    proj = _project(tmp_path, f"file://{images}")
    assert _fetch_ran(proj)
    assert not _fetch_ran(proj)  # unchanged

    st = os.stat(images / "03.png")
    os.utime(images / "03.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched, same bytes
    assert not _fetch_ran(proj)
    cache = json.loads((proj / "data" / "source.cache.json").read_text())
    assert cache[str(images / "03.png")][1] == st.st_mtime_ns + 10**9  # re-hashed once, remembered

    (images / "08.png").write_bytes(_png(8))  # added
    assert _fetch_ran(proj)
    (images / "00.png").unlink()  # removed
    assert _fetch_ran(proj)
    edited = _png(99)
    assert len(edited) == (images / "05.png").stat().st_size
    (images / "05.png").write_bytes(edited)  # edited, same size
    assert _fetch_ran(proj)
    (images / "06.png").rename(images / "60.png")  # renamed
    assert _fetch_ran(proj)
    assert not _fetch_ran(proj)
    manifest = (proj / "data" / "raw" / "manifest.csv").read_text()
    assert "60.png" in manifest and "06.png" not in manifest and "00.png" not in manifest


def test_a_changed_bucket_is_fetched_again_and_an_unchanged_one_is_not(tmp_path, moto_endpoint):
    env = dict(S3_ENDPOINT_URL=moto_endpoint, AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s")
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="k",
                      aws_secret_access_key="s")  # fmt: skip
    s3.create_bucket(Bucket="data")
    for k in range(6):
        s3.put_object(Bucket="data", Key=f"imgs/{k}.png", Body=_png(k))
    proj = _project(tmp_path, "s3://data/imgs", **env)
    assert _fetch_ran(proj, **env)
    assert not _fetch_ran(proj, **env)
    s3.put_object(Bucket="data", Key="imgs/2.png", Body=_png(42))  # edited, same size, new ETag
    assert _fetch_ran(proj, **env)
    s3.delete_object(Bucket="data", Key="imgs/4.png")
    assert _fetch_ran(proj, **env)
    assert not _fetch_ran(proj, **env)
    rows = (proj / "data/raw/manifest.csv").read_text().splitlines()[1:]
    assert len(rows) == 5 and not any(r.startswith(("4.png", "train/4.png", "test/4.png")) for r in rows)
