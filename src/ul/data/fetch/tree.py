"""The files of a source as a tree that `ul.data.fetch.folder` walks and reads: a folder on this
machine (`LocalTree`), or names and sizes known from a listing, read in place (`ListedTree`: an
archive's members, a bucket's objects). Paths are POSIX, relative to the tree's root ("" is the root)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, NamedTuple

from ul.common.regular import NotRegularFile, open_regular
from ul.data.layout import DataError, shown

FILE, DIR, LINK, OTHER = "file", "dir", "link", "other"  # OTHER: a pipe, device or socket


class Node(NamedTuple):
    """One entry of a folder."""

    name: str
    kind: str  # FILE, DIR, LINK or OTHER
    size: int = 0
    to_dir: bool = False  # a link that leads to a folder


def join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


def open_under(root: Path, path: Path) -> BinaryIO:
    """Open `path` (under `root`) for reading only if it is a regular file reached from `root`
    without following a link at any step: each folder on the way is opened from the one above with
    O_NOFOLLOW (openat), so a folder swapped for a link after the walk, anywhere on the path, or a
    file swapped for a pipe, is refused rather than read from wherever it now leads."""
    parts = path.relative_to(root).parts
    fd = -1
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        for name in parts[:-1]:
            sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = sub
        return open_regular(parts[-1], nofollow=True, dir_fd=fd)
    except NotRegularFile:
        raise DataError(f"{shown(str(path))}: not a regular file") from None
    except OSError as err:
        raise DataError(
            f"{shown(str(path))}: cannot open ({err.strerror}; a link on the path is not followed)"
        ) from None
    finally:
        if fd >= 0:
            os.close(fd)


class LocalTree:
    """A folder on this machine, listed without following links (`stats`: each entry's lstat, by
    path) and read with `open_under`."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.stats: dict[str, os.stat_result] = {}

    def label(self, rel: str = "") -> str:
        return str(self.root / rel) if rel else str(self.root)

    def scandir(self, rel: str) -> list[Node]:
        folder = self.root / rel if rel else self.root
        try:
            listing = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as err:
            raise DataError(f"{shown(str(folder))}: cannot list the folder ({err.strerror})") from None
        nodes = []
        for e in listing:
            st = e.stat(follow_symlinks=False)
            mode = st.st_mode
            kind = LINK if stat.S_ISLNK(mode) else DIR if stat.S_ISDIR(mode) else FILE if stat.S_ISREG(mode) else OTHER
            self.stats[join(rel, e.name)] = st
            nodes.append(Node(e.name, kind, st.st_size, kind == LINK and e.is_dir()))
        return nodes

    def open(self, rel: str) -> BinaryIO:
        return open_under(self.root, self.root / rel)


class ListedTree:
    """Files known by name and size from a listing (an archive's directory, a bucket's objects),
    read in place by `opener(rel)`: nothing is copied to disk. `folders` adds empty folders."""

    def __init__(self, label: str, sizes: dict[str, int], opener: Callable[[str], BinaryIO], folders=()):
        self._label, self._open = label, opener
        self.children: dict[str, dict[str, Node]] = {"": {}}
        for rel in (*folders, *(r.rpartition("/")[0] for r in sizes)):
            self._add_folder(rel)
        for rel, size in sizes.items():
            parent, _, name = rel.rpartition("/")
            self.children[parent][name] = Node(name, FILE, size)

    def _add_folder(self, rel: str) -> None:
        parts = rel.split("/") if rel else []
        for k, name in enumerate(parts):  # iterative: a path may be deeper than the recursion limit
            parent, here = "/".join(parts[:k]), "/".join(parts[: k + 1])
            if here not in self.children:
                self.children[here] = {}
                self.children[parent][name] = Node(name, DIR)

    def label(self, rel: str = "") -> str:
        return f"{self._label.rstrip('/')}/{rel}" if rel else self._label

    def scandir(self, rel: str) -> list[Node]:
        return sorted(self.children.get(rel, {}).values(), key=lambda n: n.name)

    def open(self, rel: str) -> BinaryIO:
        return self._open(rel)
