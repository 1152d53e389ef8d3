"""Download an archive over HTTP(S), prove it is the expected one, and unpack it safely.

An archive is trusted only through its sha256 (required): the download is streamed to disk while
hashing, a short body (fewer bytes than Content-Length) is reported as truncated, and extraction
refuses any entry that could write outside the target folder (absolute paths, `..`, links,
devices), checked by us and, for tar, again by the stdlib's `filter="data"`.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import re
import stat
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from ul.data import DataError

CHUNK = 1 << 16
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def redact(url: str) -> str:
    """The URL without user:password and query string, safe to print."""
    p = urllib.parse.urlsplit(url)
    host = p.hostname or ""
    if p.port:
        host += f":{p.port}"
    return urllib.parse.urlunsplit((p.scheme, host, p.path, "", ""))


def _request(url: str) -> urllib.request.Request:
    """urllib cannot take user:password@ in a URL: turn it into a Basic auth header."""
    p = urllib.parse.urlsplit(url)
    headers = {"User-Agent": "ul-fetch"}
    if p.username is not None:
        user_pass = f"{urllib.parse.unquote(p.username)}:{urllib.parse.unquote(p.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(user_pass.encode()).decode()
        host = p.hostname + (f":{p.port}" if p.port else "")
        url = urllib.parse.urlunsplit((p.scheme, host, p.path, p.query, ""))
    return urllib.request.Request(url, headers=headers)


def download(url: str, sha256: str | None, dest: Path, timeout: float = 60.0) -> Path:
    """Stream `url` to `dest`, checking length and sha256; returns `dest`."""
    shown = redact(url)
    if not sha256:
        raise DataError(
            f"{shown}: an archive URL needs its sha256 (set data.sha256 to the archive's "
            "`sha256sum`); refusing to use unverified data"
        )
    sha256 = sha256.strip().lower()
    if not SHA256_RE.match(sha256):
        raise DataError(f"data.sha256={sha256!r} is not 64 hexadecimal digits")
    digest, got = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(_request(url), timeout=timeout) as resp, open(dest, "wb") as out:
            length = resp.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            with tqdm(
                total=expected, unit="B", unit_scale=True, desc=f"download {PurePosixPath(shown).name}", mininterval=0.5
            ) as bar:
                while chunk := resp.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    got += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as err:
        raise DataError(f"{shown}: HTTP {err.code} {err.reason}") from None
    except urllib.error.URLError as err:
        raise DataError(f"cannot reach {shown}: {err.reason}") from None
    except http.client.IncompleteRead as err:
        raise DataError(
            f"{shown}: download truncated: received {got + len(err.partial)} bytes, the server announced {expected}"
        ) from None
    except (OSError, http.client.HTTPException) as err:
        raise DataError(f"{shown}: download failed after {got} bytes: {err}") from None
    if expected is not None and got != expected:
        raise DataError(f"{shown}: download truncated: received {got} bytes, the server announced {expected}")
    actual = digest.hexdigest()
    if actual != sha256:
        raise DataError(f"{shown}: sha256 mismatch: expected {sha256}, got {actual} ({got} bytes)")
    return dest


def _check_name(name: str, archive: str) -> None:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
        raise DataError(f"{archive}: entry {name!r} would be written outside the target folder; refusing the archive")


def _extract_tar(path: Path, target: Path, shown: str) -> None:
    with tarfile.open(path) as tf:
        members = tf.getmembers()
        for m in members:
            _check_name(m.name, shown)
            if not (m.isfile() or m.isdir()):
                kind = "link" if (m.issym() or m.islnk()) else "special file"
                raise DataError(f"{shown}: entry {m.name!r} is a {kind}; only plain files and folders are accepted")
        try:
            tf.extractall(target, members=members, filter="data")
        except tarfile.FilterError as err:
            raise DataError(f"{shown}: unsafe entry refused: {err}") from None


def _extract_zip(path: Path, target: Path, shown: str) -> None:
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            _check_name(info.filename, shown)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise DataError(
                    f"{shown}: entry {info.filename!r} is a link; only plain files and folders are accepted"
                )
        zf.extractall(target)


def extract(path: Path, target: Path, shown: str) -> Path:
    """Unpack a .tar(.gz/.bz2/.xz) or .zip (detected from content) into `target`."""
    target.mkdir(parents=True, exist_ok=True)
    try:
        if zipfile.is_zipfile(path):
            _extract_zip(path, target, shown)
        elif tarfile.is_tarfile(path):
            _extract_tar(path, target, shown)
        else:
            raise DataError(f"{shown}: not a tar or zip archive")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as err:
        raise DataError(f"{shown}: corrupt archive: {err}") from None
    return target
