"""What a source holds now, as one hash: the `source` stage writes it to data/source.json and
`fetch` depends on that file, so DVC re-runs fetch when a folder or a bucket changes (a file added,
removed, edited, renamed) and only then.

- folder (`file://`): the path, size and SHA-256 of every file fetch would read (the same walk:
  no links, no special files). The hashes are kept in a cache file keyed by (size, mtime, inode),
  so an unchanged folder is only listed and stat'ed, and a file whose mtime alone moved is read
  once, gives the same hash, and so the same fingerprint.
- bucket (`s3://`, a `lakefs://` branch): the key, size and ETag of every object of the listing,
  within the fetch budgets; nothing is downloaded. A `lakefs://` commit id is immutable: its URL is
  its fingerprint.
- archive (`https://`): data.sha256, which fetch requires and verifies.
- built-in data: the packaged files, as a folder.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ul.common import atomic, bounded
from ul.common.errors import redact_url, redact_urls
from ul.data.fetch import buckets, builtin, folder
from ul.data.fetch.tree import LocalTree
from ul.data.layout import DataError
from ul.storage.lakefs import COMMIT_ID, LakeFSPath

MAX_CACHE_BYTES = 1 << 30  # about 150 bytes a file: millions of files

VERSION = 1  # of the fingerprint's recipe: a change of it re-runs fetch once
IDX = folder.Kind((".gz",), "file", "IDX .gz")  # the packaged datasets' files


def fingerprint(source: str, sha256: str | None = None, frames: int = 0, cache: Path | None = None) -> dict:
    """{"source", "kind", "files", "bytes", "fingerprint"}: what `source` holds, as data/source.json."""
    kind = folder.VIDEO if frames > 0 else folder.IMAGES
    if source.startswith("builtin:"):
        name = source[len("builtin:") :]
        dataset = "mnist" if name == "moving-mnist" else name  # Moving MNIST is made of MNIST digits
        if dataset not in builtin.DATASETS:
            return _summary(source, "builtin", [])  # fetch names the unknown dataset
        return _summary(source, "builtin", _folder_rows(Path(builtin.DATASETS[dataset][0]()), IDX, cache))
    if source.startswith("file://"):
        return _summary(source, "folder", _folder_rows(folder.source_root(source), kind, cache))
    if source.startswith(("https://", "http://")):
        return _summary(source, "archive", [("archive", 0, sha256 or "")])
    if source.startswith("lakefs://") and COMMIT_ID.fullmatch(LakeFSPath.parse(source).ref):
        return _summary(source, "lakefs commit", [])
    if source.startswith(("s3://", "lakefs://")):
        loc = buckets.s3_location(source) if source.startswith("s3://") else buckets.lakefs_location(source)
        rows = [(o["Key"][len(loc.prefix) :], o["Size"], o.get("ETag", "")) for o in buckets.listing(loc)]
        return _summary(source, "bucket", sorted(rows))
    raise DataError(f"data.source={redact_urls(source)!r}: unsupported (fetch names the schemes it reads)")


def _summary(source: str, kind: str, rows: list[tuple[str, int, str]]) -> dict:
    h = hashlib.sha256(json.dumps([VERSION, source, rows], separators=(",", ":")).encode())
    return {
        "source": redact_url(source) if "://" in source else source,
        "kind": kind,
        "files": len(rows),
        "bytes": sum(size for _, size, _ in rows),
        "fingerprint": h.hexdigest(),
    }


def _folder_rows(root: Path, kind: folder.Kind, cache: Path | None) -> list[tuple[str, int, str]]:
    """(relative path, size, sha256) of each file of `kind` under `root`, hashing only what the
    cache does not already know at the same size, mtime and inode."""
    known = _read_cache(cache)
    fresh, rows = {}, []
    tree = LocalTree(root)
    for rel in folder.Walk(tree, kind).files():
        path = root / rel
        st = tree.stats[rel]  # the walk's lstat: no second stat per file
        key, stamp = str(path), [st.st_size, st.st_mtime_ns, st.st_ino]
        digest = known.get(key, [None])[-1] if known.get(key, [])[:3] == stamp else None
        if digest is None:
            with tree.open(rel) as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
        fresh[key] = [*stamp, digest]
        rows.append((rel, st.st_size, digest))
    if cache is not None and fresh != known:  # an unchanged folder writes nothing
        atomic.write_text(cache, json.dumps(fresh, separators=(",", ":")))
    return rows


def _read_cache(cache: Path | None) -> dict:
    """The hash cache, or nothing when it is missing or not ours (it is only ever a shortcut)."""
    try:
        data = bounded.read_json(cache, MAX_CACHE_BYTES, "hash cache") if cache is not None else {}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
