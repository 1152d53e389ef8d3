"""Download an archive over HTTP(S), prove it is the expected one, and read its members safely.

An archive is trusted only through its sha256 (required): the download is streamed to disk while
hashing, a short body (fewer bytes than Content-Length) is reported as truncated, and an archive
with any entry that names a place outside its root (absolute paths, `..`), a link or a device is
refused. Members are read from the archive itself as they are packed into shards: nothing is
extracted (a compressed tar is first decompressed into one plain tar, which can seek; a .tar or
.zip is read where it is, so no second copy of the dataset is written).

Budgets, checked before any member is read: the download's bytes (`MAX_DOWNLOAD_BYTES`, from the
announced length and while streaming), the archive's entry count (`MAX_ENTRIES`), its total
uncompressed size (`MAX_UNCOMPRESSED_BYTES`, for a compressed tar while decompressing it, with that
cap) and its compression ratio (`MAX_RATIO`: image files barely compress, a bomb does).
Two entries with one name, or a name that is both a file and a folder, refuse the archive.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import lzma
import re
import stat
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from ul.common.errors import redact_url
from ul.data.fetch.stream import Stream
from ul.data.fetch.tree import ListedTree
from ul.data.layout import DataError
from ul.data.layout import shown as _shown

CHUNK = 1 << 16
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
MAX_DOWNLOAD_BYTES = 32 << 30
MAX_UNCOMPRESSED_BYTES = 64 << 30
MAX_ENTRIES = 2_000_000
MAX_RATIO = 50  # uncompressed / archive bytes; JPEG and PNG files compress by a few percent


USER_ENV, PASSWORD_ENV = "UL_FETCH_USER", "UL_FETCH_PASSWORD"


# Query parameters that carry a credential: presigned S3/GCS/Azure URLs, API tokens and keys.
CREDENTIAL_QUERY = re.compile(
    r"(?i)^(x-amz-(signature|credential|security-token)|x-goog-(signature|credential)|sig|signature|"
    r".*(token|secret|password|passwd|api[-_]?key|access[-_]?key|credential|auth).*)$"
)


def refuse_credentials(url: str) -> None:
    """Credentials in a source URL would be stored in params.yaml, dvc.lock and the model card:
    they come from the environment instead. Both user info (user:password@) and query parameters
    that carry one (a presigned URL's signature, `?token=`) are refused; other queries are data."""
    p = urllib.parse.urlsplit(url)
    if p.username is not None or p.password is not None:
        raise DataError(
            f"data.source={redact_url(url)!r}: user info (user:password@) in a source URL is refused, since the "
            f"URL is stored in params.yaml, dvc.lock and the model card; set {USER_ENV} and "
            f"{PASSWORD_ENV} in the environment instead"
        )
    secret = [k for k, _ in urllib.parse.parse_qsl(p.query, keep_blank_values=True) if CREDENTIAL_QUERY.match(k)]
    if secret:
        raise DataError(
            f"data.source={redact_url(url)!r}: the query parameter {secret[0]!r} carries a credential (a signed or "
            f"tokenised URL), which would be stored in params.yaml, dvc.lock and the model card; serve the "
            f"archive with Basic auth from {USER_ENV}/{PASSWORD_ENV}, or put it in a bucket (s3:// with AWS_* "
            f"keys from the environment)"
        )


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but send the Authorization header only to the origin it was meant for."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        auth = req.unredirected_hdrs.get("Authorization")
        if new is not None and auth and _origin(newurl) == _origin(req.full_url):
            new.add_unredirected_header("Authorization", auth)
        return new


def _origin(url: str) -> tuple:
    p = urllib.parse.urlsplit(url)
    return p.scheme.lower(), (p.hostname or "").lower(), p.port or {"http": 80, "https": 443}.get(p.scheme.lower())


def _request(url: str) -> urllib.request.Request:
    """The request for `url`, with Basic auth from UL_FETCH_USER/UL_FETCH_PASSWORD when set."""
    import os

    refuse_credentials(url)
    req = urllib.request.Request(url, headers={"User-Agent": "ul-fetch"})
    user = os.environ.get(USER_ENV)
    if user:
        user_pass = f"{user}:{os.environ.get(PASSWORD_ENV, '')}"
        req.add_unredirected_header("Authorization", "Basic " + base64.b64encode(user_pass.encode()).decode())
    return req


def download(url: str, sha256: str | None, dest: Path, timeout: float = 60.0) -> Path:
    """Stream `url` to `dest`, checking length and sha256; returns `dest`."""
    shown = redact_url(url)
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
        opener = urllib.request.build_opener(_SameOriginRedirects)
        with opener.open(_request(url), timeout=timeout) as resp, open(dest, "wb") as out:
            length = resp.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            if expected is not None and expected > MAX_DOWNLOAD_BYTES:
                raise DataError(f"{shown}: announces {expected:,} bytes, over the {MAX_DOWNLOAD_BYTES:,}-byte budget")
            with tqdm(
                total=expected, unit="B", unit_scale=True, desc=f"download {PurePosixPath(shown).name}", mininterval=0.5
            ) as bar:
                while chunk := resp.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    got += len(chunk)
                    if got > MAX_DOWNLOAD_BYTES:
                        raise DataError(f"{shown}: more than {MAX_DOWNLOAD_BYTES:,} bytes; over the download budget")
                    bar.update(len(chunk))
    except urllib.error.HTTPError as err:  # the server's trouble (5xx, 429) may pass; a 404 will not
        raise DataError(
            f"{shown}: HTTP {err.code} {err.reason}", transient=err.code >= 500 or err.code == 429
        ) from None
    except urllib.error.URLError as err:
        raise DataError(f"cannot reach {shown}: {err.reason}", transient=True) from None
    except http.client.IncompleteRead as err:
        raise DataError(
            f"{shown}: download truncated: received {got + len(err.partial)} bytes, the server announced {expected}",
            transient=True,
        ) from None
    except (OSError, http.client.HTTPException) as err:
        raise DataError(f"{shown}: download failed after {got} bytes: {err}", transient=True) from None
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


def _budget(shown: str, names: list[str], sizes: list[int], archive_bytes: int) -> None:
    """Refuse an archive over the entry, size or ratio budget, or with conflicting names."""
    if len(names) > MAX_ENTRIES:
        raise DataError(f"{shown}: {len(names):,} entries, over the budget of {MAX_ENTRIES:,}")
    total = sum(sizes)
    _check_total(shown, total, archive_bytes)
    files, folders = set(), set()
    for name, size in zip(names, sizes):
        parts = [p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in (".", "")]
        if not parts:
            continue
        norm = "/".join(parts)
        if size < 0:  # a folder entry
            folders.add(norm)
            continue
        if norm in files:
            raise DataError(f"{shown}: entry {shown_name(norm)} appears twice; refusing the archive")
        files.add(norm)
        folders.update("/".join(parts[:k]) for k in range(1, len(parts)))
    if clash := sorted(files & folders):
        raise DataError(f"{shown}: entry {shown_name(clash[0])} is both a file and a folder; refusing the archive")


def _check_total(shown: str, total: int, archive_bytes: int) -> None:
    if total > MAX_UNCOMPRESSED_BYTES:
        raise DataError(
            f"{shown}: unpacks to more than {MAX_UNCOMPRESSED_BYTES:,} bytes, over the budget; refusing the archive"
        )
    if total > MAX_RATIO * max(archive_bytes, 1) and total > (1 << 20):
        raise DataError(
            f"{shown}: unpacks to {total:,} bytes from {archive_bytes:,} (ratio over {MAX_RATIO}); "
            "refusing a likely decompression bomb"
        )


def _decompressor(path: Path):
    """The opener of a compressed tar's outer layer (gzip, bzip2, xz), or None for a plain one."""
    import bz2
    import gzip

    with open(path, "rb") as f:
        magic = f.read(6)
    if magic[:2] == b"\x1f\x8b":
        return gzip.open
    if magic[:3] == b"BZh":
        return bz2.open
    return lzma.open if magic[:6] == b"\xfd7zXZ\x00" else None


def _plain_tar(path: Path, shown: str) -> tuple[Path, int]:
    """A tar whose members can be read in any order, and the archive's bytes: a compressed tar is
    decompressed once into a plain one beside it (a compressed stream cannot seek), stopping at the
    budget, and the compressed file removed. Plain .tar and .zip archives are read where they are."""
    archive_bytes = path.stat().st_size
    opener = _decompressor(path)
    if opener is None:
        return path, archive_bytes
    plain, total = path.with_name(path.name + ".tar"), 0
    with opener(path, "rb") as f, open(plain, "wb") as out:
        while block := f.read(CHUNK * 16):
            total += len(block)
            _check_total(shown, total, archive_bytes)
            out.write(block)
    path.unlink()
    return plain, archive_bytes


def shown_name(name: str) -> str:
    return repr(name) if name.isprintable() else _shown(name)


def _norm(name: str) -> str:
    return "/".join(p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in (".", ""))


@contextlib.contextmanager
def _corrupt(shown: str):
    """A damaged archive, found while reading a member or the directory, as one DataError."""
    try:
        yield
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError, NotImplementedError) as err:
        raise DataError(f"{shown}: corrupt archive: {err}".splitlines()[0]) from None
    except OSError as err:  # gzip.BadGzipFile, a CRC error, a read error
        raise DataError(f"{shown}: cannot unpack: {err}".splitlines()[0]) from None


def _tar_tree(path: Path, shown: str, stack: contextlib.ExitStack) -> ListedTree:
    plain, archive_bytes = _plain_tar(path, shown)
    tf = stack.enter_context(tarfile.open(plain, "r:"))
    members = tf.getmembers()
    for m in members:
        _check_name(m.name, shown)
        if not (m.isfile() or m.isdir()):
            kind = "link" if (m.issym() or m.islnk()) else "special file"
            raise DataError(f"{shown}: entry {m.name!r} is a {kind}; only plain files and folders are accepted")
    _budget(shown, [m.name for m in members], [m.size if m.isfile() else -1 for m in members], archive_bytes)
    files = {_norm(m.name): m for m in members if m.isfile() and _norm(m.name)}
    sizes = {rel: m.size for rel, m in files.items()}
    folders = [_norm(m.name) for m in members if m.isdir()]
    return _listed(shown, sizes, lambda rel: tf.extractfile(files[rel]), folders)


def _zip_tree(path: Path, shown: str, stack: contextlib.ExitStack) -> ListedTree:
    zf = stack.enter_context(zipfile.ZipFile(path))
    infos = zf.infolist()
    for info in infos:
        _check_name(info.filename, shown)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise DataError(f"{shown}: entry {info.filename!r} is a link; only plain files and folders are accepted")
    sizes = [-1 if i.is_dir() else i.file_size for i in infos]
    _budget(shown, [i.filename for i in infos], sizes, path.stat().st_size)
    files = {_norm(i.filename): i for i in infos if not i.is_dir() and _norm(i.filename)}
    folders = [_norm(i.filename) for i in infos if i.is_dir()]
    # zipfile stops each entry at its declared size and checks its CRC
    return _listed(shown, {rel: i.file_size for rel, i in files.items()}, lambda rel: zf.open(files[rel]), folders)


def _listed(shown: str, sizes: dict[str, int], open_member, folders: list[str]) -> ListedTree:
    """An archive's files as a tree: each read by `open_member(rel)` as a Stream of its listed size,
    the archive's own errors (a corrupt member) reported as one DataError naming it."""

    def member(rel: str) -> Stream:
        with _corrupt(shown):
            raw = open_member(rel)
        return Stream(raw, sizes[rel], f"{shown}: {rel}", lambda: _corrupt(shown))

    return ListedTree(shown, sizes, member, folders)


def members(path: Path, shown: str, stack: contextlib.ExitStack) -> ListedTree:
    """The files of a .tar(.gz/.bz2/.xz) or .zip (detected from content), read from the archive
    itself as they are packed (nothing is extracted); the archive stays open until `stack` closes."""
    with _corrupt(shown):
        if zipfile.is_zipfile(path):
            return _zip_tree(path, shown, stack)
        if tarfile.is_tarfile(path):
            return _tar_tree(path, shown, stack)
    raise DataError(f"{shown}: not a tar or zip archive")
