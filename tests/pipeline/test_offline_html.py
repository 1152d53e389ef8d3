"""The HTML a person looks at renders with no network, in a real browser (Debian `chromium`, headless).

Chromium runs with every host name unresolvable (`--host-resolver-rules=MAP * ~NOTFOUND`), so a
page that needs a CDN cannot get it, here or on a machine with internet. Each page is rendered
twice: a screenshot (pixels) and the DOM after its scripts ran (`--dump-dom`).
- `dvc plots show` of the committed reference training curves, with this repository's
  `.dvc/config` (`plots.html_template` → tools/dvc-plots.html, from tools/dvc_plots_template.py):
  vega must have drawn the curves (a canvas, and the plot's line colour in the screenshot).
- The Great Expectations Data Docs of a small real validation run: the index table must be filled
  in by bootstrap-table (one row per suite), the validation pages' tables enhanced by it, and the
  pages styled (bootstrap's colours, font-awesome's green success icons in the screenshot).
Each check is also run on the page as the tool makes it without this project's fix (DVC's CDN
template, GX's CDN links), and must fail there: the checks can tell a blank page from a drawn one.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from project import ROOT, sh

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian chromium is not installed (`apt-get install chromium`; `make setup` and .ci/run install it as root)",
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--virtual-time-budget=10000",
    "--window-size=1280,1000",
]
PLOT_PURPLE = (0x94, 0x5D, 0xD6)  # DVC's first line colour (dvc_render's colour range)
BOOTSTRAP_SUCCESS = (0x28, 0xA7, 0x45)  # .text-success: font-awesome's check icons
BOOTSTRAP_GREY_BG = (0xE2, 0xE3, 0xE5)  # .alert-secondary background: GX's headers and cards


def browse(page: Path, work: Path, tag: str) -> tuple:
    """(screenshot as an RGB array, DOM after the scripts ran) of `page`, each with a fresh profile."""
    png = work / f"{tag}.png"
    base = [CHROMIUM, *FLAGS]
    r = subprocess.run(
        [*base, f"--user-data-dir={work / (tag + '-a')}", f"--screenshot={png}", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert png.is_file(), f"chromium made no screenshot of {page}:\n{r.stderr[-2000:]}"
    r = subprocess.run(
        [*base, f"--user-data-dir={work / (tag + '-b')}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and "<html" in r.stdout, r.stderr[-2000:]
    return np.asarray(Image.open(png).convert("RGB")), r.stdout


def pixels_like(img: np.ndarray, rgb: tuple, tol: int = 24) -> int:
    return int((np.abs(img.astype(int) - np.array(rgb)).max(axis=-1) <= tol).sum())


def non_white_box(img: np.ndarray) -> tuple:
    ys, xs = np.nonzero((img < 235).any(axis=-1))
    return (0, 0) if len(xs) == 0 else (int(xs.max() - xs.min()), int(ys.max() - ys.min()))


def plot_problems(img: np.ndarray, dom: str, n_plots: int) -> list:
    problems = []
    canvases = len(re.findall(r'<canvas[^>]*class="marks"', dom)) + len(re.findall(r'<svg[^>]*class="marks"', dom))
    if canvases != n_plots:
        problems.append(f"{canvases} vega views drawn, expected {n_plots}")
    if pixels_like(img, PLOT_PURPLE, 40) < 300:
        problems.append(f"{pixels_like(img, PLOT_PURPLE, 40)} pixels of the curves' colour")
    w, h = non_white_box(img)
    if w < 300 or h < 250:
        problems.append(f"drawn region only {w}x{h} px")
    return problems


# ---- dvc plots show ------------------------------------------------------------------------------


def _plots_repo(tmp: Path) -> tuple:
    """A DVC repo with this project's .dvc/config, its dvc.yaml's curve plots and the committed TSVs."""
    repo = tmp / "repo"
    (repo / ".dvc").mkdir(parents=True)
    shutil.copy(ROOT / ".dvc" / "config", repo / ".dvc" / "config")
    plots = [p for p in yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"] if isinstance(p, dict)]
    tsvs = {f for p in plots for spec in p.values() for f in (spec.get("y") or {})}
    assert plots and tsvs, "dvc.yaml declares no curve plots"
    for f in tsvs:
        (repo / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / f, repo / f)
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"plots": plots}))
    sh(["git", "init", "-q"], repo)
    (repo / "tools").mkdir()
    r = subprocess.run(
        [
            sys.executable,
            ROOT / "tools" / "dvc_plots_template.py",
            "--out",
            repo / "tools" / "dvc-plots.html",
            "--node-modules",
            ROOT / "tools" / "node_modules",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and "inlined vega" in r.stderr, (
        f"no offline template (run `make setup`: npm ci --prefix tools):\n{r.stderr}"
    )
    return repo, len(plots)


def test_dvc_plots_render_offline(tmp_path):
    repo, n_plots = _plots_repo(tmp_path)
    config = (repo / ".dvc" / "config").read_text()
    assert re.search(r"html_template\s*=\s*\.\./tools/dvc-plots\.html", config), config
    sh(["dvc", "plots", "show", "-o", "offline"], repo)
    page = repo / "offline" / "index.html"
    assert "cdn.jsdelivr.net" not in page.read_text()
    img, dom = browse(page, tmp_path, "plots")
    Image.fromarray(img).save(tmp_path / "plots-offline.png")
    assert plot_problems(img, dom, n_plots) == []
    for title in re.findall(r"^  - (.+):$", (repo / "dvc.yaml").read_text(), re.M):
        assert title.strip("'\"") in dom  # every curve plot has its vega view

    # DVC's own template (vega from a CDN) with the same data: blank offline, and the checks say so
    (repo / ".dvc" / "config").write_text(config.replace("html_template", "# html_template"))
    sh(["dvc", "plots", "show", "-o", "cdn"], repo)
    assert "cdn.jsdelivr.net" in (repo / "cdn" / "index.html").read_text()
    img, dom = browse(repo / "cdn" / "index.html", tmp_path, "plots-cdn")
    assert len(plot_problems(img, dom, n_plots)) == 3


# ---- Great Expectations Data Docs ----------------------------------------------------------------


def docs_problems(index: tuple, page: tuple, suites: list) -> list:
    (img, dom), (vimg, vdom) = index, page
    problems = []
    rows = re.findall(r'<tr class="clickable-row" data-href="validations/(\w+)/[^"]*"[^>]*data-index', dom)
    if sorted(rows) != sorted(suites):
        problems.append(f"index table rows {rows}, expected one per suite {suites}")
    if "bootstrap-table" not in vdom or 'class="bootstrap-table' not in vdom:
        problems.append("validation page tables not built by bootstrap-table")
    if len(re.findall(r"<td[^>]*>", vdom)) < 20:
        problems.append("validation page has no result tables")
    for name, shot in (("index", img), ("validation page", vimg)):
        if pixels_like(shot, BOOTSTRAP_SUCCESS, 30) < 40:
            problems.append(f"{name}: no green success icons (font-awesome + bootstrap)")
        if pixels_like(shot, BOOTSTRAP_GREY_BG, 3) < 10000:
            problems.append(f"{name}: unstyled (no bootstrap header colours)")
    return problems


def test_data_docs_render_offline(tmp_path, monkeypatch):
    pytest.importorskip("great_expectations")
    from datahelpers import class_folder

    from ul.data.fetch.sources import fetch
    from ul.data.pixels.images import decode
    from ul.data.validate import gate, gx

    raw_copy = tmp_path / "gx-as-made"
    real = gx.offline_docs

    def keep_a_copy(docs_dir, *args, **kw):  # the docs as GX makes them, for the control below
        shutil.copytree(docs_dir, raw_copy)
        return real(docs_dir, *args, **kw)

    monkeypatch.setattr(gx, "offline_docs", keep_a_copy)

    fetch(f"file://{class_folder(tmp_path / 'src')}", tmp_path / "raw")
    decode(tmp_path / "raw", tmp_path / "dec", 32, 1, device="cpu")
    assert gate.validate(tmp_path / "raw", tmp_path / "dec", tmp_path / "validation", 32, 1)["success"]
    docs = tmp_path / "validation" / "docs"
    suites = ["manifest", "counts", "images"]
    page = next(docs.glob("validations/images/*/*/*.html"))

    index, vpage = browse(docs / "index.html", tmp_path, "gx-index"), browse(page, tmp_path, "gx-page")
    Image.fromarray(index[0]).save(tmp_path / "gx-index-offline.png")
    assert docs_problems(index, vpage, suites) == []
    assert "About the run time 2000-01-01" in index[1] and "validation.run.json" in index[1]

    raw_index = browse(raw_copy / "index.html", tmp_path, "gx-raw-index")
    raw_page = browse(raw_copy / page.relative_to(docs), tmp_path, "gx-raw-page")
    found = docs_problems(raw_index, raw_page, suites)
    assert any("index table rows []" in p for p in found) and any("unstyled" in p for p in found), found
