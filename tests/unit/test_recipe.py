"""Issue 27's recipe study as registered (docs/results/recipe.md): every candidate within half of
the default's training FLOPs, evaluation's cost points on the default's models, and the runner's
refusal to train a bf16 study where bf16 is only emulated."""

import pytest
import torch
from conftest import preset_config

from ul.core.model import BaseModel, stage1_model
from ul.results import recipe, report, run, studies
from ul.results.report import Experiment
from ul.train.flops import training_flops_per_example


def _sets(point) -> dict:
    return dict(s.split("=", 1) for s in point.overrides)


@pytest.fixture(scope="module")
def per_example():
    """Counted training FLOPs per example of the default (`cpu` preset) networks, stage 1 and 2."""
    cfg = preset_config("cpu")
    x = torch.rand(2, *stage1_model(cfg).x_shape) * 2 - 1
    base = BaseModel(cfg)
    z = torch.randn(2, *base.z_shape)
    return (
        training_flops_per_example(stage1_model(cfg), lambda i: x[torch.as_tensor(i)]),
        training_flops_per_example(base, lambda i: z[torch.as_tensor(i)]),
    )


def test_every_candidate_trains_on_at_most_half_of_the_default_s_flops(per_example):
    cfg = preset_config("cpu")

    def tflops(recipe: str) -> float:
        s = _sets(studies.recipe_point(recipe, 1))
        steps = [int(s.get(f"stage{k}.steps", getattr(cfg, f"stage{k}").steps)) for k in (1, 2)]
        batch = [int(s.get(f"stage{k}.batch_size", getattr(cfg, f"stage{k}").batch_size)) for k in (1, 2)]
        return sum(f * n * b for f, n, b in zip(per_example, steps, batch)) / 1e12

    default = tflops("default")
    assert 350 < default < 380  # the 364 TFLOPs the plan quotes
    for name in set(studies.RECIPES) - {"default"}:
        assert tflops(name) <= 180 <= default / 2, name


def test_the_recipe_points_pair_seeds_and_train_in_bf16():
    names = studies.STUDIES["recipe"]
    assert len(names) == len(studies.RECIPES) * len(studies.RECIPE_SEEDS)
    for p in studies.points("recipe"):
        s = _sets(p)
        assert p.bf16 and p.preset == "preset=cpu" and s["stage1.precision"] == s["stage2.precision"] == "bf16"
        assert int(s["seed"]) in studies.RECIPE_SEEDS


def test_evaluation_cost_points_change_only_the_sampler_steps_of_the_default_s_first_seed():
    order = [p.name for p in studies.POINTS]
    first = studies.recipe_point("default", studies.RECIPE_SEEDS[0])
    for p in studies.EVAL_COST:
        extra = set(p.overrides) - set(first.overrides)
        keys = {"sample.base_steps", "sample.decoder_steps", "eval.inception_precision"}
        assert {s.split("=")[0] for s in extra} <= keys and extra
        assert order.index(p.name) > order.index(first.name)  # DVC re-runs only evaluate


def test_a_bf16_study_is_not_run_where_bf16_is_emulated(monkeypatch, tmp_path):
    monkeypatch.setattr(run, "native_bf16", lambda: False)
    monkeypatch.setattr(run, "existing", lambda repo: set())
    monkeypatch.setattr(run.subprocess, "run", lambda *a, **k: pytest.fail(f"ran {a}"))
    said = []
    not_done = run.run(tmp_path, names=["recipe-half-seed1"], log=said.append)
    assert not_done == {"recipe-half-seed1": "not run: no native bf16 here"} and "does not compute natively" in said[0]


def _m(psnr=15.8, ratio=1.40, bits=17.0, gfid=50.0, **more) -> dict:
    return {"psnr_db": psnr, "gfid": gfid, "fid_floor": gfid / ratio, "latent_bits_per_image": bits, **more}


def test_a_recipe_reaches_the_reference_only_on_every_criterion_and_every_seed():
    ok = recipe.summarise([(_m(), 170e12), (_m(psnr=15.6), 170e12)])
    assert recipe.shortfalls(ok, planned=2) == [] and ok.psnr.mean == pytest.approx(15.7)
    assert recipe.shortfalls(recipe.summarise([(_m(), 170e12)]), 2) == ["1 of 2 seeds not run"]
    bad = recipe.summarise([(_m(psnr=15.0, ratio=1.6, bits=20.0), 190e12)] * 2)
    assert [w.split()[0] for w in recipe.shortfalls(bad, 2)] == ["PSNR", "gFID", "rate", "190"]


def test_the_new_default_is_the_cheapest_reaching_recipe_and_the_better_one_at_equal_cost():
    s = {
        "a": recipe.summarise([(_m(psnr=15.7), 178e12)] * 2),
        "b": recipe.summarise([(_m(psnr=15.9), 178.5e12)] * 2),  # within 1% of a: the higher PSNR wins
        "c": recipe.summarise([(_m(psnr=16.0), 120e12), (_m(psnr=15.0), 120e12)]),  # its mean misses 15.6
    }
    assert recipe.choose(s, planned=2) == "b"
    assert recipe.choose({"c": s["c"]}, planned=2) is None


def test_the_verdict_waits_for_every_recipe_within_the_bar_and_then_keeps_today_s_recipe():
    miss = recipe.summarise([(_m(psnr=15.2), 178e12)] * 2)
    default = recipe.summarise([(_m(), 364e12)])  # one seed, but over the FLOPs bar: it cannot reach it
    names = ("default", "a", "b")
    assert recipe.verdict({"default": default, "a": miss}, 2, names) == "none yet"  # b not run
    half_run = recipe.summarise([(_m(), 178e12)])
    assert recipe.verdict({"default": default, "a": miss, "b": half_run}, 2, names) == "none yet"
    assert recipe.verdict({"default": default, "a": miss, "b": miss}, 2, names).startswith("none: ")
    assert recipe.verdict({"a": miss, "b": recipe.summarise([(_m(), 178e12)] * 2)}, 2, ("a", "b")) == "b"


def test_evaluation_keeps_its_numbers_within_3_percent_gfid_and_a_tenth_of_a_db():
    ref = _m(gfid=50.0, psnr=15.6)
    assert recipe.keeps_the_numbers(_m(gfid=51.4, psnr=15.55), ref)
    assert not recipe.keeps_the_numbers(_m(gfid=51.6, psnr=15.6), ref)
    assert not recipe.keeps_the_numbers(_m(gfid=50.0, psnr=15.45), ref)


def test_the_report_tabulates_recipes_and_evaluation_cost(tmp_path):
    exps = {}
    for name, psnr in (("default", 15.7), ("half-cosine", 15.65), ("half", 15.2)):
        for seed in studies.RECIPE_SEEDS:
            p = studies.recipe_point(name, seed)
            flops = 364e12 if name == "default" else 178e12
            m = _m(psnr=psnr, sampling_flops=2.5e13)
            exps[p.name] = Experiment(
                p.name, "r", {}, m, {"train_flops": flops / 2, "precision": "bf16"}, {"train_flops": flops / 2}
            )
    for p, gfid in zip(studies.EVAL_COST, (50.5, 60.0, 50.2, 51.0)):
        exps[p.name] = Experiment(
            p.name, "r", {}, _m(gfid=gfid, base_steps=25, decoder_steps=25, sampling_flops=1.25e13)
        )
    text = report.recipes(exps, tmp_path)
    assert "| half-cosine | 2 | bf16 | 178 |" in text and "**reaches it**" in text
    assert "| half | 2 | bf16 | 178 |" in text and "PSNR 15.20 < 15.6 dB" in text
    assert "364 > 180 TFLOPs" in text and "by the registered rule: **half-cosine**" in text
    assert (tmp_path / "recipe.png").stat().st_size > 1000
    first = exps[studies.recipe_point("default", 1).name].metrics
    first.update(base_steps=50, decoder_steps=50)
    rows = report.eval_cost(exps, tmp_path).splitlines()
    assert rows[4].startswith("| 50 | 50 | fp32 | 25 | 1.00 |") and rows[4].endswith("reference |")
    assert [r.rsplit("|", 2)[-2].strip() for r in rows[5:9]] == ["yes", "no", "yes", "yes"]
