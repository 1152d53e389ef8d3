"""Raw data at scale: one file per image against tar shards, side by side, at several dataset sizes.

    python bench/scaling.py [--sizes 70000 300000] [--out bench/scaling.json] [--only source|fetch]

For each size N: N distinct 28×28 PNGs (Fashion-MNIST images, each made distinct by a pixel that
encodes its index) are written as loose files, as fetch did before, and packed into tar shards
with the manifest, as fetch does now (ul.data.rawshards). Both layouts are then put under DVC in
one temporary git + DVC repository, each as the output of a one-line stage, and timed side by
side: `dvc commit` (hash + cache), the no-op `dvc repro` and `dvc status`, `dvc checkout` into an
emptied workspace, the `source` stage's fingerprint of the loose folder as a user's `file://` source
(cold: every file hashed; warm: unchanged, a stat per file; touched: 1% of the mtimes moved), and for the shards the decode and validate stages' own work (ul.data.pixels.images on
DALI, ul.data.validate.tables and Great Expectations). Prints a table and the per-file slopes,
and writes them as JSON. The estimate for ImageNet-1k in the README is drawn from these slopes.

`--only fetch` times the fetch stage on the loose folder as a user's `file://` source, side by
side: as it was (every file copied loose into the raw folder, then packed, then the copies
removed) and as it is (each file read from the source straight into the tar shards), each with
the peak disk space it added (the file system's used bytes, sampled every 50 ms). The same folder
as one plain `.tar` served over HTTP on 127.0.0.1 is fetched as it was (downloaded, extracted into
a scratch folder, packed from there) and as it is (packed from the downloaded archive itself).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ul.common import hashing
from ul.data import manifest, rawshards
from ul.data.fetch import builtin
from ul.data.fetch.idx import read_idx

SHARD_BYTES = 256 << 20


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _dvc(repo: Path, *args: str) -> float:
    def run():
        r = subprocess.run(["dvc", *args], cwd=repo, capture_output=True, text=True)
        if r.returncode:
            raise SystemExit(f"dvc {' '.join(args)} failed:\n{r.stderr[-2000:]}")

    return _timed(run)


def _write_loose(raw: Path, n: int) -> list[manifest.Entry]:
    """N distinct PNGs as loose files under raw/<split>/<label>/ (the per-file layout; every
    seventh image in the test split, as Fashion-MNIST's 10k of 70k)."""
    images = read_idx(builtin.FASHION_DIR / builtin.FILES["train"][0])
    labels = read_idx(builtin.FASHION_DIR / builtin.FILES["train"][1])
    entries = []
    for i in tqdm(range(n), desc=f"write {n} PNGs", unit="img", mininterval=2.0):
        img = images[i % len(images)].copy()
        img[0, :4] = np.frombuffer(int(i).to_bytes(4, "little"), np.uint8)  # distinct content, distinct hash
        data = builtin.encode_png(img)
        split, label = "test" if i % 7 == 0 else "train", int(labels[i % len(labels)])
        rel = f"{split}/{label}/{i:07d}.png"
        (raw / rel).parent.mkdir(parents=True, exist_ok=True)
        (raw / rel).write_bytes(data)
        entries.append(manifest.Entry(rel, split, label, hashing.sha256_bytes(data), len(data)))
    return entries


STAGES = """stages:
  files:
    cmd: echo per-file layout
    outs: [files]
  shards:
    cmd: echo tar shards
    outs: [shards]
"""


def _source(folder: Path, cache: Path) -> dict:
    """The source stage's check of a folder of loose images: cold, unchanged, and 1% touched."""
    import os

    from ul.data.fetch.fingerprint import fingerprint

    url = f"file://{folder}"
    out = {"source_cold_s": _timed(lambda: fingerprint(url, cache=cache))}
    out["source_warm_s"] = min(_timed(lambda: fingerprint(url, cache=cache)) for _ in range(3))
    files = sorted(p for p in folder.rglob("*.png"))[::100]
    for f in files:
        st = f.stat()
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    out["source_touched_s"] = _timed(lambda: fingerprint(url, cache=cache))
    return out


def measure(n: int, tmp: Path, only_source: bool = False) -> dict:
    repo = tmp / f"repo-{n}"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["dvc", "init", "-q"], cwd=repo, check=True)
    (repo / "dvc.yaml").write_text(STAGES)
    row: dict = {"images": n}
    loose = repo / "files"
    loose.mkdir()
    entries = []
    row["write_loose_s"] = _timed(lambda: entries.extend(_write_loose(loose, n)))
    row.update(_source(loose, tmp / f"source-cache-{n}.json"))
    if only_source:
        shutil.rmtree(repo)
        return row
    shards = repo / "shards"
    shards.mkdir()

    def pack():
        packed = rawshards.pack(shards, rawshards.loose(loose, entries), SHARD_BYTES)
        manifest.write(shards, packed, builtin.FASHION_CLASSES)
        manifest.write(loose, entries, builtin.FASHION_CLASSES)

    row["pack_s"] = _timed(pack)
    row["shard_files"] = sum(1 for p in (shards / rawshards.SHARDS).iterdir())
    for layout in ("files", "shards"):
        row[f"{layout}_commit_s"] = _dvc(repo, "commit", "-f", layout)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True, capture_output=True)
    for layout in ("files", "shards"):
        row[f"{layout}_status_s"] = min(_dvc(repo, "status", layout) for _ in range(3))
        row[f"{layout}_noop_repro_s"] = min(_dvc(repo, "repro", "--single-item", layout) for _ in range(3))
    for layout in ("files", "shards"):
        shutil.rmtree(repo / layout)
        row[f"{layout}_checkout_s"] = _dvc(repo, "checkout", layout)
    row.update(_stages(shards, tmp / f"decoded-{n}", tmp / f"validation-{n}"))
    shutil.rmtree(repo)
    return row


def _with_peak_disk(fn, where: Path) -> tuple[float, int]:
    """fn's wall time, and the most disk space it held on `where`'s file system at once."""
    base, peak, done = shutil.disk_usage(where).used, [0], threading.Event()

    def watch():
        while not done.wait(0.05):
            peak[0] = max(peak[0], shutil.disk_usage(where).used - base)

    watcher = threading.Thread(target=watch)
    watcher.start()
    took = _timed(fn)
    done.set()
    watcher.join()
    return took, max(peak[0], 0)


def _fetch_before(source: Path, out: Path) -> None:
    """fetch as it was: every file copied loose into `out`, then packed, then the copies removed."""
    from ul.data.fetch import folder
    from ul.data.fetch.tree import LocalTree

    files, classes = folder.files(LocalTree(source), {"train": 0, "test": 0})
    out.mkdir()
    for f in files:
        (out / f.entry.path).parent.mkdir(parents=True, exist_ok=True)
        with f.open() as src, open(out / f.entry.path, "wb") as dst:
            shutil.copyfileobj(src, dst)
    packed = rawshards.pack(out, rawshards.loose(out, [f.entry for f in files]), SHARD_BYTES)
    manifest.write(out, packed, classes)
    for split in manifest.SPLITS:
        shutil.rmtree(out / split)


def measure_fetch(n: int, tmp: Path) -> dict:
    """The fetch stage on a folder of n loose PNGs, as it was and as it is: time and peak disk."""
    from ul.data.fetch.sources import fetch

    loose = tmp / f"files-{n}"
    loose.mkdir()
    _write_loose(loose, n)
    size = sum(p.stat().st_size for p in loose.rglob("*.png"))
    row: dict = {"images": n, "source_bytes": size}
    for name, run in (
        ("before", lambda out: _fetch_before(loose, out)),
        ("after", lambda out: fetch(f"file://{loose}", out, shard_mb=SHARD_BYTES >> 20)),
    ):
        out = tmp / f"raw-{name}-{n}"
        row[f"fetch_{name}_s"], row[f"fetch_{name}_peak_bytes"] = _with_peak_disk(lambda r=run, o=out: r(o), tmp)
        row[f"raw_{name}_bytes"] = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        shutil.rmtree(out)
    row.update(_measure_archive(loose, tmp, n))
    shutil.rmtree(loose)
    return row


def _archive_before(url: str, sha256: str, out: Path) -> None:
    """An archive's fetch as it was: downloaded, extracted into a scratch folder, packed from there."""
    import tarfile

    from ul.data.fetch import archive
    from ul.data.fetch.sources import fetch

    scratch = out.with_name(out.name + ".scratch")
    scratch.mkdir()
    try:
        path = archive.download(url, sha256, scratch / "archive")
        with tarfile.open(path) as tf:
            tf.extractall(scratch / "extracted", filter="data")
        fetch(f"file://{scratch / 'extracted'}", out, shard_mb=SHARD_BYTES >> 20)
    finally:
        shutil.rmtree(scratch)


def _measure_archive(loose: Path, tmp: Path, n: int) -> dict:
    """The same files as one plain tar served on 127.0.0.1: fetch as it was and as it is."""
    import functools
    import tarfile
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from ul.data.fetch.sources import fetch

    served = tmp / f"served-{n}"
    served.mkdir()
    with tarfile.open(served / "d.tar", "w", format=tarfile.USTAR_FORMAT) as tf:
        for path in sorted(loose.rglob("*.png")):
            tf.add(path, arcname=path.relative_to(loose).as_posix())
    sha256 = hashing.sha256_file(served / "d.tar")
    quiet = type("Quiet", (SimpleHTTPRequestHandler,), {"log_message": lambda *a: None})
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(quiet, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/d.tar"
    row = {"archive_bytes": (served / "d.tar").stat().st_size}
    try:
        for name, run in (
            ("before", lambda out: _archive_before(url, sha256, out)),
            ("after", lambda out: fetch(url, out, sha256=sha256, shard_mb=SHARD_BYTES >> 20)),
        ):
            out = tmp / f"raw-archive-{name}-{n}"
            row[f"archive_{name}_s"], row[f"archive_{name}_peak_bytes"] = _with_peak_disk(
                lambda r=run, o=out: r(o), tmp
            )
            shutil.rmtree(out)
    finally:
        server.shutdown()
        shutil.rmtree(served)
    return row


def _stages(raw: Path, decoded: Path, validation: Path) -> dict:
    """The decode and validate stages' work on the shards."""
    from ul.data.pixels.images import decode
    from ul.data.validate.gate import validate

    out = {"decode_s": _timed(lambda: decode(raw, decoded, 32, 1, device="cpu"))}
    out["validate_s"] = _timed(lambda: validate(raw, decoded, validation, 32, 1))
    return out


def _fetch_table(rows: list[dict], what: str, size_key: str, size_name: str) -> None:
    """One table of `--only fetch`: `what` (fetch or archive) as it was and as it is, per size."""
    mb = 1 << 20
    print(f"{'images':>8} {size_name:>9}  {what + ' as it was':>24}  {what + ' now (streamed)':>24}")
    for r in rows:
        cells = [
            f"{r[f'{what}_{k}_s']:8.1f}s, peak +{r[f'{what}_{k}_peak_bytes'] / mb:6.0f}MB" for k in ("before", "after")
        ]
        print(f"{r['images']:>8} {r[size_key] / mb:7.0f}MB  {cells[0]}  {cells[1]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[70000, 300000])
    p.add_argument("--out", default="bench/scaling.json")
    p.add_argument(
        "--only", choices=["source", "fetch"], help="only the source stage's fingerprint, or only fetch (no DVC)"
    )
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="ul-scaling-") as tmp:
        for n in args.sizes:
            rows.append(
                measure_fetch(n, Path(tmp)) if args.only == "fetch" else measure(n, Path(tmp), args.only == "source")
            )
            print(json.dumps(rows[-1]), file=sys.stderr)
    if args.only == "fetch":
        Path(args.out).with_name("scaling-fetch.json").write_text(json.dumps(rows, indent=1) + "\n")
        _fetch_table(rows, "fetch", "source_bytes", "source")
        _fetch_table(rows, "archive", "archive_bytes", ".tar")
        if len(rows) >= 2:
            lo, hi = rows[0], rows[-1]
            for what in ("fetch", "archive"):
                for name in ("before", "after"):
                    slope = (hi[f"{what}_{name}_s"] - lo[f"{what}_{name}_s"]) / (hi["images"] - lo["images"]) * 1e6
                    print(f"slope {what} {name}: {slope:.0f} µs/image")
        return
    if args.only:
        for r in rows:
            print(f"{r['images']:>8} images: source check cold {r['source_cold_s']:.2f}s, "
                  f"unchanged {r['source_warm_s']:.2f}s, 1% touched {r['source_touched_s']:.2f}s")  # fmt: skip
        return
    Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    _print(rows)


def _print(rows: list[dict]) -> None:
    print(f"{'images':>8}  {'step':<16} {'per-file':>10} {'shards':>10} {'ratio':>7}")
    for r in rows:
        print(f"{r['images']:>8}  {'files tracked':<16} {r['images'] + 2:>10} {r['shard_files'] + 2:>10}")
        for step in ("commit", "status", "noop_repro", "checkout"):
            a, b = r[f"files_{step}_s"], r[f"shards_{step}_s"]
            print(f"{r['images']:>8}  dvc {step:<12} {a:9.2f}s {b:9.2f}s {a / b:6.1f}x")
        print(f"{r['images']:>8}  {'write / pack':<16} {r['write_loose_s']:9.2f}s {r['pack_s']:9.2f}s")
        print(f"{r['images']:>8}  {'decode, validate':<16} {'':>10} {r['decode_s']:9.2f}s {r['validate_s']:6.1f}s")
        print(f"{r['images']:>8}  {'source check':<16} cold {r['source_cold_s']:.2f}s, unchanged {r['source_warm_s']:.2f}s, "
              f"1% touched {r['source_touched_s']:.2f}s")  # fmt: skip
    if len(rows) >= 2:
        lo, hi = rows[0], rows[-1]
        dn = hi["images"] - lo["images"]
        for step in ("commit", "status", "noop_repro", "checkout"):
            a = (hi[f"files_{step}_s"] - lo[f"files_{step}_s"]) / dn * 1e6
            b = (hi[f"shards_{step}_s"] - lo[f"shards_{step}_s"]) / dn * 1e6
            print(f"slope dvc {step:<12} per-file {a:8.1f} µs/image   shards {b:8.1f} µs/image")


if __name__ == "__main__":
    main()
