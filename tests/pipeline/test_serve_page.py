"""`ul serve` as a person uses it: the real command on 127.0.0.1, driven in headless Debian Chromium
(Playwright pointed at /usr/bin/chromium): an upload and its results with their bits, a refused
file's message, the server still serving after it, a held-out image, samples, a model card, and a
screenshot that shows the images rendered."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from datahelpers import noise, png
from PIL import Image

from ul.common.shards import ShardWriter

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian chromium is not installed (`apt-get install chromium`; `make setup` and .ci/run install it as root)",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_export, tmp_path_factory):
    """`ul serve` over the tiny exports, from a folder whose data/pixels/test holds 3 held-out images."""
    cwd = tmp_path_factory.mktemp("serve_page")
    held = ShardWriter(cwd / "data" / "decoded" / "test", shard_size=8, prefix="shard")
    held.add(np.random.default_rng(2).integers(0, 256, (3, 1, 32, 32), dtype=np.uint8))
    held.close({})
    port = _free_port()
    ul = os.path.join(os.path.dirname(sys.executable), "ul")
    proc = subprocess.Popen(
        [ul, "serve", str(tiny_export), "--port", str(port), "--steps", "2"],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/"
    for _ in range(120):
        try:
            urllib.request.urlopen(url + "api/models", timeout=2)
            break
        except OSError:
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.5)
    yield url, cwd
    proc.terminate()
    proc.wait(30)


def test_the_page_in_a_real_browser(server, tmp_path):
    from playwright.sync_api import sync_playwright

    url, _ = server
    good, bad = tmp_path / "shirt.png", tmp_path / "notes.png"
    good.write_bytes(png(noise(5, 32, 32)))
    bad.write_bytes(b"these are notes, not an image")
    clear = tmp_path / "clear.png"
    Image.new("RGBA", (32, 32), (200, 10, 10, 0)).save(clear)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1100, "height": 800})
        requests = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(url)
        page.wait_for_function("document.querySelector('#message').textContent.includes('model(s) loaded')")

        page.set_input_files("#file", str(good))
        page.wait_for_selector("tr.result")
        row = page.locator("tr.result").first.inner_text()
        assert "tiny_export" in row and row.count(".") >= 3  # bits/image, bits/pixel, PSNR as numbers
        sizes = page.eval_on_selector_all("img.px", "els => els.map(e => e.complete ? e.naturalWidth : -1)")
        assert sizes == [32, 32]
        assert "32×32" in page.inner_text("#transforms") and "seed 0" in page.inner_text("#message")
        table = page.locator("#results").screenshot()
        pixels = np.asarray(Image.open(io.BytesIO(table)).convert("L"), dtype=float)
        assert pixels.std() > 20  # the images are there, not blank boxes

        page.click("#redraw")
        page.wait_for_function("document.querySelector('#message').textContent.includes('seed 1')")

        page.set_input_files("#file", str(bad))
        page.wait_for_selector("#message.error")
        message = page.inner_text("#message")
        assert message.startswith("error: notes.png: unreadable image") and "\n" not in message

        page.set_input_files("#file", str(clear))  # transparency: the commands' words, and where to change it here
        page.wait_for_function("document.querySelector('#message').textContent.includes('Transparency menu')")
        page.select_option("#background", "white")
        page.wait_for_function("document.querySelector('#message').textContent.startsWith('clear.png: ')")

        page.select_option("#pick", "1")  # a held-out image: the server is still serving
        page.wait_for_function("document.querySelector('#message').textContent.startsWith('held-out #1')")

        page.click("#sample")
        page.wait_for_selector("img.grid")
        assert page.eval_on_selector("img.grid", "e => e.complete && e.naturalWidth") > 32
        page.click("#card")
        page.wait_for_selector("#cardtext:not([hidden])")
        assert "library_name: unified-latents" in page.inner_text("#cardtext")
        browser.close()
    assert requests and all(r.startswith(url) or r.startswith("data:") for r in requests)  # nothing from elsewhere
