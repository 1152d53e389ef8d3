"""`ul serve`'s handlers, called through Starlette's test client on tiny exports: results ordered by
bits with their images, the seed, refused uploads in one line (the `ul` commands' policy), a busy
queue, samples, cards and the held-out images."""

from __future__ import annotations

import base64
import io
import shutil
import threading
import time

import numpy as np
import pytest
import torch
from datahelpers import noise, png
from PIL import Image
from starlette.testclient import TestClient

from ul.artifacts import export
from ul.common.shards import ShardWriter
from ul.core.model import UnifiedLatents
from ul.serve import app as serve_app
from ul.serve import models


@pytest.fixture(scope="module")
def exports(tiny_export, tmp_path_factory):
    """The tiny export (with its stage 2) and a second, differently initialised one without."""
    root = tmp_path_factory.mktemp("serve")
    shutil.copytree(tiny_export / "stage1", root / "tiny" / "stage1")
    shutil.copytree(tiny_export / "stage2", root / "tiny" / "stage2")
    cfg = models.Autoencoder.load(root / "tiny" / "stage1").config
    torch.manual_seed(7)
    other = UnifiedLatents(cfg).eval()
    with torch.no_grad():
        for p in other.parameters():  # the untrained decoder's last layer is zero: give it a voice
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.05)
    export.save(other, cfg, root / "other", {"steps": 0})
    held = ShardWriter(root / "data" / "decoded" / "test", shard_size=8, prefix="shard")
    held.add(np.random.default_rng(1).integers(0, 256, (3, 1, 32, 32), dtype=np.uint8))
    held.close({})
    return root


@pytest.fixture(scope="module")
def client(exports):
    served = models.load(models.find([exports / "tiny", exports / "other"]))
    with TestClient(serve_app.create_app(served, steps=2, queue_size=1, root=exports)) as c:
        yield c


def _image(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def test_an_upload_goes_through_every_model_ordered_by_bits(client):
    r = client.post("/api/reconstruct?seed=3", content=png(noise(1, 40, 30)))
    assert r.status_code == 200, r.text
    out = r.json()
    rows = out["rows"]
    assert [row["model"] for row in rows] != [] and {row["model"] for row in rows} == {"tiny", "other"}
    assert [row["bits_per_image"] for row in rows] == sorted(row["bits_per_image"] for row in rows)
    for row in rows:
        assert _image(row["input"]).shape == (32, 32) and _image(row["reconstruction"]).shape == (32, 32)
        assert row["bits_per_pixel"] == pytest.approx(row["bits_per_image"] / 1024)
        assert np.isfinite(row["psnr_db"]) and "32×32" in row["transform"]
    assert out["seed"] == 3 and out["steps"] == 2


def test_the_seed_redraws_the_decoder_noise_and_is_repeatable(client):
    data = png(noise(2, 32, 32))
    a, b, c = (client.post(f"/api/reconstruct?seed={s}", content=data).json()["rows"] for s in (5, 5, 6))
    other = {r["model"]: r for r in a}["other"]
    assert other["reconstruction"] == {r["model"]: r for r in b}["other"]["reconstruction"]
    assert other["reconstruction"] != {r["model"]: r for r in c}["other"]["reconstruction"]


@pytest.mark.parametrize(
    "body, status, words",
    [
        (b"GIF89a but not really", 400, "upload: unreadable image"),
        (b"", 400, "upload: empty; choose an image file"),
        (b"\x89PNG" + b"\0" * (serve_app.MAX_UPLOAD + 1), 413, "over 33,554,432 bytes"),
        (None, 400, "over the budget"),  # a bomb: a small PNG that declares 6000×6000 pixels
        ("alpha", 400, "has transparent pixels (alpha)"),
    ],
)
def test_a_bad_upload_is_one_line_and_the_server_keeps_running(client, body, status, words):
    if body is None:
        body = _bomb()
    elif body == "alpha":
        im = Image.fromarray(noise(3, 32, 32, 3)).convert("RGBA")
        im.putalpha(0)
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        body = buf.getvalue()
    r = client.post("/api/reconstruct", content=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error.startswith("error: ") and words in error and "\n" not in error
    assert client.post("/api/reconstruct", content=png(noise(4, 32, 32))).status_code == 200  # still serving


def _bomb() -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 6000, 6000, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
        + chunk(b"IEND", b"")
    )


def test_transparency_follows_the_background_option_as_the_commands_do(client):
    im = Image.fromarray(noise(3, 32, 32, 3)).convert("RGBA")
    im.putalpha(0)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    r = client.post("/api/reconstruct?background=white", content=buf.getvalue())
    assert r.status_code == 200 and (_image(r.json()["rows"][0]["input"]) == 255).all()
    assert client.post("/api/reconstruct?background=pink", content=buf.getvalue()).status_code == 400


def test_a_full_queue_answers_busy_at_once(client, monkeypatch):
    gate, started = threading.Event(), threading.Event()

    def slow(*args):
        started.set()
        gate.wait(30)
        return {"rows": [], "seed": 0, "steps": 0}

    monkeypatch.setattr(models, "reconstruct_all", slow)
    work = client.app.state.work
    first = [
        threading.Thread(target=client.post, args=("/api/reconstruct",), kwargs={"content": b"x"}) for _ in range(2)
    ]
    first[0].start()
    assert started.wait(10)
    first[1].start()  # waits in the queue (size 1)
    deadline = time.monotonic() + 10
    while work.pending < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert work.pending == 2
    r = client.post("/api/reconstruct", content=b"x")  # the queue is full: answered at once
    assert r.status_code == 503 and "busy: 1 requests are already waiting" in r.json()["error"]
    assert client.get("/api/models").status_code == 200  # the page itself never waits for the model
    gate.set()
    for t in first:
        t.join(30)


def test_samples_cards_and_held_out_images(client):
    r = client.post("/api/sample?model=0&n=3&seed=1")
    assert r.status_code == 200, r.text
    assert _image(r.json()["grid"]).shape[0] > 32
    r = client.post("/api/sample?model=1")
    assert r.status_code == 400 and "no stage2/" in r.json()["error"]
    assert client.post("/api/sample?model=9").status_code == 400
    assert client.post("/api/sample?n=1000").status_code == 400
    card = client.get("/api/card?model=0").text
    assert card.startswith("---\nlibrary_name: unified-latents")
    info = client.get("/api/models").json()
    assert info["held_out"] == 3 and [m["samples"] for m in info["models"]] == [True, False]
    held = client.get("/api/held-out?k=2")
    assert held.headers["content-type"] == "image/png" and Image.open(io.BytesIO(held.content)).size == (32, 32)
    page = client.get("/").text
    assert "<script>" in page and "http" not in page.split("<script>")[1]  # nothing fetched from elsewhere


def test_serve_names_what_is_not_a_model(tmp_path, capsys):
    from ul import cli

    assert cli.main(["serve", str(tmp_path)]) == 1
    assert "neither an export folder nor a folder holding stage1/" in capsys.readouterr().err
