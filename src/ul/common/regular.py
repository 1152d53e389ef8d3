"""Open a file for reading only when it is a regular file: the check is made on the open descriptor
(fstat), so what was checked is what is read, and the open never blocks on a pipe or a device
(O_NONBLOCK). Every reader of a path that someone else may have made goes through it."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO


class NotRegularFile(OSError):
    """The path is a folder, a pipe, a device or a socket (or, with `nofollow`, a link)."""


def open_regular(path: str | Path, nofollow: bool = False, dir_fd: int | None = None) -> BinaryIO:
    """`path` open for binary reading; `nofollow`: a link as the last component is refused;
    `dir_fd`: `path` is relative to that open folder (openat)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | (os.O_NOFOLLOW if nofollow else 0)
    fd = os.open(path, flags, dir_fd=dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotRegularFile(f"{path}: not a regular file")
    return os.fdopen(fd, "rb")
