"""Hostile data after fetch (issue 9, classes 6, 7, 9): forged manifests, names that would shift
rows or forge log lines, and `pixels.on_error=skip` through validate."""

from __future__ import annotations

import csv
import json
import os
import re

import pytest
from datahelpers import class_folder

from ul.data import manifest
from ul.data.fetch.sources import fetch
from ul.data.layout import DataError
from ul.data.pixels.images import decode


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
    from ul.data.validate.tables import manifest_table

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
    from ul.data.validate.gate import validate
    from ul.data.validate.tables import counts_table, manifest_table

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


def _rewrite_first_location(raw, shard=None, key=None):
    rows = list(csv.reader(open(raw / manifest.MANIFEST, newline="", encoding="utf-8")))
    rows[1][5], rows[1][6] = shard or rows[1][5], key or rows[1][6]
    with open(raw / manifest.MANIFEST, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    return rows[1][1]


@pytest.mark.parametrize(
    "shard, key, reason",
    [
        ("../../../etc/passwd", None, "has shard"),
        ("{split}-000000.tar/../../x.tar", None, "has shard"),
        ("{other}-000000.tar", None, "has shard"),  # a shard of the other split
        (None, "../00001", "has key"),
        (None, "1e5", "has key"),
    ],
)
def test_a_forged_shard_or_key_is_refused_before_any_file_is_opened(tmp_path, raw, shard, key, reason):
    from ul.data.validate.tables import manifest_table

    split = manifest.read(raw)[0].split
    other = "train" if split == "test" else "test"
    _rewrite_first_location(raw, shard and shard.format(split=split, other=other), key)
    with pytest.raises(DataError, match=rf"line 2: path .* {reason}"):
        decode(raw, tmp_path / "dec", 32, 1, backend="pillow")
    assert not (tmp_path / "dec").exists()
    files = manifest_table(raw)["file_sha256"]  # validate: the row's file is missing, so its hash check fails
    assert files[0] == "missing" and (files[1:] != "missing").all()


@pytest.mark.parametrize("damage", ["fifo", "truncated", "index", "absent"])
def test_a_damaged_shard_is_one_error_naming_it(tmp_path, raw, damage):
    """A shard replaced by a pipe (which would block a reader), cut short, with a garbled index or
    gone: decode stops with one error naming the shard, and never hangs."""
    tar = raw / "shards" / manifest.read(raw)[0].shard
    if damage == "fifo":
        tar.unlink()
        os.mkfifo(tar)
    elif damage == "truncated":
        tar.write_bytes(tar.read_bytes()[:1000])
    elif damage == "index":
        tar.with_suffix(".idx").write_text("v1.2 3\npng 512 x\n")
    else:
        tar.unlink()
    with pytest.raises(DataError, match=re.escape(str(tar.with_suffix(".idx") if damage == "index" else tar))) as err:
        decode(raw, tmp_path / "dec", 32, 1, backend="pillow")
    assert "\n" not in str(err.value) and "fetch" in str(err.value)
    assert not (tmp_path / "dec").exists()
