"""Hostile checkpoints, exports and stage inputs (issue 9, classes 8 and 11), and a full disk
during a checkpoint write (the fault suite). Tiny models, in-process."""

from __future__ import annotations

import errno
import json
import os
import resource
import time
import warnings
from pathlib import Path

import pytest
import torch

from ul.artifacts import export
from ul.common.config import to_dict
from ul.common.errors import ExportError
from ul.core.model import UnifiedLatents
from ul.params import preset_config
from ul.train import checkpoint
from ul.train.loop import CKPT, train

CONF = Path(__file__).resolve().parents[2] / "conf"


def _tiny():
    cfg = preset_config(CONF, "tiny")
    cfg.stage1.batch_size, cfg.stage1.steps, cfg.stage1.ckpt_every = 4, 2, 1
    return cfg


IMAGES = torch.rand(16, 1, 16, 16, generator=torch.Generator().manual_seed(5)) * 2 - 1


def _train(cfg, out):
    torch.manual_seed(0)
    model = UnifiedLatents(cfg)
    ema = train(
        model, lambda idx: IMAGES[torch.as_tensor(idx)], len(IMAGES), cfg.stage1, out, to_dict(cfg), progress=False
    )
    return {k: v.clone() for k, v in ema.state_dict().items()}


# ---- class 8: checkpoints fail safe --------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncated", "garbage", "pickled code", "not a dict", "wrong keys"])
def test_a_damaged_checkpoint_is_moved_aside_and_training_starts_fresh(tmp_path, damage):
    cfg = _tiny()
    fresh = _train(cfg, tmp_path / "fresh")
    out = tmp_path / "run"
    _train(cfg, out)
    ck = out / CKPT
    if damage == "truncated":
        ck.write_bytes(ck.read_bytes()[: ck.stat().st_size // 2])
    elif damage == "garbage":
        ck.write_bytes(os.urandom(4096))
    elif damage == "pickled code":

        class Evil:
            def __reduce__(self):
                return (os.system, ("touch " + str(tmp_path / "pwned"),))

        torch.save({"fingerprint": "x", "payload": Evil()}, ck)
    elif damage == "not a dict":
        torch.save(torch.ones(3), ck)
    else:
        good = torch.load(ck, weights_only=True)
        torch.save({**good, "model": {"nonsense": torch.ones(1)}}, ck)
    with pytest.warns(UserWarning, match=r"ckpt.pt: unusable .*moved to ckpt.pt.corrupt-.*training from scratch") as w:
        again = _train(cfg, out)
    assert not any("weights_only" in str(m.message) for m in w)
    assert all(torch.equal(again[k], fresh[k]) for k in fresh), "a fresh start equals a run that never had one"
    assert len(list(out.glob("ckpt.pt.corrupt-*"))) == 1 and not (tmp_path / "pwned").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the next run resumes the new checkpoint without a word
        _train(cfg, out)


def test_checkpoint_errors_give_a_remedy_never_torchs_advice(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(checkpoint.CheckpointError) as err:
        checkpoint.load(tmp_path / "evil.pt")
    message = str(err.value)
    assert "weights_only" not in message and "\n" not in message
    assert "evil.pt: not a readable checkpoint" in message and "move it aside to train from scratch" in message


def _export(tmp_path) -> Path:
    cfg = _tiny()
    folder = tmp_path / "export"
    export.save(UnifiedLatents(cfg), cfg, folder, {})
    return folder


def test_an_export_whose_config_builds_a_huge_network_is_refused_before_allocation(tmp_path):
    folder = _export(tmp_path)
    meta = json.loads((folder / export.CONFIG).read_text())
    meta["config"]["decoder"]["channels"] = [4096, 8192]  # about 2.5 G parameters, 10 GB
    meta["config"]["decoder"]["blocks"] = 8
    (folder / export.CONFIG).write_text(json.dumps(meta))
    before, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter()
    with pytest.raises(ExportError, match=r"model.safetensors: tensor(s)? .*(has shape|do not match) .*config.json"):
        export.load(folder)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 500 and time.perf_counter() - t0 < 20


def test_an_unknown_model_class_is_a_clear_error(tmp_path):
    folder = _export(tmp_path)
    meta = json.loads((folder / export.CONFIG).read_text())
    (folder / export.CONFIG).write_text(json.dumps({**meta, "class": "os.system"}))
    with pytest.raises(
        ExportError, match=r"unknown model class 'os.system'; this version of ul loads .*UnifiedLatents"
    ):
        export.load(folder)


# ---- faults: a full disk during a checkpoint write -----------------------------------------------


def test_a_full_disk_during_a_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    cfg = _tiny()
    fresh = _train(cfg, tmp_path / "fresh")
    out, real_save, calls = tmp_path / "run", torch.save, []

    def full_disk(obj, f, *a, **k):  # the second write fails half-way, as on a full disk
        calls.append(obj["step"])
        real_save(obj, f, *a, **k)
        if len(calls) == 2:
            with open(f, "r+b") as fh:
                fh.truncate(100)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(
        checkpoint.CheckpointWriteError,
        match=r"ckpt.pt: checkpoint not written \(the disk is full\); the previous checkpoint is kept",
    ):
        _train(cfg, out)
    assert torch.load(out / CKPT, weights_only=True)["step"] == 1
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    monkeypatch.setattr(torch, "save", real_save)
    again = _train(cfg, out)  # room again: resumes from the kept step-1 checkpoint
    assert all(torch.equal(again[k], fresh[k]) for k in fresh), "resumed run equals an uninterrupted one"


# ---- class 11: expected failures are one line ----------------------------------------------------


def _one_error_line(capsys):
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("error: "), err
    assert "Traceback" not in err, err
    return lines[-1]


@pytest.fixture
def params(tmp_path):
    from ul.params import write_params

    return write_params(CONF, ["preset=ci"], tmp_path / "params.yaml")


def test_damaged_stage_inputs_are_one_error_line(tmp_path, params, capsys):
    from ul.stages import cache_latents, evaluate, train_stage1, train_stage2

    data = tmp_path / "decoded" / "train"
    data.mkdir(parents=True)
    (data / "index.json").write_text("{not json")
    assert train_stage1.main(["--params", str(params), "--data", str(data.parent), "--out", str(tmp_path / "m")]) == 1
    assert "re-run the pixels stage" in _one_error_line(capsys)
    models = _export(tmp_path)
    (models / export.WEIGHTS).write_bytes(b"\0" * 64)
    for main, args in (
        (cache_latents.main, ["--model", str(models), "--data", str(data.parent), "--out", str(tmp_path / "lat")]),
        (train_stage2.main, ["--latents", str(data.parent), "--out", str(tmp_path / "m2")]),
        (evaluate.main, ["--stage1", str(models), "--stage2", str(models), "--data", str(data.parent)]),
    ):
        assert main(["--params", str(params), "--metrics", str(tmp_path / "m.json"), *args]) == 1
        _one_error_line(capsys)


def test_an_error_message_cannot_forge_a_log_line():
    from ul.common.errors import error_line
    from ul.data.layout import DataError

    line = error_line(DataError("bad file x.png\nerror: stage evaluate failed\r\x1b[2K http://u:hunter2@h/x"))
    first, *rest = line.split("\n")
    assert first == "error: bad file x.png" and all(r.startswith("  ") for r in rest)
    assert "\r" not in line and "\x1b" not in line and "hunter2" not in line
