"""Write a stage's output folder all-or-nothing.

DVC and the later stages trust that an output folder which exists is complete. Each writer
therefore fills a hidden temporary sibling (same file system, so the final rename is atomic) and
only swaps it into place when the body finished; on any error the sibling is removed and an
existing output is left untouched.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def staged_dir(out_dir: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder that replaces `out_dir` when the `with` body succeeds."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; outputs should read like any other folder
        old = None
        if out_dir.exists() or out_dir.is_symlink():
            old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        if old is not None and old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        elif old is not None:
            old.unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def scratch_dir(near: str | Path, tag: str) -> Iterator[Path]:
    """A temporary folder beside `near` (same disk as the output) for downloads; always removed."""
    near = Path(near)
    near.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{near.name}.{tag}-", dir=near.parent) as tmp:
        yield Path(tmp)
