"""Builders shared by the data tests: images, folders, archives and a loopback HTTP server."""

from __future__ import annotations

import hashlib
import importlib.resources
import io
import shutil
import struct
import tarfile
import threading
import zipfile
import zlib
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image

from ul.common import hashing
from ul.data import manifest, rawshards

# A real video: H.264 in MP4, 30 fps (PyPI mvtb-data, pinned in the lock).
TRAFFIC = importlib.resources.files("mvtbdata") / "images" / "traffic_sequence.mp4"


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def jpeg(arr: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def noise(seed: int, h: int = 20, w: int = 24, c: int | None = None) -> np.ndarray:
    """A textured image whose mean stays well inside [1, 254] (passes validation)."""
    rng = np.random.default_rng(seed)
    shape = (h, w) if c is None else (h, w, c)
    return rng.integers(30, 220, shape, dtype=np.uint8)


def write_folder(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def class_folder(root: Path, per_class: int = 12, classes=("cat", "dog")) -> Path:
    """`root/<class>/<k>.png|jpg`: no split folders, so the split comes from the content hash."""
    files = {}
    for ci, name in enumerate(classes):
        for k in range(per_class):
            arr = noise(100 * ci + k)
            files[f"{name}/{k:03d}." + ("jpg" if k % 3 == 0 else "png")] = jpeg(arr) if k % 3 == 0 else png(arr)
    return write_folder(root, files)


def packed(root: Path, files: dict[str, bytes]) -> rawshards.Selection:
    """`files` (name → bytes, names in sorted order) as the train split of a raw folder's shards,
    selected in that order: what the batch decoders read."""
    write_folder(root, {f"train/{name}": data for name, data in files.items()})
    entries = [manifest.Entry(f"train/{n}", "train", None, hashing.sha256_bytes(d), len(d)) for n, d in files.items()]
    return rawshards.Selection(rawshards.Shards(root), rawshards.pack(root, rawshards.loose(root, entries), 1 << 30))


def raw_files(raw: Path) -> dict[str, bytes]:
    """Every file of a fetched raw folder by manifest path, read from its shards."""
    shards = rawshards.Shards(raw)
    return {e.path: shards.read(e) for e in manifest.read(raw)}


def rewrite_raw(raw: Path, changes: dict[str, bytes]) -> None:
    """Change files inside a raw folder's shards, as a damaged disk or a hostile hand would: the
    manifest keeps its rows, hashes and sizes (decode does not re-hash; validate does)."""
    entries, files = manifest.read(raw), raw_files(raw)
    files.update(changes)
    write_folder(raw, files)
    shutil.rmtree(raw / rawshards.SHARDS)
    rawshards.pack(raw, rawshards.loose(raw, [replace(e, sha256="") for e in entries]), 1 << 30)
    for split in manifest.SPLITS:
        shutil.rmtree(raw / split)
    manifest.write(raw, entries, manifest.read_classes(raw))


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def corrupt_idat(data: bytes) -> bytes:
    """Break a PNG's compressed stream but keep every chunk CRC valid (passes Pillow's verify())."""
    out, pos = bytearray(data[:8]), 8
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        if kind == b"IDAT":
            body = b"\x00\x00" + body[2:]
        out += struct.pack(">I", n) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        pos += 12 + n
    return bytes(out)


def tar_gz(entries: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    links = links or {}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in links.items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tf.addfile(info)
    return buf.getvalue()


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return buf.getvalue()


class Server:
    """An HTTP server on 127.0.0.1 serving `routes[path] = (body, announced_length or None)`.

    An announced length larger than the body imitates a connection cut mid-download.
    """

    def __init__(self):
        self.routes: dict[str, tuple[bytes, int | None]] = {}
        self.redirects: dict[str, str] = {}  # path -> Location of a 302
        self.auth: list = []  # the Authorization header of each request
        routes, auth, redirects = self.routes, self.auth, self.redirects

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                auth.append(self.headers.get("Authorization"))
                if self.path in redirects:
                    self.send_response(302)
                    self.send_header("Location", redirects[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path not in routes:
                    self.send_error(404, "Not Found")
                    return
                body, length = routes[self.path]
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            def log_message(self, *args):  # keep pytest output clean
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
