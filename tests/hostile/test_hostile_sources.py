"""Hostile data sources (issue 9, classes 1-3, 6-7): folders with links, pipes and odd names,
archive bombs, credentials in URLs, forged manifests. Each case is small and runs in-process."""

from __future__ import annotations

import hashlib
import json
import os
import threading

import pytest
from datahelpers import class_folder, noise, png, raw_files, write_folder

from ul.data import manifest
from ul.data.fetch import folder
from ul.data.fetch.sources import fetch
from ul.data.layout import DataError


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _no_leftovers(parent):
    return [p.name for p in parent.iterdir() if p.name.startswith(".")] == []


# ---- class 1: folder sources read only regular files inside the folder ---------------------------


def test_links_out_of_the_folder_are_skipped_and_listed(tmp_path):
    src = class_folder(tmp_path / "src", per_class=4)
    outside = write_folder(tmp_path / "outside", {"secret.png": png(noise(77)), "x/y.png": png(noise(78))})
    os.symlink("/etc/passwd", src / "cat" / "passwd.png")
    os.symlink(outside / "secret.png", src / "dog" / "secret.png")
    os.symlink(outside / "x", src / "dog" / "linked_dir")
    os.symlink(outside, src / "bird")  # a link as a class folder
    m = fetch(f"file://{src}", tmp_path / "raw")
    assert sum(m["images"].values()) == 8 and m["classes"] == 2
    assert set(m["skipped"]) == {"cat/passwd.png", "dog/secret.png", "dog/linked_dir", "bird"}
    assert all("symbolic link" in r for r in m["skipped"].values())
    copied = {_sha(data) for data in raw_files(tmp_path / "raw").values()}
    assert len(copied) == 8 and _sha(png(noise(77))) not in copied and _sha(png(noise(78))) not in copied
    assert b"root:" not in b"".join(p.read_bytes() for p in (tmp_path / "raw").rglob("*") if p.is_file())


def test_a_split_folder_that_is_a_link_is_refused(tmp_path):
    src = write_folder(tmp_path / "src", {"train/a.png": png(noise(1)), "train/b.png": png(noise(2))})
    outside = write_folder(tmp_path / "elsewhere", {"c.png": png(noise(3))})
    os.symlink(outside, src / "test")
    with pytest.raises(DataError, match=r"test/ is a symbolic link"):
        fetch(f"file://{src}", tmp_path / "raw")
    assert not (tmp_path / "raw").exists() and _no_leftovers(tmp_path)


def test_a_single_wrapping_link_is_not_unwrapped(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    os.symlink(class_folder(tmp_path / "outside", per_class=3), src / "dataset")
    with pytest.raises(DataError, match="found 0 PNG/JPEG/WebP/BMP/TIFF/GIF"):
        fetch(f"file://{src}", tmp_path / "raw")


def test_a_named_pipe_does_not_hang_fetch(tmp_path):
    src = class_folder(tmp_path / "src", per_class=3)
    os.mkfifo(src / "cat" / "pipe.png")
    result = {}
    t = threading.Thread(target=lambda: result.update(fetch(f"file://{src}", tmp_path / "raw")), daemon=True)
    t.start()
    t.join(30)
    assert not t.is_alive(), "fetch blocked on a named pipe"
    assert result["skipped"] == {"cat/pipe.png": "not a regular file (a pipe, device or socket)"}
    assert sum(result["images"].values()) == 6


def test_a_file_swapped_for_a_pipe_after_the_walk_is_refused(tmp_path, monkeypatch):
    src = class_folder(tmp_path / "src", per_class=3)
    real = folder.Walk.files

    def swap(self, top=""):
        found = real(self, top)
        victim = src / "cat" / "001.png"
        if victim.exists():
            victim.unlink()
            os.mkfifo(victim)
        return found

    monkeypatch.setattr(folder.Walk, "files", swap)
    with pytest.raises(DataError, match="001.png: not a regular file"):
        fetch(f"file://{src}", tmp_path / "raw")


@pytest.mark.parametrize("root", ["/", "/etc", "/proc", "/usr", "~"])
def test_system_roots_are_refused(tmp_path, root):
    path = os.path.expanduser(root)
    with pytest.raises(DataError, match="system folder"):
        fetch(f"file://{path}", tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_the_walk_is_bounded_before_hashing(tmp_path, monkeypatch):
    src = class_folder(tmp_path / "src", per_class=6)
    hashed = []
    monkeypatch.setattr(folder, "_hash", lambda p: hashed.append(p) or "0" * 64)
    monkeypatch.setattr(folder, "MAX_ENTRIES", 5)
    with pytest.raises(DataError, match="more than 5 files and folders"):
        fetch(f"file://{src}", tmp_path / "raw")
    monkeypatch.setattr(folder, "MAX_ENTRIES", 1000)
    monkeypatch.setattr(folder, "MAX_TOTAL_BYTES", 2000)
    with pytest.raises(DataError, match="more than 2,000 bytes of images"):
        fetch(f"file://{src}", tmp_path / "raw")
    assert hashed == [] and not (tmp_path / "raw").exists()


def test_an_oversized_file_is_skipped(tmp_path, monkeypatch):
    src = class_folder(tmp_path / "src", per_class=3)
    (src / "cat" / "huge.png").write_bytes(png(noise(5, 200, 200)))
    monkeypatch.setattr(folder, "MAX_FILE_BYTES", 10_000)
    m = fetch(f"file://{src}", tmp_path / "raw")
    assert list(m["skipped"]) == ["cat/huge.png"] and "over the 10,000-byte limit" in m["skipped"]["cat/huge.png"]


# ---- class 7: file names are data ---------------------------------------------------------------


def test_names_with_newlines_control_characters_or_bad_bytes_are_skipped(tmp_path, capsys):
    src = class_folder(tmp_path / "src", per_class=3)
    forged = "x.png\nerror: stage evaluate failed.png"
    (src / "cat" / forged).write_bytes(png(noise(40)))
    (src / "cat" / "bell\x07.png").write_bytes(png(noise(41)))
    os.makedirs(os.fsencode(src / "dog") + b"/\xff\xfe", exist_ok=True)
    with open(os.fsencode(src / "dog") + b"/\xff\xfe/z.png", "wb") as f:
        f.write(png(noise(42)))
    with open(os.fsencode(src / "dog") + b"/caf\xe9.png", "wb") as f:  # Latin-1, not UTF-8
        f.write(png(noise(43)))
    m = fetch(f"file://{src}", tmp_path / "raw")
    assert sum(m["images"].values()) == 6
    assert len(m["skipped"]) == 4 and all("\n" not in k and k.isprintable() for k in m["skipped"])
    err = capsys.readouterr().err
    assert not any(line.startswith("error:") for line in err.splitlines()), err
    rows = manifest.read(tmp_path / "raw")
    assert all(e.path.isprintable() for e in rows) and len(rows) == 6
    json.dumps(m, ensure_ascii=False).encode("utf-8")  # the metrics file can be written


# ---- class 2: archives and downloads have budgets ------------------------------------------------


@pytest.fixture(scope="module")
def server():
    from datahelpers import Server

    s = Server()
    yield s
    s.close()


@pytest.fixture(scope="module")
def images():
    return {f"dataset/{c}/{k}.png": png(noise(10 * i + k)) for i, c in enumerate("ab") for k in range(3)}


def _serve(server, name, data):
    server.routes[f"/{name}"] = (data, None)
    return server.url(f"/{name}")


def _bomb_zip(size: int) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("dataset/a/bomb.png", b"\0" * size)
    return buf.getvalue()


def _bomb_tgz(size: int) -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("dataset/a/bomb.png")
        info.size = size
        tf.addfile(info, io.BytesIO(b"\0" * size))
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["zip", "tgz"])
def test_a_decompression_bomb_is_refused_before_extraction(tmp_path, server, monkeypatch, kind):
    from ul.data.fetch import archive

    data = _bomb_zip(8 << 20) if kind == "zip" else _bomb_tgz(8 << 20)
    assert len(data) < 100_000
    written = []
    monkeypatch.setattr(archive.tarfile.TarFile, "extractall", lambda *a, **k: written.append(a))
    monkeypatch.setattr(archive.zipfile.ZipFile, "extractall", lambda *a, **k: written.append(a))
    with pytest.raises(DataError, match=r"ratio over 50.*decompression bomb"):
        fetch(_serve(server, f"bomb.{kind}", data), tmp_path / "raw", sha256=_sha(data))
    assert written == [] and not (tmp_path / "raw").exists() and _no_leftovers(tmp_path)


def test_archive_size_entry_and_download_budgets(tmp_path, server, images, monkeypatch):
    from datahelpers import tar_gz, zip_bytes

    from ul.data.fetch import archive

    tgz, zipped = tar_gz(images), zip_bytes(images)
    monkeypatch.setattr(archive, "MAX_UNCOMPRESSED_BYTES", 1000)
    with pytest.raises(DataError, match="unpacks to more than 1,000 bytes"):
        fetch(_serve(server, "big.tgz", tgz), tmp_path / "raw", sha256=_sha(tgz))
    with pytest.raises(DataError, match="unpacks to more than 1,000 bytes"):
        fetch(_serve(server, "big.zip", zipped), tmp_path / "raw", sha256=_sha(zipped))
    monkeypatch.setattr(archive, "MAX_UNCOMPRESSED_BYTES", 1 << 30)
    monkeypatch.setattr(archive, "MAX_ENTRIES", 5)
    with pytest.raises(DataError, match="6 entries, over the budget of 5"):
        fetch(_serve(server, "many.zip", zipped), tmp_path / "raw", sha256=_sha(zipped))
    monkeypatch.setattr(archive, "MAX_DOWNLOAD_BYTES", 100)
    with pytest.raises(DataError, match=f"announces {len(tgz):,} bytes, over the 100-byte budget"):
        fetch(_serve(server, "long.tgz", tgz), tmp_path / "raw", sha256=_sha(tgz))
    assert not (tmp_path / "raw").exists() and _no_leftovers(tmp_path)


def test_name_conflicts_and_corrupt_streams_are_one_error(tmp_path, server, images):
    import io
    import warnings
    import zipfile

    from datahelpers import tar_gz, zip_bytes

    buf = io.BytesIO(zip_bytes(images))
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "a") as zf:
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate it writes
        zf.writestr("dataset/a/0.png", png(noise(99)))
    twice = buf.getvalue()
    clash = tar_gz({**images, "dataset/b": png(noise(98)), "dataset/b/x.png": png(noise(97))})
    tgz = bytearray(tar_gz(images))
    tgz[len(tgz) // 2 : len(tgz) // 2 + 16] = b"\xff" * 16  # a broken deflate stream, not a short file
    for name, data, message in (
        ("twice.zip", twice, "entry 'dataset/a/0.png' appears twice"),
        ("clash.tgz", clash, "entry 'dataset/b' is both a file and a folder"),
        ("broken.tgz", bytes(tgz), "corrupt archive|cannot unpack"),
    ):
        with pytest.raises(DataError, match=message):
            fetch(_serve(server, name, data), tmp_path / "raw", sha256=_sha(data))
    assert not (tmp_path / "raw").exists() and _no_leftovers(tmp_path)


# ---- class 3: credentials never travel or persist ------------------------------------------------


@pytest.mark.parametrize(
    "url", ["http://me:hunter2@127.0.0.1:1/d.tgz", "https://hunter2@example.org/d.zip", "s3://me:hunter2@bucket/x"]
)
def test_user_info_in_a_source_url_is_refused(tmp_path, url):
    with pytest.raises(DataError, match="user info .* is refused.*UL_FETCH_USER and UL_FETCH_PASSWORD") as err:
        fetch(url, tmp_path / "raw", sha256="0" * 64)
    assert "hunter2" not in str(err.value) and not (tmp_path / "raw").exists()


@pytest.mark.parametrize(
    "url,param",
    [
        ("https://b.s3.amazonaws.com/d.tgz?X-Amz-Credential=AK%2F1&X-Amz-Signature=hunter2", "X-Amz-Credential"),
        ("https://example.org/d.zip?dl=1&access_token=hunter2", "access_token"),
        ("https://acct.blob.core.windows.net/c/d.zip?sv=2024&sig=hunter2", "sig"),
        ("http://127.0.0.1:1/d.tgz?apikey=hunter2", "apikey"),
    ],
)
def test_a_credential_in_a_source_url_query_is_refused(tmp_path, url, param):
    with pytest.raises(DataError, match=f"query parameter '{param}' carries a credential.*UL_FETCH_USER") as err:
        fetch(url, tmp_path / "raw", sha256="0" * 64)
    assert "hunter2" not in str(err.value) and not (tmp_path / "raw").exists()


def test_a_plain_query_is_data(tmp_path):
    from ul.data.fetch import archive

    archive.refuse_credentials("https://example.org/d.zip?dl=1&version=3")  # nothing to refuse


def test_environment_credentials_go_to_the_origin_only(tmp_path, server, images, monkeypatch):
    from datahelpers import Server, tar_gz

    other = Server()  # another origin (another port) that a redirect points to
    try:
        tgz = tar_gz(images)
        other.routes["/d.tgz"] = (tgz, None)
        server.redirects["/away.tgz"] = other.url("/d.tgz")
        server.redirects["/here.tgz"] = "/d.tgz"
        server.routes["/d.tgz"] = (tgz, None)
        monkeypatch.setenv("UL_FETCH_USER", "me")
        monkeypatch.setenv("UL_FETCH_PASSWORD", "hunter2")
        fetch(server.url("/here.tgz"), tmp_path / "a", sha256=_sha(tgz))
        assert server.auth[-2:] == ["Basic bWU6aHVudGVyMg=="] * 2  # same origin: sent again after the redirect
        m = fetch(server.url("/away.tgz"), tmp_path / "b", sha256=_sha(tgz))
        assert server.auth[-1] == "Basic bWU6aHVudGVyMg==" and other.auth == [None]
        assert "hunter2" not in json.dumps(m)
    finally:
        other.close()


@pytest.mark.slow
def test_user_info_in_an_endpoint_never_reaches_a_message(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://me:hunter2@127.0.0.1:1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(DataError) as err:
        fetch("s3://bucket/images", tmp_path / "raw")
    assert "hunter2" not in str(err.value) and "127.0.0.1:1" in str(err.value)


def test_a_bucket_key_that_is_both_object_and_folder_is_one_error(tmp_path, monkeypatch, images):
    import boto3
    from moto.server import ThreadedMotoServer

    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    srv.start()
    try:
        host, port = srv.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        for var, value in (("AWS_ENDPOINT_URL", endpoint), ("AWS_ACCESS_KEY_ID", "k"), ("AWS_SECRET_ACCESS_KEY", "s")):
            monkeypatch.setenv(var, value)
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket="clash")
        for rel, data in {**images, "dataset/a": b"x"}.items():
            s3.put_object(Bucket="clash", Key=f"p/{rel}", Body=data)
        with pytest.raises(DataError, match="key 'dataset/a' is both an object and a folder"):
            fetch("s3://clash/p", tmp_path / "raw")
        assert not (tmp_path / "raw").exists() and _no_leftovers(tmp_path)
    finally:
        srv.stop()
