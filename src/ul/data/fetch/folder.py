"""Turn a folder of image files (PNG, JPEG, WebP, BMP, TIFF, GIF; or of videos) into manifest entries, packed byte for byte from where they are.

Which files count is a `Kind`: IMAGES (.png .jpg .jpeg .webp .bmp .tif .tiff .gif) or, when data.frames > 0, VIDEO (.mp4
.webm .avi .mkv .mov .gif and APNG .png). Only the name is checked here; the content is checked
when the pixels stage opens each file, which names any file that is not what its name says.

Layout rules (every source other than `builtin:` ends up here):
- `train/` and `test/` at the top give the split; otherwise a file's split follows from its
  content hash (about 10% test), so it never changes when other files are added or renamed and
  identical images always land in the same split.
- the first folder level below the split (or below the root) names the class; class ids are
  the sorted class names. Files directly in the split root are unlabelled; mixing both is refused.
- a root holding nothing but one folder (an archive's `dataset/`) is unwrapped first, so a
  single-class folder comes out unlabelled.
- hidden names (`.DS_Store`, `.git/`) and `__MACOSX/` are ignored, as is any file of another kind.
- `max_train`/`max_test` keep the first N of a split ordered by content hash: a deterministic
  sample that keeps the class mix (path order would keep only the first classes).

Only regular files inside the folder are read. Links are never followed (a link to `/etc/passwd`,
to a folder outside, or as `train/`), and pipes, devices and sockets are never opened (they would
block `fetch` forever): such entries, files larger than `MAX_FILE_BYTES` and names that are not
printable UTF-8 are skipped, each listed with its reason. The walk is bounded before anything is
hashed (`MAX_ENTRIES`, `MAX_TOTAL_BYTES`, folders at most `MAX_DEPTH` deep), every file is opened from
the root one folder at a time with O_NOFOLLOW (a folder swapped for a link after the walk is
refused, not followed), and system folders (`/`, `/etc`, a home folder, ...)
are refused as roots.
"""

from __future__ import annotations

import hashlib
import os
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from tqdm import tqdm

from ul.data.fetch.tree import DIR, FILE, LINK, ListedTree, LocalTree, join
from ul.data.layout import DataError, bad_name, shown
from ul.data.manifest import SPLITS, Entry
from ul.data.rawshards import Pending

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
VIDEO_SUFFIXES = (".mp4", ".webm", ".avi", ".mkv", ".mov", ".gif", ".png")  # .png: APNG


class Kind(NamedTuple):
    """The files a source holds: their suffixes and the words that name them in messages."""

    suffixes: tuple[str, ...]
    noun: str  # one file: "image"
    formats: str  # the accepted formats, in words


IMAGES = Kind(IMAGE_SUFFIXES, "image", "PNG/JPEG/WebP/BMP/TIFF/GIF")
VIDEO = Kind(VIDEO_SUFFIXES, "video", "video")
TEST_PERCENT = 10
MAX_ENTRIES = 2_000_000  # files and folders walked, before any is hashed
MAX_TOTAL_BYTES = 64 << 30  # image bytes found, before any is hashed
MAX_FILE_BYTES = 256 << 20  # one image file
MAX_DEPTH = 64  # folders below the root: deeper trees are listed as skipped, never walked or copied
SYSTEM_ROOTS = ("/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/proc", "/root", "/run", "/sbin")
SYSTEM_ROOTS += ("/srv", "/sys", "/tmp", "/usr", "/var")


@dataclass
class _Item:
    src: str  # path in the tree
    rel: str  # path inside the split root
    split: str | None
    sha256: str = ""


def _hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


class Walk:
    """A bounded walk of a tree below `base` that never follows a link or opens a special file;
    `skipped` = {path below `base`: reason}."""

    def __init__(self, tree: LocalTree | ListedTree, kind: Kind = IMAGES, base: str = ""):
        self.tree, self.kind, self.base = tree, kind, base
        self.entries = 0
        self.bytes = 0
        self.skipped: dict[str, str] = {}

    def _skip(self, rel: str, reason: str) -> None:
        self.skipped[rel] = reason

    def files(self, top: str = "") -> list[str]:
        """Sorted paths, relative to `top` (below `base`), of the regular, visible files of the kind."""
        found: list[str] = []
        stack = [(join(self.base, top), "")]
        while stack:
            folder, rel_dir = stack.pop()
            for e in self.tree.scandir(folder):
                self.entries += 1
                if self.entries > MAX_ENTRIES:
                    raise DataError(
                        f"{shown(self.tree.label(self.base))}: more than {MAX_ENTRIES:,} files and folders; "
                        "refusing to walk further (is this the right folder?)"
                    )
                if _hidden(e.name):
                    continue
                rel = f"{rel_dir}{e.name}"
                where = join(top, rel)
                is_image = e.name.lower().endswith(self.kind.suffixes)
                if e.kind == LINK:
                    if is_image or e.to_dir:  # a link to a file or folder, maybe outside the root
                        self._skip(where, "a symbolic link (links are not followed)")
                    continue
                if e.kind == DIR:
                    if reason := bad_name(e.name):
                        self._skip(where, reason)
                    elif rel.count("/") + 1 >= MAX_DEPTH:
                        self._skip(where, f"a folder {MAX_DEPTH} levels deep; deeper folders are not walked")
                    else:
                        stack.append((join(folder, e.name), f"{rel}/"))
                    continue
                if not is_image:
                    continue
                if e.kind != FILE:
                    self._skip(where, "not a regular file (a pipe, device or socket)")
                elif reason := bad_name(e.name):
                    self._skip(where, reason)
                elif e.size > MAX_FILE_BYTES:
                    limit = f"{MAX_FILE_BYTES:,}-byte limit per {self.kind.noun}"
                    self._skip(where, f"{e.size:,} bytes, over the {limit}")
                else:
                    self.bytes += e.size
                    if self.bytes > MAX_TOTAL_BYTES:
                        raise DataError(
                            f"{shown(self.tree.label(self.base))}: more than {MAX_TOTAL_BYTES:,} bytes of "
                            f"{self.kind.noun}s; refusing to read further (is this the right folder?)"
                        )
                    found.append(rel)
        return sorted(found)


def check_root(root: Path) -> Path:
    """A source folder that is not a system folder; returns it resolved (links in the path the
    user wrote are followed once, here, and never below it)."""
    real = Path(os.path.realpath(root))
    if str(real) in SYSTEM_ROOTS or real == Path.home().resolve():
        raise DataError(f"{shown(str(root))}: a system folder ({real}) cannot be a data source; name the image folder")
    if not real.is_dir():
        raise DataError(f"{shown(str(root))}: folder does not exist")
    return real


def source_root(source: str) -> Path:
    """The folder of a `file:///abs/dir` source, checked (local, existing, not a system folder)."""
    parsed = urllib.parse.urlsplit(source)
    if parsed.netloc not in ("", "localhost"):
        raise DataError(f"{source}: file:// URLs must be local (file:///absolute/path)")
    root = Path(urllib.request.url2pathname(parsed.path))
    if not root.is_dir():
        raise DataError(f"{source}: folder {root} does not exist")
    return check_root(root)


def unwrap(tree: LocalTree | ListedTree) -> str:
    """The path below single wrapping folders (`archive.tar` → `dataset/` → images); never a link."""
    base = ""
    while True:
        visible = [n for n in tree.scandir(base) if not _hidden(n.name)]
        if len(visible) != 1 or visible[0].kind != DIR or visible[0].name in SPLITS:
            return base
        base = join(base, visible[0].name)


def _scan(tree: LocalTree | ListedTree, walk: Walk) -> list[_Item]:
    base, where = walk.base, tree.label(walk.base)
    top = {n.name: n.kind for n in tree.scandir(base)}
    for split in SPLITS:
        if top.get(split) == LINK:
            raise DataError(f"{shown(where)}: {split}/ is a symbolic link; links are not followed")
    if not any(top.get(s) == DIR for s in SPLITS):
        return [_Item(join(base, rel), rel, None) for rel in walk.files()]
    stray = [f for f in walk.files() if f.split("/", 1)[0] not in SPLITS]
    if stray:
        raise DataError(
            f"{shown(where)}: has train/ or test/ folders but also {walk.kind.noun}s outside them, e.g. {shown(stray[0])}"
        )
    items = []
    for split in SPLITS:
        files = walk.files(split) if top.get(split) == DIR else []
        if not files:
            raise DataError(
                f"{shown(where)}: {split}/ is missing or has no {walk.kind.formats} files (both train/ and test/ are needed)"
            )
        items += [_Item(join(base, split, rel), rel, split) for rel in files]
    return items


def _hash(tree: LocalTree | ListedTree, rel: str) -> str:
    h = hashlib.sha256()
    with tree.open(rel) as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _hash_split(items: list[_Item]) -> None:
    """Assign splits by content hash; force one image into an empty split so both exist."""
    for it in items:
        it.split = "test" if int(it.sha256[:8], 16) % 100 < TEST_PERCENT else "train"
    for split, pick in (("test", min), ("train", max)):
        if len(items) > 1 and not any(it.split == split for it in items):
            pick(items, key=lambda it: (it.sha256, it.rel)).split = split


def _labels(items: list[_Item]) -> tuple[dict[str, int], list[int | None]]:
    names = [it.rel.split("/", 1)[0] if "/" in it.rel else None for it in items]
    if None in names and any(n is not None for n in names):
        loose = next(it.rel for it, n in zip(items, names) if n is None)
        raise DataError(
            f"some images are in class folders and some are not (e.g. {loose!r}); "
            "put every image in a class folder or none"
        )
    classes = {name: i for i, name in enumerate(sorted({n for n in names if n is not None}))}
    return classes, [None if n is None else classes[n] for n in names]


def files(
    tree: LocalTree | ListedTree, limits: dict[str, int], skipped: dict[str, str] | None = None, kind: Kind = IMAGES
) -> tuple[list[Pending], list[str]]:
    """The images (the files of `kind`) of `tree`, split and chosen, as files to pack from where they
    are (`ul.data.rawshards.pack`, which reads each once and hashes it), and the class names; entries
    that are not read (links, special files, bad names, oversized files) go in `skipped`. Files are
    read once more before that only when their content decides: a split by content hash, or a
    `max_train`/`max_test` sample (the packer then checks the bytes did not change in between)."""
    walk = Walk(tree, kind, unwrap(tree))
    items = _scan(tree, walk)
    if skipped is not None:
        skipped.update(walk.skipped)
    if len(items) < 2:
        raise DataError(
            f"{shown(tree.label(walk.base))}: found {len(items)} {kind.formats} file(s); "
            f"need at least 2 (a train and a test {kind.noun})"
        )
    if items[0].split is None or any(limits.values()):
        for it in tqdm(items, desc="hashing", unit="file", mininterval=1.0):
            it.sha256 = _hash(tree, it.src)
    if items[0].split is None:
        _hash_split(items)
    classes, labels = _labels(items)
    chosen = []
    for split in SPLITS:
        picked = sorted(
            (k for k, it in enumerate(items) if it.split == split), key=lambda k: (items[k].sha256, items[k].rel)
        )
        chosen += picked[: limits[split]] if limits[split] > 0 else picked
    pending = [
        Pending(
            Entry(f"{items[k].split}/{items[k].rel}", items[k].split, labels[k], items[k].sha256, 0),
            lambda src=items[k].src: tree.open(src),
        )
        for k in sorted(chosen)
    ]
    return pending, sorted(classes, key=classes.get)
