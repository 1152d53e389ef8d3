"""Video data (data.frames > 0): builtin:moving-mnist, real videos through fetch → pixels (PyAV),
bad videos named by path, and the validate stage's video suite.

Real clips: `traffic_sequence.mp4` (PyPI `mvtb-data`, H.264 in MP4, installed by the lock) and
`tree.avi` (Debian `opencv-doc`, Cinepak in AVI; `make setup` installs it when run as root).
Everything is kept tiny (a few clips of a few frames at 16-32 pixels) so each test takes seconds.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from datahelpers import TRAFFIC, raw_files, tree_hashes, write_folder
from PIL import Image

from ul.common.config import MovingMNISTConfig
from ul.common.shards import ShardReader
from ul.data.fetch import builtin, moving_mnist
from ul.data.fetch.idx import read_idx
from ul.data.fetch.sources import fetch
from ul.data.layout import DataError
from ul.data.pixels.images import decode

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
TREE = OPENCV_DATA / "tree.avi"
MM = MovingMNISTConfig(train_clips=4, test_clips=2, size=48, digits=2, seed=0)


def _tree() -> Path:
    if not TREE.exists():
        pytest.skip(f"{TREE} missing: install Debian opencv-doc (`make setup` as root, or apt-get install opencv-doc)")
    return TREE


def _frames_of(raw: Path, rel: str) -> np.ndarray:
    """The frames of a fetched APNG, read with Pillow (an independent reader): T×H×W uint8."""
    with Image.open(io.BytesIO(raw_files(raw)[rel])) as im:
        out = []
        for k in range(im.n_frames):
            im.seek(k)
            out.append(np.asarray(im.convert("L")))
    return np.stack(out)


def _apng(frames: np.ndarray, compress_level: int = 6) -> bytes:
    images = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="PNG", save_all=True, append_images=images[1:], compress_level=compress_level)
    return buf.getvalue()


def _moving(seed: int, t: int = 6, size: int = 24) -> np.ndarray:
    """A T×size×size clip of a textured square moving one pixel per frame (passes validation)."""
    rng = np.random.default_rng(seed)
    out = np.full((t, size, size), 40, np.uint8)
    patch = rng.integers(100, 250, (8, 8), dtype=np.uint8)
    for k in range(t):
        out[k, 4 + k : 12 + k, 3 + k : 11 + k] = patch
    return out


# ---- builtin:moving-mnist ------------------------------------------------------------------------


def test_moving_mnist_is_byte_reproducible_and_follows_the_seed(tmp_path):
    a = fetch("builtin:moving-mnist", tmp_path / "a", frames=6, moving_mnist=MM)
    b = fetch("builtin:moving-mnist", tmp_path / "b", frames=6, moving_mnist=MM)
    assert a["manifest_sha256"] == b["manifest_sha256"] and tree_hashes(tmp_path / "a") == tree_hashes(tmp_path / "b")
    assert a["clips"] == {"train": 4, "test": 2} and a["classes"] == 0
    other = MovingMNISTConfig(**{**MM.__dict__, "seed": 1})
    c = fetch("builtin:moving-mnist", tmp_path / "c", frames=6, moving_mnist=other)
    assert c["manifest_sha256"] != a["manifest_sha256"]
    rows = (tmp_path / "a" / "manifest.csv").read_text().splitlines()
    assert rows[1].startswith("test/00000.png,test,,") and rows[-1].startswith("train/00003.png,train,,")


def test_moving_mnist_clips_are_real_digits_of_their_split_bouncing(tmp_path):
    """One digit per clip: every frame is exactly that MNIST image of the clip's own split, placed on
    a black canvas at the generator's trajectory; it moves, and stays inside the frame."""
    cfg = MovingMNISTConfig(train_clips=3, test_clips=3, size=40, digits=1, seed=5)
    fetch("builtin:moving-mnist", tmp_path / "raw", frames=12, moving_mnist=cfg)
    folder = builtin._mnist_dir()
    for split, (img_file, _) in builtin.FILES.items():
        digits = read_idx(folder / img_file)
        rng = np.random.default_rng([cfg.seed, moving_mnist.SPLIT_IDS[split]])
        for i in range(3):
            k = int(rng.integers(0, len(digits), 1)[0])
            path = moving_mnist.trajectory(rng, 12, cfg.size - 28)
            frames = _frames_of(tmp_path / "raw", f"{split}/{i:05d}.png")
            assert frames.shape == (12, 40, 40)
            for t, (y, x) in enumerate(path):
                expected = np.zeros((40, 40), np.uint8)
                expected[y : y + 28, x : x + 28] = digits[k]
                assert np.array_equal(frames[t], expected), (split, i, t)
            assert len(set(path)) > 1  # it moves


def test_moving_mnist_two_digits_differ_between_frames(tmp_path):
    fetch("builtin:moving-mnist", tmp_path / "raw", frames=8, moving_mnist=MM)
    frames = _frames_of(tmp_path / "raw", "train/00000.png")
    assert frames.shape == (8, 48, 48) and frames.max() > 200
    assert all(not np.array_equal(frames[t], frames[t + 1]) for t in range(7))
    assert all(200 < (f > 0).sum() < 2 * 28 * 28 for f in frames)  # two digits' strokes, no more


def test_moving_mnist_needs_frames_and_image_datasets_refuse_them(tmp_path):
    with pytest.raises(DataError, match="set data.frames"):
        fetch("builtin:moving-mnist", tmp_path / "a", moving_mnist=MM)
    with pytest.raises(DataError, match="still images but data.frames=4"):
        fetch("builtin:mnist", tmp_path / "b", frames=4)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_moving_mnist_decodes_and_validates(tmp_path):
    pytest.importorskip("great_expectations")
    from ul.data.validate.gate import validate

    fetch("builtin:moving-mnist", tmp_path / "raw", frames=6, moving_mnist=MM)
    m = decode(tmp_path / "raw", tmp_path / "dec", 32, 1, "resize", device="cpu", frames=6)
    assert m["clips"] == {"train": 4, "test": 2} and m["backend"] == "pyav" and m["device"] == "cpu"
    r = ShardReader(tmp_path / "dec" / "train")
    assert r.shape == (4, 1, 6, 32, 32) and r[[0]].dtype == np.uint8 and r.stats["frames"] == 6
    v = validate(tmp_path / "raw", tmp_path / "dec", tmp_path / "val", 32, 1, "resize", frames=6)
    assert v["success"] and v["clips"] == 6 and set(v["rows"]) == {"manifest", "counts", "clips"}


# ---- real videos from a folder -------------------------------------------------------------------


def test_real_videos_fetch_and_decode_with_pyav(tmp_path):
    src = tmp_path / "src"
    (src / "train").mkdir(parents=True)
    (src / "test").mkdir()
    shutil.copyfile(TRAFFIC, src / "train" / "traffic.mp4")
    shutil.copyfile(_tree(), src / "test" / "tree.avi")
    Image.fromarray(_moving(1)[0]).save(src / "train" / "still.jpg")  # not a video: not fetched
    gif = [Image.fromarray(f) for f in _moving(2)]
    gif[0].save(src / "train" / "square.gif", save_all=True, append_images=gif[1:])
    m = fetch(f"file://{src}", tmp_path / "raw", frames=6)
    assert m["clips"] == {"train": 2, "test": 1}
    d = decode(tmp_path / "raw", tmp_path / "dec", 32, 3, "resize", device="cpu", frames=6)
    assert d["clips"] == {"train": 2, "test": 1} and d["skipped"] == 0 and d["backend"] == "pyav"
    train, test = ShardReader(tmp_path / "dec" / "train"), ShardReader(tmp_path / "dec" / "test")
    assert train.shape == (2, 3, 6, 32, 32) and test.shape == (1, 3, 6, 32, 32)
    assert (tmp_path / "dec" / "train" / "paths.txt").read_text() == "train/square.gif\ntrain/traffic.mp4\n"
    for clip in (*train[[0, 1]], test[[0]][0]):
        assert clip.dtype == np.uint8 and 10 < clip.mean() < 245
        assert any(not np.array_equal(clip[:, t], clip[:, t + 1]) for t in range(5))  # real motion


def test_fps_picks_frames_by_timestamp(tmp_path):
    """traffic_sequence.mp4 is 30 fps: at 15 fps the clip is every other native frame; grey is BT.601."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a", "b"):
        shutil.copyfile(TRAFFIC, src / f"{name}.mp4")
    (src / "b.mp4").write_bytes((src / "b.mp4").read_bytes() + b"\0")  # another hash, same frames
    fetch(f"file://{src}", tmp_path / "raw", frames=8)
    decode(tmp_path / "raw", tmp_path / "native", 16, 3, "resize", device="cpu", frames=8)
    decode(tmp_path / "raw", tmp_path / "half", 16, 3, "resize", device="cpu", frames=4, fps=15)
    decode(tmp_path / "raw", tmp_path / "grey", 16, 1, "resize", device="cpu", frames=4, fps=15)
    native, half = ShardReader(tmp_path / "native" / "train")[[0]], ShardReader(tmp_path / "half" / "train")[[0]]
    assert np.array_equal(native[:, :, ::2], half)
    grey = ShardReader(tmp_path / "grey" / "train")[[0]]
    rgb = half.astype(np.uint32)
    assert np.array_equal(grey[:, 0], ((rgb[:, 0] * 299 + rgb[:, 1] * 587 + rgb[:, 2] * 114) // 1000).astype(np.uint8))


def _bad_folder(tmp: Path) -> Path:
    """train/: a good video and four bad ones; test/: a good video."""
    data = Path(TRAFFIC).read_bytes()
    src = write_folder(
        tmp / "src",
        {
            "train/good.mp4": data,
            "train/truncated.mp4": data[: len(data) // 2],
            "train/text.mp4": b"this is not a video\n" * 50,
            "train/short.png": _apng(_moving(3, t=3)),
            "train/cut.avi": _tree().read_bytes()[:300_000],
            "test/good.png": _apng(_moving(4)),
        },
    )
    return src


def test_bad_videos_are_named_or_skipped(tmp_path):
    fetch(f"file://{_bad_folder(tmp_path)}", tmp_path / "raw", frames=6)
    with pytest.raises(DataError) as err:
        decode(tmp_path / "raw", tmp_path / "dec", 16, 1, device="cpu", frames=6)
    msg = str(err.value)
    assert msg.startswith("4 unreadable video(s)") and "pixels.on_error=skip" in msg
    for name in ("truncated.mp4", "text.mp4", "cut.avi"):
        assert f"train/{name} (" in msg
    assert "train/short.png (has only 3 frame(s); a clip needs 6" in msg
    assert "cut short" in msg and "not a readable video" in msg
    assert not (tmp_path / "dec").exists()
    m = decode(tmp_path / "raw", tmp_path / "dec", 16, 1, device="cpu", on_error="skip", frames=6)
    assert m["clips"] == {"train": 1, "test": 1} and m["skipped"] == 4
    skipped = json.loads((tmp_path / "dec" / "skipped.json").read_text())
    assert [s["path"] for s in skipped] == ["train/cut.avi", "train/short.png", "train/text.mp4", "train/truncated.mp4"]


def test_video_folders_keep_the_hostile_input_rules(tmp_path):
    src = write_folder(tmp_path / "src", {"a.png": _apng(_moving(5)), "b.png": _apng(_moving(6))})
    os.symlink("/etc/passwd", src / "passwd.mp4")
    os.mkfifo(src / "pipe.webm")
    m = fetch(f"file://{src}", tmp_path / "raw", frames=6)
    assert sum(m["clips"].values()) == 2
    assert "symbolic link" in m["skipped"]["passwd.mp4"] and "not a regular file" in m["skipped"]["pipe.webm"]
    with pytest.raises(DataError, match="found 0 video file"):
        fetch(f"file://{write_folder(tmp_path / 'empty', {'x.jpg': b'1'})}", tmp_path / "raw2", frames=6)


def test_video_on_the_gpu_is_refused(tmp_path):
    fetch("builtin:moving-mnist", tmp_path / "raw", frames=4, moving_mnist=MM)
    with pytest.raises(DataError, match="video is decoded with PyAV on the CPU"):
        decode(tmp_path / "raw", tmp_path / "dec", 16, 1, device="cuda", frames=4)


# ---- the validate stage's video suite ------------------------------------------------------------


def test_video_suite_names_blank_still_and_duplicate_clips(tmp_path):
    pytest.importorskip("great_expectations")
    from ul.data.validate.gate import ValidationError, validate

    still = np.repeat(_moving(7)[:1], 6, axis=0)
    src = write_folder(
        tmp_path / "src",
        {
            "train/a.png": _apng(_moving(8)),
            "train/b.png": _apng(_moving(9)),
            "train/blank.png": _apng(np.zeros((6, 24, 24), np.uint8)),
            "train/still.png": _apng(still),
            "train/copy.png": _apng(_moving(8), compress_level=1),  # other bytes, the same clip as a.png
            "test/c.png": _apng(_moving(10)),
        },
    )
    fetch(f"file://{src}", tmp_path / "raw", frames=6)
    decode(tmp_path / "raw", tmp_path / "dec", 24, 1, device="cpu", frames=6)
    with pytest.raises(ValidationError) as err:
        validate(tmp_path / "raw", tmp_path / "dec", tmp_path / "val", 24, 1, frames=6)
    failed = str(err.value)
    std = next(ln for ln in failed.splitlines() if "column='std'" in ln)
    assert "1 of 6 rows fail" in std and "train/blank.png" in std
    motion = next(ln for ln in failed.splitlines() if "column='motion'" in ln)
    assert "train/still.png" in motion and "train/blank.png" in motion
    dup = next(ln for ln in failed.splitlines() if "column='clip_sha256'" in ln)
    assert "train/a.png" in dup and "train/copy.png" in dup
    assert "column='sha256'" not in failed  # the files differ; only their clips are the same
    assert err.value.metrics["clips"] == 6 and (tmp_path / "val" / "result.json").exists()


def test_moving_mnist_keeps_every_frame_when_digits_do_not_move(tmp_path):
    """size 28 leaves no room to move: identical frames stay T frames (the APNG carries no delay,
    which would make Pillow merge them), and the validate suite would flag such clips as stills."""
    cfg = MovingMNISTConfig(train_clips=1, test_clips=1, size=28, digits=1, seed=0)
    fetch("builtin:moving-mnist", tmp_path / "raw", frames=5, moving_mnist=cfg)
    frames = _frames_of(tmp_path / "raw", "train/00000.png")
    assert frames.shape == (5, 28, 28) and all(np.array_equal(f, frames[0]) for f in frames)
    m = decode(tmp_path / "raw", tmp_path / "dec", 28, 1, device="cpu", frames=5)
    assert m["clips"] == {"train": 1, "test": 1}
