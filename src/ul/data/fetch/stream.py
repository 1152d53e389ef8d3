"""A file's bytes as they arrive from an archive member or a bucket object, read in place: exactly
its listed size (fewer bytes are "truncated", more are refused as they arrive, so a listing's
budget holds for the bytes too), and the reader's own errors as one DataError naming the file."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import BinaryIO

from ul.data.layout import DataError


class Stream:
    """`raw` read as a file of `size` bytes; `where` names it in messages; `guard()` turns the
    reader's own exceptions (a corrupt member, a dropped connection) into a DataError."""

    def __init__(
        self,
        raw: BinaryIO,
        size: int,
        where: str,
        guard: Callable[[], AbstractContextManager] = contextlib.nullcontext,
    ):
        self.raw, self.size, self.where, self.guard, self.got = raw, size, where, guard, 0

    def read(self, n: int = -1) -> bytes:
        if n == 0:
            return b""
        left = self.size + 1 - self.got  # one byte past the size: a longer body shows itself
        with self.guard():
            chunk = self.raw.read(left if n < 0 else min(n, left))
        self.got += len(chunk)
        if self.got > self.size:
            raise DataError(f"{self.where} sent more than its listed {self.size:,} bytes; refused")
        if not chunk and self.got < self.size:
            raise DataError(f"{self.where} truncated: {self.got} of {self.size} bytes")
        return chunk

    def close(self) -> None:
        with self.guard():
            self.raw.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
