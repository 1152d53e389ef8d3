"""`fetch`: bring any supported data source into a raw folder: its files packed into tar shards
(ul.data.rawshards) plus a manifest.

Sources (`data.source`):
    builtin:fashion-mnist | builtin:mnist   packaged IDX files, written as PNGs
    builtin:moving-mnist                     video clips of bouncing MNIST digits, written as APNGs
                                             (data.frames > 0; ul.data.fetch.moving_mnist)
    file:///abs/dir                          a folder of PNG/JPEG/WebP/BMP/TIFF/GIF files (see ul.data.fetch.folder);
                                             with data.frames > 0, of videos (.mp4 .webm .avi .mkv .mov .gif,
                                             APNG .png), as are the archive, S3 and lakeFS sources
    https://host/x.tar.gz | .tgz | .tar | .zip   an archive, verified with the REQUIRED data.sha256
    s3://bucket/prefix                       endpoint AWS_ENDPOINT_URL or S3_ENDPOINT_URL, keys AWS_*
    lakefs://repo/ref/path                   via the lakeFS S3 gateway (LAKEFS_* variables: see ul.storage)

The output is byte-for-byte reproducible (sorted manifest, copied bytes or fixed PNG encoding,
nothing time-dependent) and written all-or-nothing: a failure leaves no partial folder, and an
existing `out_dir` is only replaced once the new one is complete.
"""

from __future__ import annotations

import contextlib
import sys
from collections import Counter
from pathlib import Path

from ul.common import hashing
from ul.common.atomic import scratch_dir, staged_dir
from ul.common.errors import redact_url
from ul.data import manifest, rawshards
from ul.data.fetch import archive, buckets, builtin, folder, moving_mnist
from ul.data.fetch.tree import LocalTree
from ul.data.layout import DataError, shown
from ul.data.rawshards import Pending

MAX_LISTED = 10  # skipped entries printed as warnings (metrics list them all)
SCHEMES = ("builtin:", "file://", "https://", "http://", "s3://", "lakefs://")


def _builtin(name: str, limits: dict[str, int], frames: int, mm) -> tuple[list[Pending], list[str]]:
    """A packaged dataset: Moving MNIST clips, or the still images of the IDX datasets."""
    if name == "moving-mnist":
        return moving_mnist.files(frames, mm, limits)
    if frames > 0 and name in builtin.DATASETS:
        raise DataError(
            f"builtin:{name} holds still images but data.frames={frames}: "
            "set data.frames=0, or use builtin:moving-mnist for video"
        )
    return builtin.files(name, limits)


def _collect(
    source: str,
    sha256: str | None,
    scratch: Path,
    stack: contextlib.ExitStack,
    limits: dict[str, int],
    skipped: dict[str, str],
    frames: int = 0,
    mm=None,
) -> tuple[list[Pending], list[str]]:
    """The source's files, to pack from where they are: a folder's files, an archive's members (the
    archive downloaded into `scratch`, open until `stack` closes), a bucket's objects as they stream."""
    if source.startswith("builtin:"):
        return _builtin(source[len("builtin:") :], limits, frames, mm)
    kind = folder.VIDEO if frames > 0 else folder.IMAGES
    if source.startswith("file://"):
        tree = LocalTree(folder.source_root(source))
    elif source.startswith(("https://", "http://")):
        path = archive.download(source, sha256, scratch / "archive")
        tree = archive.members(path, redact_url(source), stack)
    else:
        loc = buckets.s3_location(source) if source.startswith("s3://") else buckets.lakefs_location(source)
        tree = buckets.objects(loc)
    return folder.files(tree, limits, skipped, kind)


def _mm(cfg):
    """data.moving_mnist, or its defaults when the caller has none."""
    if cfg is not None:
        return cfg
    from ul.common.config import MovingMNISTConfig

    return MovingMNISTConfig()


def fetch(
    source: str,
    out_dir: Path,
    sha256: str | None = None,
    max_train: int = 0,
    max_test: int = 0,
    frames: int = 0,
    moving_mnist=None,
    shard_mb: int = 256,
) -> dict:
    """Write `out_dir/` = the source's images in `shards/` + `manifest.csv` + `classes.json`; return
    metrics. Each file goes straight from where it is into shards of at most `shard_mb` MiB: there is
    no loose copy (an archive is downloaded into a scratch folder and read from there, removed at
    the end; bucket objects stream from the bucket).

    `max_train`/`max_test` > 0 keep that many images (or clips) of the split (0 = all). `frames` > 0
    (data.frames) fetches videos instead of images; `moving_mnist` (data.moving_mnist, a
    ul.common.config.MovingMNISTConfig; None = its defaults) sets builtin:moving-mnist. Raises DataError.
    """
    out_dir = Path(out_dir)
    if not source.startswith(SCHEMES):
        raise DataError(f"data.source={redact_url(source)!r}: unsupported; use one of {', '.join(SCHEMES)}")
    if "://" in source:
        archive.refuse_credentials(source)
    if max_train < 0 or max_test < 0:
        raise DataError(f"max_train={max_train}, max_test={max_test}: must be >= 0")
    if frames < 0:
        raise DataError(f"data.frames={frames}: must be >= 0 (0 = still images)")
    if sha256 and not source.startswith(("https://", "http://")):
        print(
            f"warning: data.sha256 is only checked for https:// archives; ignored for {source.split(':')[0]}",
            file=sys.stderr,
        )
    limits = {"train": max_train, "test": max_test}
    skipped: dict[str, str] = {}
    with staged_dir(out_dir) as out, scratch_dir(out_dir, "download") as scratch, contextlib.ExitStack() as stack:
        files, classes = _collect(source, sha256, scratch, stack, limits, skipped, frames, _mm(moving_mnist))
        entries = rawshards.pack(out, files, shard_mb << 20)
        path = manifest.write(out, entries, classes)
        manifest_sha = hashing.sha256_file(path)
    for rel, reason in list(skipped.items())[:MAX_LISTED]:
        print(f"warning: skipped {shown(rel)}: {reason}", file=sys.stderr)
    if len(skipped) > MAX_LISTED:
        print(f"warning: and {len(skipped) - MAX_LISTED} more skipped entries", file=sys.stderr)
    counts = Counter(e.split for e in entries)
    extra = {"skipped": {shown(k): v for k, v in sorted(skipped.items())}} if skipped else {}
    return {
        "source": redact_url(source) if "://" in source else source,
        "clips" if frames > 0 else "images": {s: counts.get(s, 0) for s in manifest.SPLITS},
        "classes": len(classes),
        "bytes": sum(e.bytes for e in entries),
        "shards": len({e.shard for e in entries}),
        "manifest_sha256": manifest_sha,
        **extra,
    }
