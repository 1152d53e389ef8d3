"""Turn a folder of JPEG/PNG files into manifest entries, copying the files byte for byte.

Layout rules (every source other than `builtin:` ends up here):
- `train/` and `test/` at the top give the split; otherwise a file's split follows from its
  content hash (about 10% test), so it never changes when other files are added or renamed and
  identical images always land in the same split.
- the first folder level below the split (or below the root) names the class; class ids are
  the sorted class names. Files directly in the split root are unlabelled; mixing both is refused.
- a root holding nothing but one folder (an archive's `dataset/`) is unwrapped first, so a
  single-class folder comes out unlabelled.
- hidden names (`.DS_Store`, `.git/`) and `__MACOSX/` are ignored, as is any non-image file.
- `max_train`/`max_test` keep the first N of a split ordered by content hash: a deterministic
  sample that keeps the class mix (path order would keep only the first classes).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ul.data import DataError
from ul.data.manifest import SPLITS, Entry, sha256_file

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
TEST_PERCENT = 10


@dataclass
class _Item:
    src: Path
    rel: str  # path inside the split root, POSIX
    split: str | None
    sha256: str = ""


def _hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def image_files(root: Path) -> list[str]:
    """Sorted relative POSIX paths of the visible image files under `root`."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not _hidden(d))
        rel_dir = Path(dirpath).relative_to(root)
        found += [(rel_dir / f).as_posix() for f in filenames if not _hidden(f) and f.lower().endswith(IMAGE_SUFFIXES)]
    return sorted(found)


def unwrap(root: Path) -> Path:
    """Descend through single wrapping folders (`archive.tar` → `dataset/` → images)."""
    while True:
        visible = [p for p in root.iterdir() if not _hidden(p.name)]
        if len(visible) != 1 or not visible[0].is_dir() or visible[0].name in SPLITS:
            return root
        root = visible[0]


def _scan(root: Path) -> list[_Item]:
    if not any((root / s).is_dir() for s in SPLITS):
        return [_Item(root / rel, rel, None) for rel in image_files(root)]
    stray = [f for f in image_files(root) if f.split("/", 1)[0] not in SPLITS]
    if stray:
        raise DataError(f"{root}: has train/ or test/ folders but also images outside them, e.g. {stray[0]!r}")
    items = []
    for split in SPLITS:
        files = image_files(root / split) if (root / split).is_dir() else []
        if not files:
            raise DataError(f"{root}: {split}/ is missing or has no JPEG/PNG files (both train/ and test/ are needed)")
        items += [_Item(root / split / rel, rel, split) for rel in files]
    return items


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


def copy(root: Path, out_dir: Path, limits: dict[str, int]) -> tuple[list[Entry], list[str]]:
    """Copy the images of `root` into `out_dir/<split>/...` and return their manifest entries."""
    root = unwrap(Path(root))
    items = _scan(root)
    if len(items) < 2:
        raise DataError(f"{root}: found {len(items)} JPEG/PNG file(s); need at least 2 (a train and a test image)")
    for it in tqdm(items, desc="hashing", unit="file", mininterval=1.0):
        it.sha256 = sha256_file(it.src)
    if items[0].split is None:
        _hash_split(items)
    classes, labels = _labels(items)
    entries = []
    for split in SPLITS:
        chosen = sorted(
            (k for k, it in enumerate(items) if it.split == split), key=lambda k: (items[k].sha256, items[k].rel)
        )
        if limits[split] > 0:
            chosen = chosen[: limits[split]]
        for k in tqdm(sorted(chosen), desc=f"copy {split}", unit="file", mininterval=1.0):
            it, rel = items[k], f"{split}/{items[k].rel}"
            (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(it.src, out_dir / rel)
            entries.append(Entry(rel, split, labels[k], it.sha256, (out_dir / rel).stat().st_size))
    return entries, sorted(classes, key=classes.get)
