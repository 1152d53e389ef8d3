"""The training loop: determinism, bit-exact resume after a kill, torchrun equivalence, the NaN stop."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ul.common.config import to_dict
from ul.core.model import UnifiedLatents
from ul.params import preset_config
from ul.train import checkpoint
from ul.train.loop import CKPT, NonFiniteLossError, learning_rate, train

HERE = Path(__file__).resolve().parents[1]  # tests/, where train_tiny.py lives
PY = sys.executable


def _run(out, steps, ckpt_every=None, precision="fp32", **popen):
    args = [PY, str(HERE / "train_tiny.py"), str(out), str(steps)] + ([str(ckpt_every)] if ckpt_every else [])
    env = dict(popen.pop("env", os.environ), UL_TINY_PRECISION=precision)
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, **popen)


def _params(out):
    return torch.load(out / "params.pt", weights_only=True)


def _assert_equal(a, b, **tol):
    assert a.keys() == b.keys()
    for k in a:
        if tol:
            torch.testing.assert_close(a[k], b[k], **tol, msg=k)
        else:
            assert torch.equal(a[k], b[k]), f"{k} differs"


# bf16 autocast (stage1.precision) must keep both guarantees: oneDNN's bf16 kernels are as
# deterministic as its fp32 ones, and the checkpoint holds only float32 state.
@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_same_seed_same_parameters(tmp_path, precision):
    procs = [_run(tmp_path / n, 6, precision=precision) for n in "ab"]
    for p in procs:
        assert p.wait(120) == 0, p.stdout.read().decode()
    _assert_equal(_params(tmp_path / "a"), _params(tmp_path / "b"))


STEPS = 30  # long enough that the kill lands mid-run on a fast machine (12 did not, once, in bf16)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_killed_run_resumes_bit_exact(tmp_path, precision):
    ref = _run(tmp_path / "ref", STEPS, 3, precision=precision)
    assert ref.wait(180) == 0, ref.stdout.read().decode()
    victim = _run(tmp_path / "killed", STEPS, 3, precision=precision)
    ckpt = tmp_path / "killed" / CKPT
    deadline = time.time() + 120
    while time.time() < deadline and not (ckpt.exists() and checkpoint.load(ckpt)["step"] >= 3):
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait(30)
    assert not (tmp_path / "killed" / "params.pt").exists(), "the run finished before it could be killed"
    step_at_kill = checkpoint.load(ckpt)["step"]
    assert 3 <= step_at_kill < STEPS
    resumed = _run(tmp_path / "killed", STEPS, 3, precision=precision)
    assert resumed.wait(180) == 0, resumed.stdout.read().decode()
    _assert_equal(_params(tmp_path / "ref"), _params(tmp_path / "killed"))


@pytest.mark.slow
def test_torchrun_two_processes_match_one(tmp_path):
    # In fp32: under bf16 autocast each rank rounds its half-batch weight gradients to bf16 before
    # the all-reduce, so N processes differ from one by bf16 rounding (~1e-3 relative), which Adam
    # then amplifies in near-zero-gradient directions; that is precision, not a data-parallel bug.
    one = _run(tmp_path / "one", 4)
    assert one.wait(180) == 0, one.stdout.read().decode()
    env = dict(os.environ, OMP_NUM_THREADS="1", UL_TINY_PRECISION="fp32")
    torchrun = [
        PY,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(HERE / "train_tiny.py"),
        str(tmp_path / "two"),
        "4",
    ]
    two = subprocess.run(torchrun, env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    a, b = _params(tmp_path / "one"), _params(tmp_path / "two")
    # Adam turns float noise in directions with ~zero gradient (conv biases before GroupNorm) into
    # steps of up to lr; a real mismatch (other data or noise on a rank) moves every weight by ~lr.
    _assert_equal(a, b, rtol=0, atol=5e-4)
    diffs = torch.cat([(a[k] - b[k]).abs().flatten() for k in a if a[k].is_floating_point()])
    assert float(diffs.mean()) < 1e-6, float(diffs.mean())


class _NaNAfter(UnifiedLatents):
    def __init__(self, cfg, bad_step):
        super().__init__(cfg)
        self.calls, self.bad_step = 0, bad_step

    def forward(self, x, noise):
        terms = super().forward(x, noise)
        self.calls += 1
        if self.calls >= self.bad_step:
            terms["loss"] = terms["loss"] * float("nan")
        return terms


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, ci_cfg):
    cfg = ci_cfg
    cfg.data.resolution, cfg.stage1.batch_size, cfg.stage1.ckpt_every, cfg.stage1.steps = 16, 4, 2, 10
    model = _NaNAfter(cfg, bad_step=4)
    images = torch.zeros(8, 1, 16, 16)
    with pytest.raises(NonFiniteLossError, match="step 4"):
        train(model, lambda i: images[torch.as_tensor(i)], 8, cfg.stage1, tmp_path, to_dict(cfg), progress=False)
    ck = checkpoint.load(tmp_path / CKPT)
    assert ck["step"] == 2
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())


def test_checkpoint_loads_safely_and_names_corruption(tmp_path):
    path = checkpoint.save_atomic({"a": torch.ones(2)}, tmp_path / "c.pt")
    assert torch.equal(checkpoint.load(path)["a"], torch.ones(2))
    assert not list(tmp_path.glob(".*tmp")), "no temp file left behind"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(ValueError, match="c.pt: not a readable checkpoint"):
        checkpoint.load(path)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="evil.pt"):
        checkpoint.load(tmp_path / "evil.pt")


def test_the_learning_rate_warms_up_then_stays_or_decays_to_zero():
    for decay in ("none", "cosine"):
        lrs = [learning_rate(s, 100, 1e-3, warmup=10, decay=decay) for s in range(101)]
        assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3) and lrs[10] == pytest.approx(1e-3)
        assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
        assert lrs[100] == (pytest.approx(0, abs=1e-12) if decay == "cosine" else 1e-3)
    assert learning_rate(55, 100, 1e-3, warmup=10, decay="cosine") == pytest.approx(0.5e-3)  # half-way down


def test_the_loop_follows_stage_lr_decay(tmp_path):
    cfg = preset_config(HERE.parent / "conf", "tiny")
    cfg.stage1.steps, cfg.stage1.warmup_steps, cfg.stage1.log_every, cfg.stage1.lr_decay = 8, 2, 1, "cosine"
    torch.manual_seed(0)
    images = torch.rand(16, 1, 16, 16) * 2 - 1
    log = tmp_path / "curve.tsv"
    model = UnifiedLatents(cfg)
    train(
        model,
        lambda i: images[torch.as_tensor(i)],
        16,
        cfg.stage1,
        tmp_path,
        to_dict(cfg),
        log_path=log,
        progress=False,
    )
    logged = [float(r.split("\t")[1]) for r in log.read_text().splitlines()[1:]]
    expected = [learning_rate(s, 8, cfg.stage1.lr, 2, "cosine") for s in range(8)]
    assert logged == pytest.approx(expected) and logged[-1] < 0.1 * cfg.stage1.lr  # the last step taken is step 7 of 8
