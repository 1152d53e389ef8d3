"""Hostile data sources (issue 9, classes 1-3, 6-7): folders with links, pipes and odd names,
archive bombs, credentials in URLs, forged manifests. Each case is small and runs in-process."""

from __future__ import annotations

import hashlib
import json
import os
import threading

import pytest
from datahelpers import class_folder, noise, png, tree_hashes, write_folder

from ul.data import DataError, folder, manifest
from ul.data.sources import fetch


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _no_leftovers(parent):
    return [p.name for p in parent.iterdir() if p.name.startswith(".")] == []


# ---- class 1: folder sources read only regular files inside the folder ---------------------------


def test_links_out_of_the_folder_are_skipped_and_listed(tmp_path):
    src = class_folder(tmp_path / "src", per_class=4)
    outside = write_folder(tmp_path / "outside", {"secret.png": png(noise(77)), "x/y.png": png(noise(78))})
    os.symlink("/etc/passwd", src / "cat" / "passwd.png")
    os.symlink(outside / "secret.png", src / "dog" / "secret.png")
    os.symlink(outside / "x", src / "dog" / "linked_dir")
    os.symlink(outside, src / "bird")  # a link as a class folder
    m = fetch(f"file://{src}", tmp_path / "raw")
    assert sum(m["images"].values()) == 8 and m["classes"] == 2
    assert set(m["skipped"]) == {"cat/passwd.png", "dog/secret.png", "dog/linked_dir", "bird"}
    assert all("symbolic link" in r for r in m["skipped"].values())
    copied = {h for h in tree_hashes(tmp_path / "raw").values()}
    assert _sha(png(noise(77))) not in copied and _sha(png(noise(78))) not in copied
    assert b"root:" not in b"".join(p.read_bytes() for p in (tmp_path / "raw").rglob("*.png"))


def test_a_split_folder_that_is_a_link_is_refused(tmp_path):
    src = write_folder(tmp_path / "src", {"train/a.png": png(noise(1)), "train/b.png": png(noise(2))})
    outside = write_folder(tmp_path / "elsewhere", {"c.png": png(noise(3))})
    os.symlink(outside, src / "test")
    with pytest.raises(DataError, match=r"test/ is a symbolic link"):
        fetch(f"file://{src}", tmp_path / "raw")
    assert not (tmp_path / "raw").exists() and _no_leftovers(tmp_path)


def test_a_single_wrapping_link_is_not_unwrapped(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    os.symlink(class_folder(tmp_path / "outside", per_class=3), src / "dataset")
    with pytest.raises(DataError, match="found 0 JPEG/PNG"):
        fetch(f"file://{src}", tmp_path / "raw")


def test_a_named_pipe_does_not_hang_fetch(tmp_path):
    src = class_folder(tmp_path / "src", per_class=3)
    os.mkfifo(src / "cat" / "pipe.png")
    result = {}
    t = threading.Thread(target=lambda: result.update(fetch(f"file://{src}", tmp_path / "raw")), daemon=True)
    t.start()
    t.join(30)
    assert not t.is_alive(), "fetch blocked on a named pipe"
    assert result["skipped"] == {"cat/pipe.png": "not a regular file (a pipe, device or socket)"}
    assert sum(result["images"].values()) == 6


def test_a_file_swapped_for_a_pipe_after_the_walk_is_refused(tmp_path, monkeypatch):
    src = class_folder(tmp_path / "src", per_class=3)
    real = folder.Walk.files

    def swap(self, top):
        found = real(self, top)
        victim = src / "cat" / "001.png"
        if victim.exists():
            victim.unlink()
            os.mkfifo(victim)
        return found

    monkeypatch.setattr(folder.Walk, "files", swap)
    with pytest.raises(DataError, match="001.png: not a regular file"):
        fetch(f"file://{src}", tmp_path / "raw")


@pytest.mark.parametrize("root", ["/", "/etc", "/proc", "/usr", "~"])
def test_system_roots_are_refused(tmp_path, root):
    path = os.path.expanduser(root)
    with pytest.raises(DataError, match="system folder"):
        fetch(f"file://{path}", tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_the_walk_is_bounded_before_hashing(tmp_path, monkeypatch):
    src = class_folder(tmp_path / "src", per_class=6)
    hashed = []
    monkeypatch.setattr(folder, "_hash", lambda p: hashed.append(p) or "0" * 64)
    monkeypatch.setattr(folder, "MAX_ENTRIES", 5)
    with pytest.raises(DataError, match="more than 5 files and folders"):
        fetch(f"file://{src}", tmp_path / "raw")
    monkeypatch.setattr(folder, "MAX_ENTRIES", 1000)
    monkeypatch.setattr(folder, "MAX_TOTAL_BYTES", 2000)
    with pytest.raises(DataError, match="more than 2,000 bytes of images"):
        fetch(f"file://{src}", tmp_path / "raw")
    assert hashed == [] and not (tmp_path / "raw").exists()


def test_an_oversized_file_is_skipped(tmp_path, monkeypatch):
    src = class_folder(tmp_path / "src", per_class=3)
    (src / "cat" / "huge.png").write_bytes(png(noise(5, 200, 200)))
    monkeypatch.setattr(folder, "MAX_FILE_BYTES", 10_000)
    m = fetch(f"file://{src}", tmp_path / "raw")
    assert list(m["skipped"]) == ["cat/huge.png"] and "over the 10,000-byte limit" in m["skipped"]["cat/huge.png"]


# ---- class 7: file names are data ---------------------------------------------------------------


def test_names_with_newlines_control_characters_or_bad_bytes_are_skipped(tmp_path, capsys):
    src = class_folder(tmp_path / "src", per_class=3)
    forged = "x.png\nerror: stage evaluate failed.png"
    (src / "cat" / forged).write_bytes(png(noise(40)))
    (src / "cat" / "bell\x07.png").write_bytes(png(noise(41)))
    os.makedirs(os.fsencode(src / "dog") + b"/\xff\xfe", exist_ok=True)
    with open(os.fsencode(src / "dog") + b"/\xff\xfe/z.png", "wb") as f:
        f.write(png(noise(42)))
    with open(os.fsencode(src / "dog") + b"/caf\xe9.png", "wb") as f:  # Latin-1, not UTF-8
        f.write(png(noise(43)))
    m = fetch(f"file://{src}", tmp_path / "raw")
    assert sum(m["images"].values()) == 6
    assert len(m["skipped"]) == 4 and all("\n" not in k and k.isprintable() for k in m["skipped"])
    err = capsys.readouterr().err
    assert not any(line.startswith("error:") for line in err.splitlines()), err
    rows = manifest.read(tmp_path / "raw")
    assert all(e.path.isprintable() for e in rows) and len(rows) == 6
    json.dumps(m, ensure_ascii=False).encode("utf-8")  # the metrics file can be written
