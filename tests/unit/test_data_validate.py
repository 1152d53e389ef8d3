"""validate(): the GX suite passes on good data and fails readably on planted faults; the stage CLIs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC
from pathlib import Path

import numpy as np
import pytest
from datahelpers import class_folder, png, raw_files, rewrite_raw

from ul.data.fetch.sources import fetch
from ul.data.layout import DataError
from ul.data.pixels.images import decode
from ul.data.validate.gate import ValidationError, validate

pytest.importorskip("great_expectations")
ROOT = Path(__file__).resolve().parents[2]


def _pipeline(src: Path, tmp: Path, resolution: int = 32, **decode_opts):
    fetch(f"file://{src}", tmp / "raw")
    decode(tmp / "raw", tmp / "dec", resolution, 1, device="cpu", **decode_opts)
    return tmp / "raw", tmp / "dec"


def test_good_data_passes_and_writes_docs(tmp_path):
    raw, dec = _pipeline(class_folder(tmp_path / "src"), tmp_path)
    m = validate(raw, dec, tmp_path / "val", 32, 1)
    assert m["success"] and m["failed"] == 0 and m["images"] == 24 and m["rows"]["manifest"] == 24
    result = json.loads((tmp_path / "val" / "result.json").read_text())
    assert result["success"] and set(result["suites"]) == {"manifest", "counts", "images"}
    assert (tmp_path / "val" / "docs" / "index.html").exists()
    assert len(list((tmp_path / "val" / "docs" / "validations").rglob("*.html"))) == 3


def test_docs_are_offline_byte_stable_and_the_real_time_is_kept_beside_them(tmp_path):
    """Two runs in different folders give the same bytes (docs and result.json: the stage's DVC hash);
    no page loads anything from the network (the CDN assets are vendored from tools/node_modules);
    the real run time is printed and written beside the output folder, not in it."""
    from datetime import datetime

    from datahelpers import tree_hashes

    from ul.data.validate.docs import REMOTE

    raw, dec = _pipeline(class_folder(tmp_path / "src"), tmp_path)
    before = datetime.now(UTC).replace(microsecond=0)
    validate(raw, dec, tmp_path / "a" / "validation", 32, 1)
    validate(raw, dec, tmp_path / "b" / "validation", 32, 1)
    a, b = tree_hashes(tmp_path / "a" / "validation"), tree_hashes(tmp_path / "b" / "validation")
    assert a == b and "result.json" in a
    assert {
        "docs/static/vendor/jquery/dist/jquery.min.js",
        "docs/static/vendor/bootstrap/dist/css/bootstrap.min.css",
        "docs/static/vendor/@fortawesome/fontawesome-free/webfonts/fa-solid-900.woff2",
    } <= set(a)
    pages = sorted((tmp_path / "a" / "validation" / "docs").rglob("*.html"))
    assert len(pages) == 7
    for page in pages:
        text = page.read_text()
        assert REMOTE.findall(text) == [] and "integrity=" not in text, page
        assert "cdn." not in text and "unpkg.com" not in text and "cdnjs" not in text, page
        assert "About the run time 2000-01-01 00:00 UTC:</strong> it is a fixed stand-in" in text, page
        for ref in re.findall(r'(?:src|href)="([^":#]+)"', text):  # every local link resolves ...
            if not ref.endswith("favicon.ico"):  # ... but GX's own favicon link, one level short on validation pages
                assert (page.parent / ref).resolve().exists(), (page, ref)

    sidecar = json.loads((tmp_path / "b" / "validation.run.json").read_text())
    when = datetime.fromisoformat(sidecar["validated_at"])
    assert before <= when <= datetime.now(UTC) and sidecar["success"] is True
    assert "2000-01-01" in sidecar["note"] and not any("run.json" in f for f in a)


def test_missing_web_assets_fail_with_the_fix(tmp_path, monkeypatch):
    raw, dec = _pipeline(class_folder(tmp_path / "src"), tmp_path)
    monkeypatch.setenv("UL_NODE_MODULES", str(tmp_path / "absent"))
    with pytest.raises(DataError, match=r"absent/[\w@/.-]+\.(css|js): missing; .*npm ci --prefix tools"):
        validate(raw, dec, tmp_path / "val", 32, 1)
    assert not (tmp_path / "val").exists()  # nothing half-written


def test_duplicate_and_blank_images_fail_by_name(tmp_path):
    src = class_folder(tmp_path / "src")
    (src / "dog" / "copy.png").write_bytes((src / "cat" / "001.png").read_bytes())  # same bytes twice
    (src / "dog" / "blank.png").write_bytes(png(np.zeros((20, 24), np.uint8)))
    raw, dec = _pipeline(src, tmp_path)
    with pytest.raises(ValidationError) as err:
        validate(raw, dec, tmp_path / "val", 32, 1)
    msg = str(err.value)
    assert "3 expectation(s) failed" in msg
    assert "expect_column_values_to_be_unique(column='sha256'): 2 of 26 rows fail" in msg
    assert "cat/001.png" in msg and "dog/copy.png" in msg
    assert (
        "expect_column_values_to_be_between(column='std'" in msg and "'std': 0.0, 'path': 'train/dog/blank.png'" in msg
    )
    assert "expect_column_values_to_be_between(column='mean', min_value=1.0, max_value=254.0): 1 of 26" in msg
    result = json.loads((tmp_path / "val" / "result.json").read_text())  # written before the raise
    assert result["success"] is False and not result["suites"]["manifest"]["success"]
    assert (tmp_path / "val" / "docs" / "index.html").exists() and err.value.metrics["failed"] == 3
    assert "fix: exact duplicate files: set pixels.drop=[duplicates]" in msg  # the way on, named
    assert "fix: blank or saturated images: set pixels.drop=[blank]" in msg


def test_decode_drop_leaves_out_duplicates_and_blanks_says_which_and_validate_passes(tmp_path):
    src = class_folder(tmp_path / "src")
    (src / "dog" / "copy.png").write_bytes((src / "cat" / "001.png").read_bytes())
    (src / "dog" / "blank.png").write_bytes(png(np.zeros((20, 24), np.uint8)))
    raw, dec = _pipeline(src, tmp_path, drop=("duplicates", "blank"))
    listed = {e["path"]: e for e in json.loads((dec / "skipped.json").read_text())}
    dup = next(p for p in listed if p.endswith(("cat/001.png", "dog/copy.png")))  # the later one in manifest order
    assert listed[dup]["drop"] == "duplicates" and "an exact duplicate of" in listed[dup]["reason"]
    blanks = {p for p, e in listed.items() if e.get("drop") == "blank"}
    assert {p.rsplit("/", 1)[-1] for p in blanks} == {"blank.png"} and len(listed) == 2
    metrics = validate(raw, dec, tmp_path / "val", 32, 1)
    assert metrics["success"] and metrics["images"] == 24  # 24 + the copy + the blank one, less two
    again = _pipeline(src, tmp_path / "again", drop=("duplicates", "blank"))[1]
    assert (again / "skipped.json").read_bytes() == (dec / "skipped.json").read_bytes()  # deterministic
    with pytest.raises(DataError, match=r"pixels.drop=\['dups'\]: unknown"):
        _pipeline(src, tmp_path / "bad", drop=("dups",))


def test_wrong_size_and_missing_rows_fail(tmp_path):
    raw, dec = _pipeline(class_folder(tmp_path / "src"), tmp_path)
    with pytest.raises(
        ValidationError,
        match=r"expect_column_values_to_be_in_set\(column='height', "
        r"value_set=\[28\]\): 24 of 24 rows fail",
    ) as err:
        validate(raw, dec, tmp_path / "val", 28, 1)
    assert "column='width'" in str(err.value) and "column='channels'" not in str(err.value)
    with (raw / "manifest.csv").open("a") as f:  # a row the decoder never saw, with a bad label
        f.write(f"train/cat/999.png,train,cat,{'a' * 64},10,train-000000.tar,99999999\n")
    with pytest.raises(
        ValidationError,
        match=r"expect_column_pair_values_to_be_equal\(column_A='decoded', "
        r"column_B='expected_decoded'\).*'split': 'train'",
    ) as err:
        validate(raw, dec, tmp_path / "val", 32, 1)
    assert (
        "column='label', value_set=[0, 1]): 1 of 25 rows fail, e.g. [{'label': 'cat', 'path': 'train/cat/999.png'}]"
        in str(err.value)
    )
    assert "column_B='file_sha256'" in str(err.value)  # the file is missing on disk


def _stage(name: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), GX_ANALYTICS_ENABLED="false")
    return subprocess.run(
        [sys.executable, "-m", f"ul.stages.{name}", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_stages_run_in_order_and_fail_cleanly(tmp_path):
    (tmp_path / "params.yaml").write_text(
        "data:\n  source: builtin:fashion-mnist\n  max_train: 30\n  max_test: 10\n"
        "pixels:\n  device: cpu\n  batch_size: 16\n"
    )
    for name in ("fetch", "pixels", "validate"):
        proc = _stage(name, tmp_path)
        assert proc.returncode == 0, proc.stderr
    metrics = {n: json.loads((tmp_path / "metrics" / f"{n}.json").read_text()) for n in ("fetch", "pixels", "validate")}
    assert metrics["fetch"]["images"] == {"train": 30, "test": 10}
    assert metrics["pixels"]["images"] == {"train": 30, "test": 10} and metrics["pixels"]["backend"] == "dali"
    assert metrics["validate"]["success"] is True
    assert (tmp_path / "data" / "validation" / "docs" / "index.html").exists()

    first, data = next(iter(raw_files(tmp_path / "data" / "raw").items()))
    rewrite_raw(tmp_path / "data" / "raw", {first: data[:40]})
    proc = _stage("pixels", tmp_path)
    assert proc.returncode == 1 and "error: 1 unreadable image(s)" in proc.stderr
    assert first in proc.stderr and "Traceback" not in proc.stderr
    proc = _stage("validate", tmp_path, "--decoded", "data/absent", "--metrics", "metrics/bad.json")
    assert proc.returncode == 1 and "error: " in proc.stderr and "column_A='decoded'" in proc.stderr
    assert json.loads((tmp_path / "metrics" / "bad.json").read_text())["success"] is False
    proc = _stage("fetch", tmp_path, "--params", "absent.yaml")
    assert proc.returncode == 1 and "parameter file not found" in proc.stderr and "Traceback" not in proc.stderr
    assert "python -m ul.stages.validate" in _stage("validate", tmp_path, "--help").stdout


def test_images_larger_than_the_resolution_in_pad_mode_name_the_resize_override(tmp_path):
    raw, dec = _pipeline(class_folder(tmp_path / "src"), tmp_path, 16)  # 20×24 images; pad mode crops them
    with pytest.raises(ValidationError) as err:
        validate(raw, dec, tmp_path / "val", 16, 1)
    assert "fix: images larger than data.resolution: set data.resize_mode=resize" in str(err.value)
