"""`ul results`: the studies' points run as real DVC experiments (the bitrate-target study at the ci
preset, in a copy of the shared ci run) and the report built back from `dvc exp show --json`; the
FLOPs the training stages count."""

import csv
import io
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from project import ROOT, copy_of, sh

from ul.results import report, studies
from ul.train import flops, precision


def test_every_study_point_is_run_and_named_once():
    names = [p.name for p in studies.POINTS]
    assert len(names) == len(set(names))
    assert {n for ns in studies.STUDIES.values() for n in ns} == set(names)
    # the UL budget points come straight after the default point, so they reuse its stage 1
    order = names.index
    assert order("ul-s2-125") == 1 and order("ul-s2-250") == 2
    assert studies.command(studies.BY_NAME[f"target-{studies.TARGETS[0]}"])[-1] == "train_stage1"
    # named points (`ul results run --point`) run alone, in run order, or beside a study's
    picked = studies.points(names=["logsnr0-3.0", "rd-lf1.5"])
    assert [p.name for p in picked] == ["rd-lf1.5", "logsnr0-3.0"]
    both = {p.name for p in studies.points("logsnr0", names=["rd-lf1.9"])}
    assert both == {"rd-lf1.9", *studies.STUDIES["logsnr0"]}


class Toy(torch.nn.Module):
    """A model with the training interface: forward(batch, noise) -> {"loss": per example}."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(8, 4, bias=False)

    def draw_noise(self, n, gen):
        return torch.randn(n, 8, generator=gen)

    def forward(self, x, noise):
        return {"loss": self.lin(x + noise).square().sum(1)}


def test_training_flops_count_forward_and_backward_matmuls():
    # forward 2·8·4 per example, the weight gradient as much again (the input needs none)
    cfg = type("C", (), {"batch_size": 3, "steps": 5})
    got = flops.training_flops(Toy(), lambda idx: torch.zeros(len(idx), 8), cfg)
    assert got == {"train_flops_per_example": 128.0, "train_flops": 128.0 * 3 * 5}


@pytest.fixture(scope="module")
def targets_run(ci_project, tmp_path_factory):
    proj = copy_of(ci_project, tmp_path_factory, "results")
    run = sh(["ul", "results", "run", "--preset", "ci", "--study", "bitrate-targets"], proj)
    again = sh(["ul", "results", "run", "--preset", "ci", "--study", "bitrate-targets"], proj)
    rep = sh(["ul", "results", "report", "--out", "out"], proj)
    return proj, run, again, rep


def test_results_run_names_one_experiment_per_point_and_skips_finished_ones(targets_run):
    proj, run, again, _ = targets_run
    for t in studies.TARGETS:
        assert f"target-{t}: done" in run.stdout
        assert f"target-{t}: exists, skipped" in again.stdout
    listed = sh(["dvc", "exp", "list", "--all-commits", "--name-only"], proj).stdout.split()
    assert {f"target-{t}" for t in studies.TARGETS} <= set(listed)


def test_report_is_built_from_dvc_experiments(targets_run):
    proj, _, _, rep = targets_run
    out = proj / "out"
    assert f"3 of {len(studies.POINTS)} points" in rep.stdout
    rows = json.loads((out / "results.json").read_text())
    assert set(rows) == {f"target-{t}" for t in studies.TARGETS}
    show = report.parse_show(json.loads(sh(["dvc", "exp", "show", "--json", "--all-commits"], proj).stdout))
    for name, row in rows.items():
        assert row["params"]["unified.target_bits_per_pixel"] == float(name.split("-")[1])
        assert row["params"] == show[name]["params"] and row["rev"] == show[name]["rev"]
        assert row["stage1"]["train_flops"] > 0 and row["stage1"]["steps"] == 60
        assert row["stage1"]["precision"] == precision.name("auto", "cpu")  # the preset's auto, resolved
    # the "reached" column is the EMA model's rate in the experiment's own logged curve, from its
    # git commit; the loss factor was held for the first 30% of steps, then steered
    exps = report.load(proj)
    text = (out / "studies.md").read_text()
    for t in studies.TARGETS:
        x = exps[f"target-{t}"]
        tsv = list(
            csv.DictReader(
                io.StringIO(sh(["git", "show", f"{x.rev}:metrics/stage1_train.tsv"], proj).stdout), delimiter="\t"
            )
        )
        reached = sum(float(r["ema_rate_bpp"]) for r in tsv[-2:]) / 2
        assert f"| {t} | {reached:.3g} |" in text
        held = [float(r["loss_factor"]) for r in tsv if int(r["step"]) <= 0.3 * 60]
        assert held and all(c == pytest.approx(2.1) for c in held)
        assert float(tsv[-1]["loss_factor"]) != pytest.approx(2.1)
    assert "Not yet run: rd-lf2.1" in text
    png = np.asarray(Image.open(out / "bitrate-targets.png").convert("L"))
    assert png.shape[1] > 600 and png.std() > 10


def test_report_keeps_earlier_rows_that_no_repository_has(targets_run):
    """Points that ran on another machine (their refs/exps are not here) stay in the documents: the
    report keeps the rows of OUT/results.json that no repository has, and says which; --fresh drops them."""
    proj, *_ = targets_run
    committed = json.loads((ROOT / "docs" / "results" / "results.json").read_text())
    out = proj / "out-kept"
    out.mkdir()
    target = f"target-{studies.TARGETS[0]}"
    earlier = {"rd-lf2.1": committed["rd-lf2.1"], target: {**committed["rd-lf2.1"], "rev": "stale"}}
    (out / "results.json").write_text(json.dumps(earlier))
    rep = sh(["ul", "results", "report", "--out", "out-kept"], proj)
    assert "1 kept from results.json" in rep.stdout
    rows = json.loads((out / "results.json").read_text())
    assert rows["rd-lf2.1"] == committed["rd-lf2.1"]  # kept as it was
    assert rows[target]["rev"] != "stale" and rows[target]["curve1"]  # this repository's wins
    text = (out / "studies.md").read_text()
    assert "Kept from an earlier results.json (run elsewhere; `rev` there names each one's commit): rd-lf2.1" in text
    m = committed["rd-lf2.1"]["metrics"]
    assert f"| 2.1 | {m['latent_bits_per_pixel']:.3g} | {m['latent_bits_per_image']:.3g} |" in text
    not_run = text.split("Not yet run: ")[1].split("\n")[0].split(", ")
    assert "rd-lf1.3" in not_run and "rd-lf2.1" not in not_run
    sh(["ul", "results", "report", "--out", "out-kept", "--fresh"], proj)
    assert set(json.loads((out / "results.json").read_text())) == {f"target-{t}" for t in studies.TARGETS}


def test_fid_noise_shrinks_with_n_and_separates_a_shifted_set():
    from ul.results import fid_noise

    rng = np.random.default_rng(0)
    real = rng.normal(size=(2000, 16))
    fake = rng.normal(size=(1000, 16)) + 0.5  # a visibly different "generated" set: |Δμ|² = 4
    rows = {(r["what"], r["n"]): r for r in fid_noise.measure(real, fake, [100, 400], k=8)}
    floor_small, floor_big = rows["floor", 100], rows["floor", 400]
    assert (
        floor_big["mean"] < floor_small["mean"] and floor_big["std"] < floor_small["std"]
    )  # bias ∝ 1/N, spread ∝ 1/√N
    assert rows["gfid", 400]["mean"] > 5 * floor_big["mean"]
    g = rows["gfid", 400]
    assert g["pool"] == 1000 and g["detect_10pct"] is (0.1 * g["mean"] > 2 * math.sqrt(2) * g["std"])
    assert ("floor", 1500) not in {(r["what"], r["n"]) for r in fid_noise.measure(real, None, [1500], k=2)}
