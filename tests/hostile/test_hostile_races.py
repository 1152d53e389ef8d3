"""Races on the file system and very deep trees (third hostile round, class 2): a folder source's
sub-folder swapped for a link between the walk and the read, at any depth of the path; trees deeper
than the recursion limit; a second writer filling a `ul` command's output folder while it runs."""

from __future__ import annotations

import os
import shutil

import pytest
from datahelpers import class_folder, noise, png, raw_files, write_folder

from ul import cli, commands
from ul.data import rawshards
from ul.data.fetch import fingerprint, folder
from ul.data.fetch.sources import fetch
from ul.data.layout import DataError

SECRET = png(noise(99))


def _swap_after_walk(monkeypatch, swap):
    """Run `swap()` right after the folder's walk, before any file is read (the race's window)."""
    scan = folder._scan

    def scan_then_swap(root, walk):
        items = scan(root, walk)
        swap()
        return items

    monkeypatch.setattr(folder, "_scan", scan_then_swap)


@pytest.mark.parametrize("depth", [1, 3])
def test_a_folder_swapped_for_a_link_after_the_walk_lets_no_outside_bytes_in(tmp_path, monkeypatch, depth):
    sub = "/".join(["deep"] * (depth - 1))
    files = {f"cat/{sub}/{i}.png".replace("//", "/"): png(noise(i)) for i in range(4)}
    files |= {f"dog/{i}.png": png(noise(10 + i)) for i in range(4)}
    src = write_folder(tmp_path / "src", files)
    swapped = src / "cat" / sub if sub else src / "cat"
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in os.listdir(swapped):  # the same names, other bytes
        if name.endswith(".png"):
            (outside / name).write_bytes(SECRET)

    def swap():
        shutil.rmtree(swapped)
        os.symlink(outside, swapped)

    _swap_after_walk(monkeypatch, swap)
    with pytest.raises(DataError, match="cannot open .*a link on the path is not followed"):
        fetch(f"file://{src}", tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_the_source_fingerprint_does_not_follow_a_swapped_folder(tmp_path, monkeypatch):
    src = class_folder(tmp_path / "src", per_class=3)
    outside = write_folder(tmp_path / "outside", {n: SECRET for n in os.listdir(src / "dog")})
    walk_files = folder.Walk.files

    def files_then_swap(self, top=""):
        found = walk_files(self, top)
        shutil.rmtree(src / "dog")
        os.symlink(outside, src / "dog")
        return found

    monkeypatch.setattr(folder.Walk, "files", files_then_swap)
    with pytest.raises(DataError, match="dog/.*cannot open"):
        fingerprint._folder_rows(src, folder.IMAGES, None)


@pytest.mark.parametrize("change", [b"", b"more"], ids=["rewritten", "grown"])
def test_a_file_that_changes_between_its_hash_and_its_packing_is_refused(tmp_path, monkeypatch, change):
    """A class folder is split by content hash, so each file is read twice: the packer checks the
    second read against the first."""
    src = class_folder(tmp_path / "src", per_class=3)
    victim = src / "cat" / "001.png"
    pack = rawshards.pack

    def change_then_pack(out, files, shard_bytes):
        victim.write_bytes(png(noise(77)) + change)
        return pack(out, files, shard_bytes)

    monkeypatch.setattr(rawshards, "pack", change_then_pack)
    with pytest.raises(DataError, match="cat/001.png: changed while it was being read; fetch again"):
        fetch(f"file://{src}", tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


@pytest.mark.parametrize("levels", [100, 1200])  # the second is past Python's recursion limit
def test_a_very_deep_tree_is_walked_and_fetched_without_recursion(tmp_path, levels):
    src = class_folder(tmp_path / "src", per_class=3)
    chain = src / "cat"
    try:
        _mkdirs(chain, levels)
        (chain.joinpath(*["d"] * levels) / "bottom.png").write_bytes(png(noise(50)))
        m = fetch(f"file://{src}", tmp_path / "raw")
    finally:
        _rmdirs(chain, levels)  # pytest's own clean-up (shutil.rmtree) recurses: leave no deep tree
    assert sum(m["images"].values()) == 6
    (where,) = [k for k in m["skipped"] if k.startswith("cat/d/")]
    assert where.count("/") + 1 == folder.MAX_DEPTH and "levels deep" in m["skipped"][where]
    assert len(raw_files(tmp_path / "raw")) == 6


def _mkdirs(top, levels):
    """`levels` nested folders `d` under `top`, made one at a time (Path.mkdir(parents=True) recurses)."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(levels):
        os.mkdir("d", dir_fd=fd)
        sub = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = sub
    os.close(fd)


def _rmdirs(top, levels):
    for k in range(levels, 0, -1):
        folder_ = top.joinpath(*["d"] * k)
        if folder_.is_dir():
            for name in os.listdir(folder_):
                if not (folder_ / name).is_dir():
                    os.unlink(folder_ / name)
            os.rmdir(folder_)


@pytest.mark.parametrize("command", ["decode", "reconstruct"])
def test_a_second_writer_in_the_output_folder_loses_nothing_and_the_command_fails(
    tiny_export, tmp_path, monkeypatch, capsys, command
):
    images = write_folder(tmp_path / "in", {f"{i}.png": png(noise(i, 32, 32)) for i in range(3)})
    model = tiny_export / "stage1"
    if command == "decode":
        assert cli.main(["encode", str(images), "-o", str(tmp_path / "z.npz"), "--model", str(model)]) == 0
        args = ["decode", str(tmp_path / "z.npz")]
    else:
        args = ["reconstruct", str(images)]
    out = tmp_path / "out"
    out.mkdir()  # new or empty: allowed
    write_pngs = commands._write_pngs

    def write_and_race(folder_, names, x):
        write_pngs(folder_, names, x)
        (out / "theirs.txt").write_text("another process's work")

    monkeypatch.setattr(commands, "_write_pngs", write_and_race)
    capsys.readouterr()
    rc = cli.main([*args, "-o", str(out), "--model", str(model), "--steps", "2"])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith(f"error: {out}: another writer put files there") and err.count("\n") == 1
    assert os.listdir(out) == ["theirs.txt"] and (out / "theirs.txt").read_text() == "another process's work"
    (kept,) = [p for p in tmp_path.iterdir() if p.name.startswith("out.ul-")]
    assert str(kept) in err and {"0.png", "1.png", "2.png"} <= set(os.listdir(kept))
