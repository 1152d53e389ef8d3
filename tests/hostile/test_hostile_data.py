"""Hostile data after fetch (issue 9, classes 6, 7, 9): forged manifests, names that would shift
rows or forge log lines, and `decode.on_error=skip` through validate."""

from __future__ import annotations

import csv
import json

import pytest
from datahelpers import class_folder

from ul.data import DataError, manifest
from ul.data.decode import decode
from ul.data.sources import fetch


@pytest.fixture
def raw(tmp_path):
    out = tmp_path / "raw"
    fetch(f"file://{class_folder(tmp_path / 'src', per_class=4)}", out)
    return out


def _rewrite_first_path(raw, new_path):
    rows = list(csv.reader(open(raw / manifest.MANIFEST, newline="", encoding="utf-8")))
    rows[1][0] = new_path
    with open(raw / manifest.MANIFEST, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    return rows[1][1]  # its split


@pytest.mark.parametrize(
    "path, reason",
    [
        ("/etc/passwd", "is not a relative POSIX path"),
        ("{split}/../../outside.png", "escapes the raw folder"),
        ("{split}/./a.png", "escapes the raw folder or is not normalised"),
        ("{split}\\..\\..\\x.png", "is not a relative POSIX path"),
        ("other/a.png", "is not inside"),
        ("{split}/a\nerror: forged.png", "control characters"),
    ],
)
def test_a_forged_manifest_path_is_refused_by_decode_and_validate(tmp_path, raw, path, reason):
    from ul.data.validate import manifest_table

    split = manifest.read(raw)[0].split
    _rewrite_first_path(raw, path.format(split=split))
    with pytest.raises(DataError, match=rf"line \d: path .* {reason}") as err:
        decode(raw, tmp_path / "dec", 32, 1, backend="pillow")
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match=f"row 1: path .* {reason}"):
        manifest_table(raw)
    assert not (tmp_path / "dec").exists()


def test_a_path_listed_twice_is_refused(tmp_path, raw):
    rows = (raw / manifest.MANIFEST).read_text().splitlines()
    (raw / manifest.MANIFEST).write_text("\n".join(rows + rows[1:2]) + "\n")
    with pytest.raises(DataError, match="is listed twice"):
        manifest.read(raw)


def test_a_mangled_manifest_is_one_error(tmp_path, raw):
    (raw / manifest.MANIFEST).write_bytes(b"path,split,label,sha256,bytes\n\xff\xfe,train\n")
    with pytest.raises(DataError, match="manifest"):
        manifest.read(raw)


def test_skip_then_validate_passes_and_counts_the_skipped_file(tmp_path):
    """Class 9: a file decode skips is counted by validate, not failed on (its size is unreadable)."""
    from ul.data.validate import counts_table, manifest_table, validate

    src = class_folder(tmp_path / "src", per_class=4)
    (src / "cat" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    fetch(f"file://{src}", tmp_path / "raw")
    m = decode(tmp_path / "raw", tmp_path / "dec", 32, 1, on_error="skip")
    assert m["skipped"] == 1 and sum(m["images"].values()) == 8
    assert [s["path"] for s in json.loads((tmp_path / "dec" / "skipped.json").read_text())] == [
        e.path for e in manifest.read(tmp_path / "raw") if e.path.endswith("bad.png")
    ]
    v = validate(tmp_path / "raw", tmp_path / "dec", tmp_path / "val", 32, 1, "pad")
    assert v["success"] and v["images"] == 8
    counts = counts_table(manifest_table(tmp_path / "raw"), tmp_path / "dec").set_index("split")
    assert counts["skipped"].sum() == 1 and (counts["expected_decoded"] == counts["decoded"]).all()
