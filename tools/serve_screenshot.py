"""The README's screenshot of `ul serve` (docs/img/serve.png): the real command, a held-out image
picked, eight samples drawn, in headless Debian Chromium.

    python tools/serve_screenshot.py PROJECT [--out docs/img/serve.png]

PROJECT is a pipeline work tree with models/ and data/pixels/test (a `ci` run will do).
"""

import argparse
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("project", type=Path)
    p.add_argument("--out", type=Path, default=Path("docs/img/serve.png"))
    args = p.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ul = Path(sys.executable).with_name("ul")
    proc = subprocess.Popen([ul, "serve", "models", "--port", str(port), "--steps", "25"], cwd=args.project)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(url + "api/models", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1000, "height": 400})
            page.goto(url)
            page.wait_for_selector("#pick")
            page.select_option("#pick", "3")
            page.wait_for_selector("tr.result")
            page.click("#sample")
            page.wait_for_selector("img.grid")
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out), full_page=True)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(30)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
