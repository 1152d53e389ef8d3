"""lakeFS: resolve a branch (or any ref) to its immutable commit, pin `data.source` to it, and reach
the S3 gateway for bytes.

    ul data pin lakefs://repo/main/images     # data.source = lakefs://repo/<64-hex commit>/images

Pinning is what makes the `fetch` stage reproducible: DVC hashes the params of a stage, so with a
commit id in `data.source` the stage's hash names immutable data, and a new commit on the branch
shows up as a changed param (re-run) instead of silently different bytes under the same name.

The REST API is reached through the `lakefs` SDK, the bytes through the S3 gateway (bucket =
repository, key = `<ref>/<path>`); where both are and their keys come from the environment, by the
rule in `ul.storage` (LAKEFS_HOST, LAKEFS_ENDPOINT, LAKEFS_ACCESS_KEY_ID, LAKEFS_SECRET_ACCESS_KEY).
Neither the keys nor the URLs' user parts reach a message.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ul.common import atomic, bounded
from ul.storage import StorageError, s3

SCHEME = "lakefs://"
HOST_ENV, KEY_ENV, SECRET_ENV, GATEWAY_ENV = (
    "LAKEFS_HOST",
    "LAKEFS_ACCESS_KEY_ID",
    "LAKEFS_SECRET_ACCESS_KEY",
    "LAKEFS_ENDPOINT",
)
COMMIT_ID = re.compile(r"[0-9a-f]{64}")  # lakeFS commit ids are SHA-256 hex digests


@dataclass(frozen=True)
class LakeFSPath:
    """`lakefs://<repo>/<ref>/<path>`: a path at a ref (branch, tag, commit or ref expression)."""

    repo: str
    ref: str
    path: str = ""

    @classmethod
    def parse(cls, url: str) -> LakeFSPath:
        """The one parser of `lakefs://` URLs (`ul data pin`, `ul release`, fetch, ul-watch)."""
        if not url.startswith(SCHEME):
            raise StorageError(f"{url!r}: not a lakefs:// URL (lakefs://repo/ref/path)")
        parts = url[len(SCHEME) :].split("/", 2)
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise StorageError(f"{url!r}: malformed; expected lakefs://repo/ref[/path]")
        return cls(parts[0], parts[1], parts[2].strip("/") if len(parts) == 3 else "")

    def at(self, ref: str) -> LakeFSPath:
        return LakeFSPath(self.repo, ref, self.path)

    @property
    def pinned(self) -> bool:
        return bool(COMMIT_ID.fullmatch(self.ref))

    def __str__(self) -> str:
        return f"{SCHEME}{self.repo}/{self.ref}" + (f"/{self.path}" if self.path else "")


def _env(*names: str) -> list:
    missing = [n for n in names if not os.environ.get(n)]
    if missing:
        raise StorageError(f"set {', '.join(missing)} (lakeFS endpoint and keys come from the environment)")
    return [os.environ[n] for n in names]


def client():
    """A `lakefs.Client` for LAKEFS_HOST with the LAKEFS_* keys (no ~/.lakectl.yaml, no LAKECTL_* fallback)."""
    import lakefs

    host, key, secret = _env(HOST_ENV, KEY_ENV, SECRET_ENV)
    return lakefs.Client(host=host.rstrip("/"), username=key, password=secret)


def _host() -> str:
    """LAKEFS_HOST without any user:password@ part, for messages."""
    from urllib.parse import urlsplit

    u = urlsplit(os.environ.get(HOST_ENV, ""))
    return f"{u.scheme}://{u.hostname}" + (f":{u.port}" if u.port else "") if u.hostname else "LAKEFS_HOST"


def call(what: str, fn, *args, **kwargs):
    """Run one SDK call; turn its exceptions into a StorageError that names `what` and the host only."""
    from lakefs.exceptions import LakeFSException
    from lakefs_sdk.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        return fn(*args, **kwargs)
    except (LakeFSException, ApiException) as err:  # the `lakefs` wrappers' and the raw SDK's
        status = getattr(err, "status_code", None) or getattr(err, "status", None)
        if status == 404:
            raise StorageError(f"{what}: not found at lakeFS {_host()}") from None
        if status == 401:
            raise StorageError(f"{what}: lakeFS {_host()} refused the credentials ({KEY_ENV}/{SECRET_ENV})") from None
        reason = getattr(err, "reason", None) or type(err).__name__
        transient = isinstance(status, int) and (status >= 500 or status == 429)  # the server's trouble, not ours
        raise StorageError(f"{what}: lakeFS {_host()} answered {status or '?'}: {reason}", transient) from None
    except HTTPError as err:  # connection refused, timeouts: the server is not there (yet)
        raise StorageError(f"{what}: cannot reach lakeFS at {_host()} ({type(err).__name__})", transient=True) from None


def resolve(url: str | LakeFSPath, lakefs_client=None) -> str:
    """The commit id that `url`'s ref points to now (a branch's head; a commit resolves to itself)."""
    import lakefs

    loc = url if isinstance(url, LakeFSPath) else LakeFSPath.parse(url)
    cl = lakefs_client or client()
    commit = call(f"lakefs://{loc.repo}/{loc.ref}", lambda: lakefs.Reference(loc.repo, loc.ref, client=cl).get_commit())
    if not COMMIT_ID.fullmatch(commit.id or ""):
        raise StorageError(
            f"lakefs://{loc.repo}/{loc.ref}: lakeFS answered commit id {commit.id!r}, which is not a 64-hex commit id"
        )
    return commit.id


# ---- writing the pinned source into the config ---------------------------------------------------


def _scalar_end(line: str, col: int) -> int:
    """End column of the YAML scalar starting at `col` (quoted, or plain in block or flow context)."""
    quote = line[col] if col < len(line) else ""
    if quote in ("'", '"'):
        i = col + 1
        while i < len(line):
            if line[i] == "\\" and quote == '"':
                i += 2
                continue
            if line[i] == quote:
                if quote == "'" and line[i + 1 : i + 2] == "'":  # '' is an escaped quote
                    i += 2
                    continue
                return i + 1
            i += 1
        raise StorageError("multi-line quoted scalars are not supported here")
    m = re.compile(r"\s*(?:,|\}|\]|\s#|$)").search(line, col)
    return m.start() if m else len(line)


def set_data_source(path: Path, value: str) -> str:
    """Replace `data.source` in the YAML file `path` in place, keeping every other byte (comments,
    flow style); returns the previous value. The result is checked by re-parsing it."""
    from ruamel.yaml import YAML

    try:  # vetted first (size, aliases, nesting, keys): ruamel's round-trip reader then only finds the line
        text = bounded.read_text(path, what="parameter file")
        before = bounded.load_yaml(text, str(path)) or {}
    except bounded.ParseError as err:
        raise StorageError(str(err)) from None
    if not isinstance(before.get("data"), dict) or "source" not in before["data"]:
        raise StorageError(f"{path}: has no data.source to pin")
    line_no, col = YAML().load(text)["data"].lc.value("source")
    lines = text.splitlines(keepends=True)
    line = lines[line_no]
    end = _scalar_end(line.rstrip("\r\n"), col)
    lines[line_no] = line[:col] + "'" + value.replace("'", "''") + "'" + line[end:]
    new_text = "".join(lines)
    after = bounded.load_yaml(new_text, str(path))
    expected = {**before, "data": {**before["data"], "source": value}}
    if after != expected:
        raise StorageError(f"{path}: could not rewrite data.source in place; edit it by hand")
    atomic.write_text(path, new_text)
    return before["data"]["source"]


def pin(
    url: str,
    conf: Path | None = Path("conf/config.yaml"),
    params: Path | None = Path("params.yaml"),
    lakefs_client=None,
    commit: str | None = None,
) -> str:
    """Resolve `url`'s ref to its commit (or take `commit`, already resolved) and write
    `lakefs://repo/<commit>/path` as data.source into `conf` (what `dvc exp run` composes) and
    `params` (what `dvc repro` reads); returns that URL."""
    loc = LakeFSPath.parse(url)
    files = [Path(f) for f in (conf, params) if f is not None]
    absent = [str(f) for f in files if not f.is_file()]
    if absent:
        raise StorageError(f"cannot pin: {', '.join(absent)} not found (run from the repository root)")
    if commit is not None and not COMMIT_ID.fullmatch(commit):
        raise StorageError(f"{commit!r} is not a lakeFS commit id (64 hex digits)")
    pinned = str(loc.at(commit or resolve(loc, lakefs_client)))
    for f in files:
        set_data_source(f, pinned)
    return pinned


# ---- the S3 gateway ------------------------------------------------------------------------------


def gateway_settings() -> tuple:
    """(endpoint, key, secret) of the S3 gateway: LAKEFS_ENDPOINT, else LAKEFS_HOST, and the keys."""
    endpoint = os.environ.get(GATEWAY_ENV) or os.environ.get(HOST_ENV)
    missing = ([] if endpoint else [f"{GATEWAY_ENV} (or {HOST_ENV})"]) + [
        n for n in (KEY_ENV, SECRET_ENV) if not os.environ.get(n)
    ]
    if missing:
        raise StorageError(f"set {', '.join(missing)} (the lakeFS S3 gateway and its keys come from the environment)")
    return endpoint, os.environ[KEY_ENV], os.environ[SECRET_ENV]


def gateway():
    """A boto3 S3 client for the lakeFS S3 gateway."""
    return s3.client(*gateway_settings())
