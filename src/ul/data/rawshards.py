"""The raw folder's files in WebDataset tar shards, so DVC tracks a handful of files, not one per image.

Layout of a raw folder (the output of `fetch`):
    manifest.csv, classes.json          one row per file (ul.data.manifest), with its `shard` and `key`
    shards/<split>-<n:06d>.tar          the files' bytes, member `<key>.<ext>` (key: 8 digits, the row
                                        number in the sorted manifest; ext: the file's lower-case suffix)
    shards/<split>-<n:06d>.idx          DALI's WebDataset index of the tar (`v1.2 <samples>`, then one
                                        `<ext> <offset> <size> <member>` line per sample)

Members are named by key, not by file name, so that a name with spaces, newlines or odd characters
never reaches a tar header or an index line; the manifest maps keys back to names. A shard holds
one split, in manifest order, up to `shard_bytes` (one file more if a single file is larger). The
tars are written with fixed metadata (USTAR, mtime 0, owner 0, mode 0644), so the same files
always give the same bytes, and so the same DVC hash on any machine.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from tqdm import tqdm

from ul.data.layout import DataError, shown
from ul.data.manifest import SPLITS, Entry

SHARDS = "shards"
INDEX_VERSION = "v1.2"
EXTENSIONS = ("png", "jpg", "jpeg")  # the still-image members DALI's reader takes (ul.data.fetch.folder)
BLOCK = 512  # a tar header, and the unit its members are padded to
MAX_INDEX_BYTES = 1 << 28  # an index larger than this is not one fetch wrote


def ext_of(path: str) -> str:
    return PurePosixPath(path).suffix.lower().lstrip(".") or "bin"


def member(e: Entry) -> str:
    return f"{e.key}.{ext_of(e.path)}"


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = size, 0, 0o644, 0, 0, "", ""
    return info


def _write_index(tar: Path, dest: Path) -> None:
    """DALI's index of `tar`: every regular member, with the offset of its data."""
    with tarfile.open(tar, "r:") as tf:
        rows = [(ext_of(m.name), m.offset_data, m.size, m.name) for m in tf if m.isreg()]
    write_index(dest, rows)


def write_index(dest: Path, rows: Sequence[tuple[str, int, int, str]]) -> Path:
    """Write a DALI WebDataset index (one single-component sample per row) to `dest`."""
    lines = [f"{INDEX_VERSION} {len(rows)}\n", *(f"{x} {o} {s} {n}\n" for x, o, s, n in rows)]
    dest.write_text("".join(lines), encoding="ascii")
    return dest


@dataclass
class Pending:
    """A file on its way into the shards: its manifest entry (shard and key unset; sha256 "" when
    the packer is to compute it) and `open()`, which gives its bytes once, when it is packed."""

    entry: Entry
    open: Callable[[], BinaryIO]


class _Hashing:
    """A reader that hashes what passes through it."""

    def __init__(self, f: BinaryIO):
        self.f, self.sha256 = f, hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.sha256.update(data)
        return data


def _size(f: BinaryIO) -> int:
    """The bytes a file will give: a stream from an archive or a bucket knows its listed size."""
    if isinstance(f, io.BytesIO):
        return f.getbuffer().nbytes
    size = getattr(f, "size", None)
    return size if isinstance(size, int) else os.fstat(f.fileno()).st_size


def pack(folder: Path, files: Iterable[Pending], shard_bytes: int) -> list[Entry]:
    """Write `files` straight into tar shards under `folder/shards/`, in manifest (path) order,
    each read once from where it is: there is no loose copy, so the only disk fetch adds is the
    shards. Returns the entries, sorted by path, with shard, key, sha256 and size set; a file
    whose bytes are not the sha256 its entry expects (it changed since it was scanned) is a DataError."""
    if shard_bytes < 1:
        raise DataError(f"data.shard_mb: must be > 0 (got {shard_bytes} bytes)")
    rows = sorted(files, key=lambda p: p.entry.path)
    out_dir = Path(folder) / SHARDS
    out_dir.mkdir()
    packed, tf, split, used, count = [], None, None, 0, dict.fromkeys(SPLITS, 0)
    try:
        for k, p in enumerate(tqdm(rows, desc="pack", unit="file", mininterval=1.0)):
            e = p.entry
            with p.open() as f:
                size = _size(f)
                padded = BLOCK + -(-size // BLOCK) * BLOCK
                if tf is None or e.split != split or used + padded > shard_bytes:
                    if tf is not None:
                        tf.close()
                    split, used = e.split, 0
                    name = f"{split}-{count[split]:06d}.tar"
                    count[split] += 1
                    tf = tarfile.open(out_dir / name, "w", format=tarfile.USTAR_FORMAT)
                e = replace(e, shard=name, key=f"{k:08d}", bytes=size)
                reader = _Hashing(f)
                try:
                    tf.addfile(_tarinfo(member(e), size), reader)
                    grew = f.read(1)  # a stream checks its own size here (ul.data.fetch.stream)
                except OSError as err:  # tarfile's "unexpected end of data": shorter than it was
                    raise DataError(f"{shown(e.path)}: changed while it was being read ({err}); fetch again") from None
                if grew:
                    raise DataError(f"{shown(e.path)}: grew while it was being read; fetch again")
            digest = reader.sha256.hexdigest()
            if e.sha256 and digest != e.sha256:
                raise DataError(f"{shown(e.path)}: changed while it was being read; fetch again")
            used += padded
            packed.append(replace(e, sha256=digest))
    finally:
        if tf is not None:
            tf.close()
    for tar in sorted(out_dir.glob("*.tar")):
        _write_index(tar, tar.with_suffix(".idx"))
    return packed


def loose(folder: Path, entries: Iterable[Entry]) -> list[Pending]:
    """Files already written under `folder` (paths relative to it), to be packed."""
    return [Pending(e, lambda e=e: open(Path(folder) / e.path, "rb")) for e in entries]


def _read_index(path: Path) -> dict[str, tuple[int, int]]:
    """{member: (offset, size)} from an index file; anything malformed is a DataError."""
    try:
        if not path.is_file() or path.stat().st_size > MAX_INDEX_BYTES:
            raise DataError(f"{path}: missing, not a regular file or too large; run the fetch stage again")
        lines = path.read_text(encoding="ascii").splitlines()
        version, n = lines[0].split()
        if version != INDEX_VERSION or int(n) != len(lines) - 1:
            raise ValueError(f"header {lines[0]!r}")
        found = {}
        for line in lines[1:]:
            _, offset, size, name = line.split(" ")
            found[name] = (int(offset), int(size))
        return found
    except DataError:
        raise
    except (OSError, ValueError, IndexError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a shard index ({type(err).__name__}); run the fetch stage again") from None


class Shards:
    """The bytes of a raw folder's files, read by manifest entry from its tar shards."""

    def __init__(self, raw_dir: Path):
        self.dir = Path(raw_dir) / SHARDS
        self._index: dict[str, dict[str, tuple[int, int]]] = {}

    def tar(self, e: Entry) -> Path:
        return self.dir / e.shard

    def locate(self, e: Entry) -> tuple[int, int]:
        """(offset, size) of the entry's bytes in its tar."""
        if e.shard not in self._index:
            self._index[e.shard] = _read_index(self.tar(e).with_suffix(".idx"))
        where = self._index[e.shard].get(member(e))
        if where is None:
            raise DataError(f"{self.tar(e)}: no member {member(e)} for {shown(e.path)}; run the fetch stage again")
        return where

    def read(self, e: Entry) -> bytes:
        offset, size = self.locate(e)
        tar = self.tar(e)
        try:
            st = os.stat(tar)  # before open: a pipe in its place would block the open
            if not stat.S_ISREG(st.st_mode) or st.st_size < offset + size:
                raise DataError(f"{tar}: not a regular file, or shorter than its index says; run the fetch stage again")
            with open(tar, "rb") as f:
                f.seek(offset)
                return f.read(size)
        except OSError as err:
            raise DataError(
                f"{tar}: {err.strerror or 'cannot read'} (for {shown(e.path)}); run the fetch stage again"
            ) from None


@dataclass
class Selection:
    """Some entries of a raw folder, in order: their bytes by position (the Pillow and video
    decoders) or as tar + index pairs that list exactly them (DALI's WebDataset reader)."""

    shards: Shards
    entries: list[Entry]

    def __len__(self) -> int:
        return len(self.entries)

    def read(self, k: int) -> bytes:
        return self.shards.read(self.entries[k])

    def name(self, k: int) -> str:
        return shown(self.entries[k].path)

    def dali_files(self, scratch: Path) -> tuple[list[str], list[str]]:
        """(tars, indexes) for DALI, the indexes written into `scratch`: its samples in order."""
        groups: list[tuple[str, list]] = []
        for e in self.entries:
            if not groups or groups[-1][0] != e.shard:  # manifest order keeps a shard's rows together
                groups.append((e.shard, []))
            offset, size = self.shards.locate(e)
            groups[-1][1].append((ext_of(e.path), offset, size, member(e)))
        tars, indexes = [], []
        for i, (shard, rows) in enumerate(groups):
            tars.append(str(self.shards.dir / shard))
            indexes.append(str(write_index(Path(scratch) / f"{i:06d}-{shard}.idx", rows)))
        return tars, indexes
