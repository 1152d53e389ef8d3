"""`validate`: a Great Expectations suite over the manifest, the split counts and the decoded pixels.

Three tables, one suite each:
- manifest: one row per fetched file, plus the sha256 of the file on disk now;
- counts: per split, manifest rows, skipped files and decoded rows;
- images: one row per decoded image with its shape, dtype and pixel statistics (a blank or
  saturated image has std 0 or a mean outside [1, 254]); for video (data.frames > 0) `clips`
  instead, one row per decoded clip (ul.data.validate_video: frame count, stills, duplicates),
  and the manifest's width and height come from each video's header.
GX runs offline (GX_ANALYTICS_ENABLED=false) in a throw-away File context, because only a File
context renders HTML Data Docs; the docs and the JSON results are copied to `out_dir` and written
even when an expectation fails, and only then is ValidationError raised, naming every failed
expectation with a few failing rows.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ul.common.atomic import staged_dir
from ul.common.shards import ShardReader
from ul.data import DataError, manifest, rawshards, shown
from ul.data.decode import PATHS, SKIPPED
from ul.data.manifest import SPLITS

EXAMPLES = 5


class ValidationError(DataError):
    """One or more expectations failed; `metrics` and the written results say which."""

    def __init__(self, message: str, metrics: dict):
        super().__init__(message)
        self.metrics = metrics


def _member(shards: rawshards.Shards, rel: str, split: str, shard: str, key: str) -> bytes | None:
    """A manifest row's file from its shard; None when the row cannot name one or it is missing."""
    if manifest.check_location(shard, key, split):
        return None
    try:
        return shards.read(manifest.Entry(rel, split, None, "", 0, shard, key))
    except DataError:
        return None


def _int_or_text(value: str):
    """'' → None, '3' → 3, anything else stays text so the label expectation can show it."""
    if value == "":
        return None
    try:
        return int(value)
    except ValueError:
        return value


def manifest_table(raw_dir: Path, skipped: set[str] = frozenset(), size_of=None) -> pd.DataFrame:
    """The manifest as written (not parsed by ul.data.manifest, so bad values reach GX), plus
    `file_sha256`, the hash of the file in its shard now ("missing" when it is not there), and the
    header's width and height (empty for the files decode skipped: they are counted, not measured).
    `size_of(bytes)` reads them (default: the image header)."""
    path = raw_dir / manifest.MANIFEST
    if not path.exists():
        raise DataError(f"{path}: no manifest; run the fetch stage first")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, UnicodeDecodeError) as err:  # pandas' ParserError is a ValueError
        raise DataError(f"{path}: not a readable manifest ({str(err).strip().splitlines()[0]})") from None
    missing = [c for c in manifest.COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}")
    for k, (rel, split) in enumerate(zip(df["path"], df["split"])):
        if reason := manifest.check_path(rel, split):  # before any file is opened
            raise DataError(f"{path}: row {k + 1}: path {shown(rel)} {reason}")
    df["label"] = pd.Series([_int_or_text(v) for v in df["label"]], index=df.index, dtype=object)
    df["bytes"] = pd.to_numeric(df["bytes"], errors="coerce")
    shards, size_of = rawshards.Shards(raw_dir), size_of or _size
    files = [_member(shards, *row) for row in zip(df["path"], df["split"], df["shard"], df["key"])]
    df["file_sha256"] = ["missing" if b is None else manifest.sha256_bytes(b) for b in files]
    sizes = [(None, None) if p in skipped else size_of(b or b"") for p, b in zip(df["path"], files)]
    df["width"] = pd.Series([w for w, _ in sizes], index=df.index, dtype="Int64")
    df["height"] = pd.Series([h for _, h in sizes], index=df.index, dtype="Int64")
    return df


def _size(data: bytes) -> tuple:
    """(width, height) from the image header (no pixel decode); (0, 0) when unreadable."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except Exception:  # unreadable files are decode's to name; here they only fail the size check
        return (0, 0)


def _reader(folder: Path):
    try:
        return ShardReader(folder)
    except (FileNotFoundError, ValueError):
        return None


def skipped_paths(decoded_dir: Path) -> list[str]:
    """The manifest paths decode left out (`skipped.json`); a malformed file is a DataError."""
    path = decoded_dir / SKIPPED
    if not path.exists():
        return []
    try:
        return [str(s["path"]) for s in json.loads(path.read_text(encoding="utf-8"))]
    except (ValueError, TypeError, KeyError) as err:
        raise DataError(f"{path}: not a list of skipped files ({type(err).__name__})") from None


def counts_table(raw: pd.DataFrame, decoded_dir: Path) -> pd.DataFrame:
    skipped = skipped_paths(decoded_dir)
    split_of = dict(zip(raw["path"], raw["split"]))
    rows = []
    for s in SPLITS:
        reader = _reader(decoded_dir / s)
        n_manifest = int((raw["split"] == s).sum())
        n_skipped = sum(split_of.get(p) == s for p in skipped)
        rows.append(
            {
                "split": s,
                "manifest": n_manifest,
                "skipped": n_skipped,
                "expected_decoded": n_manifest - n_skipped,
                "decoded": len(reader) if reader else 0,
            }
        )
    return pd.DataFrame(rows)


def image_table(decoded_dir: Path, elements: int = 1 << 22) -> pd.DataFrame:
    """Per decoded image: split, row, manifest path, C/H/W, dtype, min, max, mean, std.

    Reads batches of about `elements` pixel values (32 MB as float64), whatever the image size.
    """
    parts = []
    for s in SPLITS:
        reader = _reader(decoded_dir / s)
        if reader is None:
            continue
        paths_file = decoded_dir / s / PATHS
        paths = paths_file.read_text().splitlines() if paths_file.exists() else []
        c, h, w = (list(reader.shape[1:]) + [0, 0, 0])[:3]
        batch_size = max(1, elements // max(1, int(np.prod(reader.shape[1:]))))
        for start, batch in zip(range(0, len(reader), batch_size), reader.iter_batches(batch_size)):
            flat = batch.reshape(len(batch), -1).astype(np.float64)
            idx = np.arange(start, start + len(batch))
            parts.append(
                pd.DataFrame(
                    {
                        "split": s,
                        "row": idx,
                        "path": [paths[i] if i < len(paths) else f"{s}#{i}" for i in idx],
                        "channels": c,
                        "height": h,
                        "width": w,
                        "dtype": str(batch.dtype),
                        "min": flat.min(1),
                        "max": flat.max(1),
                        "mean": flat.mean(1),
                        "std": flat.std(1),
                    }
                )
            )
    cols = ["split", "row", "path", "channels", "height", "width", "dtype", "min", "max", "mean", "std"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)


def suites(n_classes: int, resolution: int, channels: int, resize_mode: str = "pad") -> dict[str, list]:
    """The expectations of each table (GX 1.x classes), keyed by table name.

    Source sizes: with resize_mode=pad an image larger than the resolution would be silently
    cropped, so width and height must be <= resolution; with resize it must not be up-sampled by
    more than 2x (min side >= resolution/2)."""
    import great_expectations.expectations as gxe

    if resize_mode == "pad":
        size = [
            gxe.ExpectColumnValuesToBeBetween(column=c, min_value=1, max_value=resolution) for c in ("width", "height")
        ]
    else:
        size = [
            gxe.ExpectColumnValuesToBeBetween(column=c, min_value=max(1, resolution // 2)) for c in ("width", "height")
        ]

    labels = (
        gxe.ExpectColumnValuesToBeInSet(column="label", value_set=list(range(n_classes)))
        if n_classes
        else gxe.ExpectColumnValuesToBeNull(column="label")
    )
    return {
        "manifest": [
            gxe.ExpectTableRowCountToBeBetween(min_value=2),
            *[gxe.ExpectColumnValuesToNotBeNull(column=c) for c in ("path", "split", "sha256", "bytes")],
            gxe.ExpectColumnValuesToBeUnique(column="path"),
            gxe.ExpectColumnValuesToBeUnique(column="sha256"),
            gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS)),
            gxe.ExpectColumnValuesToMatchRegex(column="sha256", regex=r"^[0-9a-f]{64}$"),
            gxe.ExpectColumnPairValuesToBeEqual(column_A="sha256", column_B="file_sha256"),
            gxe.ExpectColumnValuesToBeBetween(column="bytes", min_value=1),
            *size,
            labels,
        ],
        "counts": [
            gxe.ExpectColumnValuesToBeBetween(column="manifest", min_value=1),
            gxe.ExpectColumnValuesToBeBetween(column="decoded", min_value=1),
            gxe.ExpectColumnPairValuesToBeEqual(column_A="decoded", column_B="expected_decoded"),
        ],
        "images": [gxe.ExpectTableRowCountToBeBetween(min_value=1), *pixel_expectations(resolution, channels)],
    }


def pixel_expectations(resolution: int, channels: int, frames: int | None = None) -> list:
    """The layout and pixel statistics of a decoded image's (or clip's, with `frames`) row: the
    configured shape in uint8, and not blank (std 0, or a mean outside [1, 254])."""
    import great_expectations.expectations as gxe

    in_set = gxe.ExpectColumnValuesToBeInSet
    time = [in_set(column="frames", value_set=[frames])] if frames is not None else []
    return [
        in_set(column="channels", value_set=[channels]),
        *time,
        in_set(column="height", value_set=[resolution]),
        in_set(column="width", value_set=[resolution]),
        in_set(column="dtype", value_set=["uint8"]),
        gxe.ExpectColumnValuesToBeBetween(column="min", min_value=0, max_value=255),
        gxe.ExpectColumnValuesToBeBetween(column="max", min_value=0, max_value=255),
        gxe.ExpectColumnValuesToBeBetween(column="std", min_value=0, strict_min=True),
        gxe.ExpectColumnValuesToBeBetween(column="mean", min_value=1, max_value=254),
    ]


# A fixed run identity and no build stamps make result.json and the Data Docs byte-for-byte
# reproducible, so the validate stage has the same DVC hash on every machine.
VOLATILE = re.compile(r"\?d=\d{8}T[\d.]+Z&(amp;)?dataContextId=[0-9a-f-]+")
STAMP, RUN_TIME = re.compile(r"\d{8}T\d{6}\.\d{6}Z"), "20000101T000000.000000Z"  # validation time → the fixed run time
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _stable(text: str) -> str:
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
    """The npm packages of tools/package.json: $UL_NODE_MODULES, else tools/node_modules of this checkout."""
    if os.environ.get("UL_NODE_MODULES"):
        return Path(os.environ["UL_NODE_MODULES"])
    return Path(__file__).resolve().parents[3] / "tools" / "node_modules"


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


INDEX_COLUMN = {"manifest": "path", "counts": "split", "images": "path", "clips": "path"}


def run_suites(
    tables: dict[str, pd.DataFrame],
    expectations: dict[str, list],
    docs_dir: Path,
    sidecar_name: str = "validation" + RUN_SUFFIX,
) -> dict:
    """Run one checkpoint per table in a temporary File context; copy the Data Docs to `docs_dir`,
    byte-stable and with their web assets vendored (see offline_docs)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import ProgressBarsConfig

    run_id = RunIdentifier(run_name="ul-validate", run_time=datetime(2000, 1, 1, tzinfo=UTC))

    results = {}
    with tempfile.TemporaryDirectory(prefix="ul-gx-") as root:
        ctx = gx.get_context(mode="file", project_root_dir=root)
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
        source = ctx.data_sources.add_pandas("data")
        for name, df in tables.items():
            batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all")
            suite = ctx.suites.add(gx.ExpectationSuite(name=name, expectations=expectations[name]))
            vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
            checkpoint = ctx.checkpoints.add(
                gx.Checkpoint(
                    name=name,
                    validation_definitions=[vd],
                    result_format={
                        "result_format": "SUMMARY",
                        "partial_unexpected_count": 20,
                        "unexpected_index_column_names": [INDEX_COLUMN[name]],
                    },
                )
            )
            run = checkpoint.run(batch_parameters={"dataframe": df}, run_id=run_id)
            (results[name],) = run.run_results.values()
        ctx.build_data_docs()
        site = Path(root) / "gx" / "uncommitted" / "data_docs" / "local_site"
        shutil.copytree(site, docs_dir)
    for html in docs_dir.rglob("*.html"):
        html.write_text(_stable(html.read_text(encoding="utf-8")), encoding="utf-8")
    offline_docs(docs_dir, sidecar_name)
    return results


def _plain(value):
    """numpy scalars → Python values, so messages read `0.0`, not `np.float64(0.0)`."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + " ...]"


def _describe(table: str, r) -> str:
    cfg = r.expectation_config
    kwargs = ", ".join(f"{k}={_short(v)}" for k, v in cfg.kwargs.items() if k != "batch_id")
    res, exc = r.result or {}, r.exception_info or {}
    if exc.get("raised_exception"):
        detail = f"raised {exc.get('exception_message')}"
    elif "unexpected_count" in res:
        rows = res.get("partial_unexpected_index_list") or res.get("partial_unexpected_list") or []
        detail = f"{res['unexpected_count']} of {res.get('element_count')} rows fail, e.g. {_plain(rows[:EXAMPLES])}"
    else:
        detail = f"observed {res.get('observed_value')!r}"
    return f"{table}: {cfg.type}({kwargs}): {detail}"


def _record_run_time(sidecar: Path, started: datetime, out_dir: Path, metrics: dict) -> None:
    """The real validation time, which the byte-stable output cannot hold: printed to stderr and
    written to `sidecar` (beside the output folder: not a DVC output, so not hashed)."""
    when = started.isoformat(timespec="seconds")
    sidecar.write_text(
        json.dumps(
            {
                "validated_at": when,
                "success": metrics["success"],
                "failed": metrics["failed"],
                "docs": (out_dir / "docs" / "index.html").as_posix(),
                "note": "The Data Docs and result.json show the fixed run time 2000-01-01T00:00:00Z so that they are "
                "byte-for-byte reproducible (the same DVC hash on every machine); this file keeps the real time "
                "of the last validation here and is not part of the stage's output.",
            },
            indent=1,
        )
        + "\n",
        encoding="utf-8",
    )
    print(
        f"validate: validated at {when} (the Data Docs show the fixed 2000-01-01 run time; real time in {sidecar})",
        file=sys.stderr,
    )


def _tables(
    raw_dir: Path, decoded_dir: Path, resolution: int, channels: int, resize_mode: str, frames: int
) -> tuple[dict[str, pd.DataFrame], dict[str, list]]:
    """The tables and their expectations: images, or with `frames` > 0 video clips."""
    expectations = suites(len(manifest.read_classes(raw_dir)), resolution, channels, resize_mode)
    skipped = set(skipped_paths(decoded_dir))
    if frames <= 0:
        raw = manifest_table(raw_dir, skipped)
        tables = {"manifest": raw, "counts": counts_table(raw, decoded_dir), "images": image_table(decoded_dir)}
        return tables, expectations
    from ul.data import decode_pyav, validate_video

    raw = manifest_table(raw_dir, skipped, decode_pyav.probe)
    tables = {
        "manifest": raw,
        "counts": counts_table(raw, decoded_dir),
        "clips": validate_video.clip_table(decoded_dir),
    }
    expectations.pop("images")
    expectations["clips"] = validate_video.clip_expectations(resolution, channels, frames)
    return tables, expectations


def validate(
    raw_dir: Path,
    decoded_dir: Path,
    out_dir: Path,
    resolution: int,
    channels: int,
    resize_mode: str = "pad",
    frames: int = 0,
) -> dict:
    """Validate fetched + decoded data; write `out_dir/result.json` and `out_dir/docs/`.
    `frames` > 0 (data.frames): the data are video clips of that many frames.

    Returns metrics; raises ValidationError (after writing) naming each failed expectation.
    """
    started = datetime.now(UTC)
    raw_dir, decoded_dir, out_dir = Path(raw_dir), Path(decoded_dir), Path(out_dir)
    sidecar = out_dir.parent / (out_dir.name + RUN_SUFFIX)
    tables, expectations = _tables(raw_dir, decoded_dir, resolution, channels, resize_mode, frames)
    with staged_dir(out_dir) as out:
        results = run_suites(tables, expectations, out / "docs", sidecar.name)
        doc = {
            "success": all(r.success for r in results.values()),
            "suites": {name: r.to_json_dict() for name, r in results.items()},
        }
        (out / "result.json").write_text(_stable(json.dumps(doc, indent=1, default=str)) + "\n", encoding="utf-8")
    failures: list[str] = [_describe(name, r) for name, vr in results.items() for r in vr.results if not r.success]
    metrics = {
        "success": not failures,
        "expectations": sum(len(v) for v in expectations.values()),
        "failed": len(failures),
        **({"clips": len(tables["clips"])} if frames > 0 else {"images": len(tables["images"])}),
        "rows": {name: len(df) for name, df in tables.items()},
    }
    _record_run_time(sidecar, started, out_dir, metrics)
    if failures:
        raise ValidationError(
            f"{len(failures)} expectation(s) failed (details in {Path(out_dir) / 'result.json'}, "
            f"{Path(out_dir) / 'docs' / 'index.html'}):\n  " + "\n  ".join(failures),
            metrics,
        )
    return metrics
