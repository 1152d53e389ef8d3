"""The Data Docs made byte-stable (a fixed run identity, no build stamps, so the validate stage has
the same DVC hash on every machine) and offline (their CDN assets vendored from tools/node_modules)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from ul.data.layout import DataError

# A fixed run identity and no build stamps make result.json and the Data Docs byte-for-byte
# reproducible, so the validate stage has the same DVC hash on every machine.
VOLATILE = re.compile(r"\?d=\d{8}T[\d.]+Z&(amp;)?dataContextId=[0-9a-f-]+")


STAMP, RUN_TIME = re.compile(r"\d{8}T\d{6}\.\d{6}Z"), "20000101T000000.000000Z"  # validation time → the fixed run time


UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def stable(text: str) -> str:
    """Drop GX's per-build stamps and times; number its random ids (uuid4) in order of appearance."""
    ids: dict[str, str] = {}
    text = STAMP.sub(RUN_TIME, VOLATILE.sub("", text))
    return UUID.sub(lambda m: ids.setdefault(m.group(0), f"id{len(ids)}"), text)


# Data Docs that render offline. GX's pages load bootstrap, jquery, bootstrap-table, font-awesome,
# vega ... from CDNs (blank tables, no styles without the network). The same libraries come from the
# npm packages pinned in tools/package.json (`make setup` runs `npm ci --prefix tools`): each CDN
# address below is replaced by a copy under docs/static/vendor/<package path>, linked relatively.
# Pinned packages make the copies, and so the stage's DVC hash, the same on every machine.
CDN_TO_NPM = [  # (CDN address pattern, file under node_modules; \1 from the pattern)
    (r"https://cdn\.jsdelivr\.net/npm/vega@5", "vega/build/vega.min.js"),
    (r"https://cdn\.jsdelivr\.net/npm/vega-lite@5", "vega-lite/build/vega-lite.min.js"),
    (r"https://cdn\.jsdelivr\.net/npm/vega-embed@6", "vega-embed/build/vega-embed.min.js"),
    (r"https://code\.jquery\.com/jquery-3\.[\d.]+\.min\.js", "jquery/dist/jquery.min.js"),
    (
        r"https://cdnjs\.cloudflare\.com/ajax/libs/popper\.js/1\.[\d.]+/umd/popper\.min\.js",
        "popper.js/dist/umd/popper.min.js",
    ),
    (
        r"https://\w+\.bootstrapcdn\.com/bootstrap/4\.[\d.]+/(css/bootstrap\.min\.css|js/bootstrap\.min\.js)",
        r"bootstrap/dist/\1",
    ),
    (r"https://unpkg\.com/bootstrap-table@1\.19\.\d+/dist/([\w/.-]+\.(?:js|css))", r"bootstrap-table/dist/\1"),
    (
        r"https://cdnjs\.cloudflare\.com/ajax/libs/bootstrap-datepicker/1\.9\.0/(js|css)/([\w.-]+)",
        r"bootstrap-datepicker/dist/\1/\2",
    ),
    (
        r"https://cdn\.jsdelivr\.net/npm/@forevolve/bootstrap-dark@1\.1\.0/dist/css/bootstrap-prefers-dark\.css",
        "@forevolve/bootstrap-dark/dist/css/bootstrap-prefers-dark.min.css",
    ),
    (
        r"https://cdnjs\.cloudflare\.com/ajax/libs/font-awesome/6\.6\.0/css/all\.min\.css",
        "@fortawesome/fontawesome-free/css/all.min.css",
    ),
]


WITH_FILES = {"@fortawesome/fontawesome-free/css/all.min.css": "@fortawesome/fontawesome-free/webfonts/*.woff2"}


GX_IMAGES = re.compile(
    r"https://great-expectations-web-assets\.s3\.[\w.-]+\.amazonaws\.com/[\w.-]+\.png"
)  # GX ships the logo


# A resource the page loads (not a link a reader may click): script/img src, stylesheet href, CSS url().
REMOTE = re.compile(
    r"""<(?:script|img)\b[^>]*\bsrc=["']https?://[^"']+|<link\b[^>]*\bhref=["']https?://[^"']+|"""
    r"""url\(\s*["']?https?://[^)"']+"""
)


RUN_TIME_NOTE = (
    '<div class="alert alert-info ul-run-time-note" role="note"><strong>About the run time '
    "2000-01-01 00:00 UTC:</strong> it is a fixed stand-in, not when these data were validated. The pages "
    "are made byte-for-byte reproducible, so that DVC gives the validate stage the same hash on every "
    "machine. The real time of the last validation on this machine is printed by the stage and kept in "
    '<a href="{href}"><code>{name}</code></a>, beside the <code>{out}/</code> folder, which DVC does not hash.</div>'
)


NOTE_BEFORE = '<div class="container-fluid pt-4 pb-4 pl-5 pr-5">'


RUN_SUFFIX = ".run.json"  # data/validation → data/validation.run.json: the real run time, not hashed


def node_modules() -> Path:
    """The npm packages of tools/package.json: $UL_NODE_MODULES, else the installed tools/node_modules
    nearest the working directory (the project, under DVC) or this source file (an editable install)."""
    if os.environ.get("UL_NODE_MODULES"):
        return Path(os.environ["UL_NODE_MODULES"])
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for folder in (start, *start.parents):
            if (folder / "tools" / "node_modules").is_dir():
                return folder / "tools" / "node_modules"
    return Path.cwd() / "tools" / "node_modules"


def _vendor(url: str, docs_dir: Path, modules: Path) -> str | None:
    """The docs-relative path of the local copy of `url` (copied on first use); None if not a known asset."""
    if GX_IMAGES.fullmatch(url):
        return "static/images/logo-long.png"
    for pattern, target in CDN_TO_NPM:
        m = re.fullmatch(pattern, url)
        if not m:
            continue
        rel = m.expand(target)
        for src in [modules / rel, *sorted(modules.glob(WITH_FILES.get(rel, "")) if rel in WITH_FILES else [])]:
            if not src.is_file():
                raise DataError(
                    f"{src}: missing; the Data Docs' web assets come from tools/package.json "
                    "(run `make setup`, or `npm ci --prefix tools`)"
                )
            dst = docs_dir / "static" / "vendor" / src.relative_to(modules)
            if not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
        return f"static/vendor/{rel}"
    return None


def offline_docs(docs_dir: Path, sidecar_name: str, modules: Path | None = None) -> None:
    """Make the Data Docs in `docs_dir` render with no network: vendor and relink every CDN asset
    (dropping the CDN builds' `integrity`/`crossorigin`), and say on each page what the fixed run
    time means and where the real one is (`sidecar_name`, beside the folder holding docs/). Raises
    DataError if a page would still load something from the network (a GX upgrade with new assets)."""
    modules = modules or node_modules()
    for html in sorted(docs_dir.rglob("*.html")):
        up = Path(os.path.relpath(docs_dir, html.parent))

        def local(m: re.Match, up: Path = up) -> str:
            rel = _vendor(m.group(2), docs_dir, modules)
            return m.group(0) if rel is None else m.group(1) + (up / rel).as_posix()

        text = html.read_text(encoding="utf-8")
        text = re.sub(
            r"""(<(?:script|img|link)\b[^>]*?\b(?:src|href)=["']|url\(\s*["']?)(https?://[^"')\s]+)""", local, text
        )
        text = re.sub(
            r"<(?:script|link)\b[^>]*>", lambda m: re.sub(r'\s+(?:integrity|crossorigin)="[^"]*"', "", m.group(0)), text
        )
        left = REMOTE.findall(text)
        if left:
            raise DataError(f"{html}: still loads {left[0]!r} from the network; add it to CDN_TO_NPM")
        note = RUN_TIME_NOTE.format(
            href=(up / ".." / ".." / sidecar_name).as_posix(),
            name=sidecar_name,
            out=sidecar_name.removesuffix(RUN_SUFFIX),
        )
        at = text.find(NOTE_BEFORE) if NOTE_BEFORE in text else text.find("<body>") + len("<body>")
        html.write_text(text[:at] + note + "\n" + text[at:], encoding="utf-8")
