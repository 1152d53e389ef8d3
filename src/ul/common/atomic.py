"""Atomic writes, the one implementation the library uses: a reader sees the old file (or folder)
or the new one, never half of one. DVC and the later stages trust that an output which exists is
complete, and a killed training run must resume from a whole checkpoint.

A file is written to a hidden temporary file in the same folder (same file system), flushed and
fsync'ed, then renamed over the target (rename is atomic on POSIX). A folder is filled as a hidden
temporary sibling and swapped into place the same way. On any error the temporary file or folder
is removed and an existing target is left untouched.

A run killed mid-write (SIGKILL, OOM) cannot clean up: its temporary names carry its process id,
and the next write of the same target removes those of processes that are gone, and its own pid's
(a container restarts with the same pid), so leftovers never pile up or wedge a later run.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _gone(pid: int) -> bool:
    if pid == os.getpid():  # a killed run of ours, before a restart that got the same pid
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def clean_stale(parent: Path, prefix: str) -> list[str]:
    """Remove `parent/<prefix><pid>-...` left by killed writers (see the module doc); returns names."""
    removed = []
    try:
        entries = list(os.scandir(parent))
    except FileNotFoundError:
        return removed
    for e in entries:
        if not e.name.startswith(prefix):
            continue
        pid = e.name[len(prefix) :].split("-", 1)[0]
        if pid.isdigit() and _gone(int(pid)):
            if e.is_dir(follow_symlinks=False):
                shutil.rmtree(e.path, ignore_errors=True)
            else:
                Path(e.path).unlink(missing_ok=True)
            removed.append(e.name)
    return removed


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; it replaces `path` when the `with` body succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path.parent, f".{path.name}.tmp-")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-{os.getpid()}-", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; outputs should read like any other file
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes) -> Path:
    with replacing(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def staged_dir(out_dir: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder that replaces `out_dir` when the `with` body succeeds."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    for kind in ("tmp", "old"):
        clean_stale(out_dir.parent, f".{out_dir.name}.{kind}-")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-{os.getpid()}-", dir=out_dir.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; outputs should read like any other folder
        old = None
        if out_dir.exists() or out_dir.is_symlink():
            old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        if old is not None and old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        elif old is not None:
            old.unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def new_dir(out_dir: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder that becomes `out_dir`, a folder the caller found absent or
    empty, when the `with` body succeeds, and only if it is still absent or empty then: what another
    writer put there meanwhile is never touched. Such a lost race is a FileExistsError naming the
    folder where the results were kept instead (the rename is atomic; an empty folder is replaced)."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(out_dir.parent, f".{out_dir.name}.tmp-")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-{os.getpid()}-", dir=out_dir.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        try:
            if out_dir.is_dir() and not out_dir.is_symlink():
                os.rmdir(out_dir)  # only an empty folder goes
            os.rename(tmp, out_dir)  # fails on a folder filled again since, or a file
        except OSError:
            kept = out_dir.parent / f"{out_dir.name}.ul-{os.getpid()}-{secrets.token_hex(2)}"
            os.rename(tmp, kept)
            raise FileExistsError(
                f"{out_dir}: another writer put files there while this command ran; they are untouched, "
                f"and this command's results are in {kept}"
            ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def scratch_dir(near: str | Path, tag: str) -> Iterator[Path]:
    """A temporary folder beside `near` (same disk as the output) for downloads; always removed."""
    near = Path(near)
    near.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(near.parent, f".{near.name}.{tag}-")
    with tempfile.TemporaryDirectory(prefix=f".{near.name}.{tag}-{os.getpid()}-", dir=near.parent) as tmp:
        yield Path(tmp)


def no_room(folder: str | Path, need: int) -> bool:
    """Whether `folder`'s disk has fewer than `need` bytes free: the cause to name when a write
    fails with a message that does not say it (numpy's and torch's do not)."""
    try:
        return shutil.disk_usage(folder).free < need
    except OSError:
        return False
