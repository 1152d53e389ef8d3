"""The headline study's analysis (ul.results.paired), fixed before its runs: paired per-seed
differences, their 95% t-intervals, the verdict rules and the one extension; the study's points;
and the report's calibration and headline sections on made-up experiments."""

from __future__ import annotations

import json

import pytest

from ul.results import fid_noise, paired, report, studies
from ul.results.report import Experiment


def test_the_interval_is_student_t_on_the_paired_differences():
    iv = paired.interval([1.0, 2.0, 3.0, 4.0, 5.0])
    half = 2.7764451051977987 * 1.5811388300841898 / 5**0.5  # t(4, 0.975) · sd / √n
    assert (iv.n, iv.mean) == (5, 3.0) and iv.low == pytest.approx(3 - half) and iv.high == pytest.approx(3 + half)
    with pytest.raises(ValueError, match="at least 2"):
        paired.interval([1.0])


def test_ul_is_ahead_or_behind_only_when_gfid_and_gkid_both_clear_zero():
    below, above, across = paired.interval([-3, -2, -4]), paired.interval([3, 2, 4]), paired.interval([-3, 2, -1])
    assert paired.verdict(below, below) == "UL ahead"
    assert paired.verdict(above, above) == "UL behind"
    assert paired.verdict(below, across) == "not resolved at n = 3"  # KID disagrees
    assert paired.verdict(across, below) == "not resolved at n = 3"
    assert [paired.claim(v) for v in ("UL ahead", "UL behind", "not resolved at n = 5")] == [
        "reproduced",
        "refuted",
        "not resolved",
    ]


def test_an_unresolved_pair_is_extended_once_decided_on_its_planned_seeds_only():
    resolved, contested = [-3.0, -2.0, -4.0, -3.0, -2.5], [-3.0, 2.0, -1.0, 1.0, -2.0]
    assert paired.seeds_to_run(5, resolved[:3], resolved[:3]) == 5  # not all planned seeds yet
    assert paired.seeds_to_run(5, resolved, resolved) == 5
    assert paired.seeds_to_run(5, contested, contested) == paired.MAX_SEEDS
    clears_later = contested + [-9.0, -9.0, -9.0]  # the extension's seeds do not undo the decision
    assert paired.seeds_to_run(5, clears_later, clears_later) == paired.MAX_SEEDS


def test_the_study_registers_the_planned_seeds_and_keeps_the_extension_apart():
    planned = studies.STUDIES["headline"]
    assert "hl-ul2.1-seed5-s2-125" in planned and "hl-kl1e-06-seed5-s2-500" in planned
    assert "hl-ul2.1-seed6-s2-125" not in planned and "hl-ul2.1-seed6-s2-125" in studies.STUDIES["headline-extension"]
    default = {p.name for p in studies.points()}
    assert set(planned) <= default and not default & set(studies.STUDIES["headline-extension"])
    p = studies.BY_NAME["hl-kl1e-06-seed3-s2-500"]
    assert {"latent=klvae", "klvae.kl_weight=1e-06", "seed=3", "stage2.steps=500", "eval.num_images=500"} <= set(
        p.overrides
    )


def test_the_matched_kl_weight_is_interpolated_between_the_weights_that_bracket_ul_s_rate():
    kls = [(1e-4, 400.0), (1e-3, 100.0), (1e-2, 25.0)]
    assert report.matched_weight(kls, 100.0) == pytest.approx(1e-3)
    assert report.matched_weight(kls, 50.0) == pytest.approx(10**-2.5, rel=1e-9)  # halfway in log–log
    assert report.matched_weight(kls, 1000.0) is None


def _exp(name: str, **metrics) -> Experiment:
    return Experiment(name, "rev", {}, metrics, stage1={"train_flops": 5e13}, stage2={"train_flops": 1e13})


def _pair1(seeds: int) -> dict:
    """The first pair's points on `seeds` seeds: UL 10 better at 500 steps, mixed at 125."""
    ul, kl, _ = studies.PAIRS["ul2.1-vs-kl1e-06"]
    exps = {}
    for seed in range(1, seeds + 1):
        for steps in studies.HEADLINE_BUDGETS:
            for arm, gfid in ((ul, 90.0 + seed), (kl, 100.0 + seed + (steps == 125) * 0.5 * (-1) ** seed)):
                name = studies.headline_point(arm, seed, steps).name
                exps[name] = _exp(name, gfid=gfid, gkid=gfid / 1000, s2fid=gfid / 2)
    return exps


def test_the_headline_section_reports_intervals_verdicts_and_spread(tmp_path):
    text = report.headline(_pair1(5), tmp_path)
    assert "| ul2.1-vs-kl1e-06 | 500 | 5 | -10 [-10, -10]" in text and "UL ahead" in text
    assert "| ul3.0-vs-matched | 125 | 0 |" in text and "not run" in text  # the matched pair, no seed yet
    early = report.headline(_pair1(3), tmp_path)  # 3 of the 5 planned seeds: no verdict read early
    assert "| ul2.1-vs-kl1e-06 | 500 | 3 |" in early and "interim, 3 of 5 seeds: UL ahead" in early
    assert "UL ahead: **reproduced**" in text and "**reproduced**" not in early


def test_a_contested_pair_s_verdict_stays_interim_until_its_extension_has_run(tmp_path):
    exps = _pair1(5)
    ul, _, _ = studies.PAIRS["ul2.1-vs-kl1e-06"]
    for seed in (2, 4):  # two seeds where UL is behind at 500 steps: the interval straddles 0
        exps[studies.headline_point(ul, seed, 500).name].metrics.update(gfid=200.0, gkid=0.2)
    text = report.headline(exps, tmp_path)
    assert "| ul2.1-vs-kl1e-06 | 500 | 5 |" in text
    assert "interim, 5 of 8 seeds: not resolved at n = 5 | 8 |" in text
    assert "| ul2.1-vs-kl1e-06 | 125 | 5 |" in text and "UL ahead: **reproduced** | 5 |" in text
    for seed in (6, 7, 8):  # extension seeds at the budget already decided do not enter its verdict
        for arm in studies.PAIRS["ul2.1-vs-kl1e-06"][:2]:
            name = studies.headline_point(arm, seed, 125).name
            exps[name] = _exp(name, gfid=500.0 if arm is ul else 1.0, gkid=0.5, s2fid=1.0)
    assert "| ul2.1-vs-kl1e-06 | 125 | 5 |" in report.headline(exps, tmp_path)
    assert (tmp_path / "headline.png").stat().st_size > 1000


def test_a_pair_whose_kl_weight_is_not_calibrated_says_so(monkeypatch, tmp_path):
    ul, _, planned = studies.PAIRS["ul3.0-vs-matched"]
    monkeypatch.setitem(studies.PAIRS, "ul3.0-vs-matched", (ul, None, planned))
    text = report.headline(_pair1(2), tmp_path)
    assert "ul3.0-vs-matched | — | 0" in text and "KL weight not calibrated yet" in text


@pytest.mark.parametrize("reached, verdict", [(104.0, "**matched** (within 10%)"), (80.0, "**not matched**")])
def test_the_calibration_section_checks_the_matched_weight_s_own_run(monkeypatch, tmp_path, reached, verdict):
    monkeypatch.setattr(studies, "MATCHED_KL_WEIGHT", 2e-3)
    exps = {"klcal-ul3.0": Experiment("klcal-ul3.0", "rev", {}, {}, stage1={"latent_bits_per_image": 100.0})}
    for w, bits in ((1e-3, 150.0), (2e-3, reached), (1e-2, 40.0)):
        name = f"klcal-kl{w:g}"
        exps[name] = Experiment(name, "rev", {"klvae.kl_weight": w}, {}, stage1={"latent_bits_per_image": bits})
    text = report.calibration(exps, tmp_path)
    assert f"reaches {reached:g} bits per image, {100 * (reached / 100 - 1):+.1f}% from UL's: {verdict}" in text
    assert ("set `studies.MATCHED_KL_WEIGHT` to it" in text) == (verdict == "**not matched**")  # settled: no advice


def test_every_study_table_quotes_the_spread_it_must_beat(tmp_path):
    noise = [{"what": "gfid", "n": n, "rel_std": r} for n, r in ((250, 0.026), (500, 0.014))]
    (tmp_path / "fid-noise.json").write_text(json.dumps([*noise, {"what": "floor", "n": 250, "rel_std": 0.5}]))
    exps = _pair1(3)
    at = lambda n: [_exp(f"p{n}", gfid=90.0, fid_num_samples=n)]  # noqa: E731
    assert "2.6% at N = 250" in report.spread_to_beat(exps, at(300), tmp_path)
    line = report.spread_to_beat(exps, at(500), tmp_path)
    sds = [sd / mean for *_, mean, sd, _ in report._seed_spread(exps)]  # the KL arm at 500: 101, 102, 103
    assert "1.4% at N = 500" in line and f"{min(sds):.1%}–{max(sds):.1%}" in line and min(sds) == pytest.approx(1 / 102)
    assert "not measured yet" in report.spread_to_beat({}, at(500), tmp_path)
    assert report.spread_to_beat(exps, at(100), tmp_path) == ""  # no N measured at or below it


def test_fid_noise_md_gets_each_arm_s_seed_spread_beside_the_sampling_spread(tmp_path):
    (tmp_path / "fid-noise.json").write_text(json.dumps([{"what": "gfid", "n": 500, "rel_std": 0.014}]))
    exps = {n: _exp(n, **x.metrics, fid_num_samples=500) for n, x in _pair1(3).items()}
    section = report.seed_section(exps, tmp_path)
    assert "| kl1e-06 | 500 | 3 | 102 | 1 | 1.0% | 500 | 1.4% |" in section  # 101, 102, 103
    assert "no headline arm has run on two seeds" in report.seed_section(_pair1(1), tmp_path)
    # the report rewrites only its own section; the fid-noise command keeps it when it rewrites the table
    sampling = "# How noisy is FID at N?\n\n| set | N |\n"
    twice = fid_noise.with_seed_section(
        fid_noise.with_seed_section(sampling, fid_noise.SEED_HEADING + "\nold\n"), section
    )
    assert twice == sampling + "\n" + section and fid_noise.split_seed_section(twice) == (sampling, section)
    assert fid_noise.with_seed_section(twice, "") == sampling
