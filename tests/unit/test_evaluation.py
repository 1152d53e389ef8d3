"""Evaluation numbers a researcher can trust: random subsets of a class-ordered split, latent use
against images of other classes, refused out-of-range inputs, an unbiased KID with its error."""

import json

import numpy as np
import pytest
import torch
from conftest import preset_config

from ul.common.shards import ShardReader, ShardWriter
from ul.core.losses import NoiseDraw, decoder_loss
from ul.core.model import BaseModel, UnifiedLatents, check_pair
from ul.core.schedules import CosineLogSNR
from ul.eval import frechet, inception, psnr
from ul.eval.cost import sampling_flops
from ul.eval.evaluate import derangement, fid, subsets
from ul.stages.evaluate import pipeline_flops

CLASSES, PER_CLASS = 10, 50


@pytest.fixture(scope="module")
def class_ordered(tmp_path_factory):
    """A test split stored in class order, as Fashion-MNIST's is: image i shows its class as pixels."""
    folder = tmp_path_factory.mktemp("split") / "test"
    w = ShardWriter(folder)
    labels = np.repeat(np.arange(CLASSES), PER_CLASS)
    w.add(np.broadcast_to(labels[:, None, None, None].astype(np.uint8), (len(labels), 1, 4, 4)).copy())
    w.close()
    return ShardReader(folder)


def _classes(test, rows) -> set:
    return set(test[rows][:, 0, 0, 0].tolist())


def test_every_subset_is_a_random_sample_of_the_class_ordered_split(class_ordered):
    rows = subsets(class_ordered, 500, 300, seed=0)
    assert _classes(class_ordered, rows["fid_ref"]) == set(range(CLASSES))  # sorted rows missed classes 7–9
    assert len(_classes(class_ordered, rows["eval"][:32])) >= 6  # the grid shows many classes, not one
    assert not set(rows["fid_ref"]) & set(rows["fid_floor"]) and len(rows["fid_floor"]) == 0  # 500 < 2·300
    rows = subsets(class_ordered, 200, 100, seed=1)
    assert len(rows["fid_floor"]) == 100 and not set(rows["fid_ref"]) & set(rows["fid_floor"])
    assert _classes(class_ordered, rows["fid_floor"]) == set(range(CLASSES))


def test_latent_use_pairs_images_across_the_whole_set(class_ordered):
    labels = class_ordered[np.arange(len(class_ordered))][:, 0, 0, 0]
    partner = derangement(len(labels), np.random.default_rng(0))
    assert not (partner == np.arange(len(labels))).any()
    same = (labels == labels[partner]).mean()
    assert same < 0.2, same  # a neighbour in a class-ordered batch (roll by one) is the same class 98% of the time
    with pytest.raises(ValueError, match="at least 2"):
        derangement(1, np.random.default_rng(0))


def test_psnr_and_inception_refuse_values_outside_unit_range():
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(ValueError, match=r"psnr_db: images must be in \[0, 1\]"):
        psnr.psnr_db(x * 2 - 1, x)
    with pytest.raises(ValueError, match="InceptionFeatures"):
        inception.InceptionFeatures._to_unit255(x + 0.5)
    assert inception.InceptionFeatures._to_unit255(x).max() <= 255


def test_kid_is_unbiased_and_reports_its_standard_error():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(400, 64)), rng.normal(size=(400, 64))
    same, err = frechet.kid(a, b)
    assert err > 0 and abs(same) < 3 * err
    shifted, err2 = frechet.kid(a, b + 0.5)
    assert shifted > 5 * err2
    small, small_err = frechet.kid(a[:16], b[:16])  # a small N (e.g. a cheap sweep) uses fewer blocks
    assert small_err > 0 and abs(small) < 5 * small_err
    with pytest.raises(ValueError, match="at least 4"):
        frechet.kid(a[:3], b[:3])


def test_the_reported_decoder_elbo_is_the_loss_at_unit_weight():
    x = torch.rand(3, 1, 4, 4) * 2 - 1
    draw = NoiseDraw(torch.rand(3), torch.randn(3, 1, 4, 4))
    sched = CosineLogSNR(-15.0, 15.0)
    den = lambda x_t, lam, z0: 0.5 * x_t  # noqa: E731  any fixed denoiser
    terms = decoder_loss(x, None, den, sched, draw, loss_factor=2.1, sigmoid_bias=0.0)
    unit = decoder_loss(x, None, den, sched, draw, loss_factor=1.0, sigmoid_bias=1e9)  # sigmoid(b − λ) = 1
    torch.testing.assert_close(terms["decoder_elbo"], unit["decoder"])
    assert (terms["decoder"] < 2.1 * terms["decoder_elbo"]).all()


def test_a_base_model_of_another_logsnr0_is_refused():
    cfg = preset_config("ci")
    other = preset_config("ci", **{"noise.logsnr": 3.0})
    check_pair(UnifiedLatents(cfg), BaseModel(cfg))
    with pytest.raises(ValueError, match=r"λ\(0\) = 3"):
        check_pair(UnifiedLatents(cfg), BaseModel(other))


def test_sampling_flops_are_counted_per_image_and_per_network_evaluation():
    cfg = preset_config("tiny", **{"sample.decoder_steps": 4, "sample.base_steps": 4})
    torch.manual_seed(0)
    model, base = UnifiedLatents(cfg), BaseModel(cfg)
    before, rng = {k: v.clone() for k, v in model.state_dict().items()}, torch.get_rng_state()
    f = sampling_flops(model, base, cfg, n=3, n_fid=2)
    assert f > 0 and torch.equal(torch.get_rng_state(), rng)  # the run's random stream is untouched
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert sampling_flops(model, base, cfg, n=6, n_fid=4) == 2 * f
    at = {}
    for steps in (8, 12):
        cfg.sample.decoder_steps = cfg.sample.base_steps = steps
        at[steps] = sampling_flops(model, base, cfg, n=3, n_fid=2)
    assert at[12] - at[8] == at[8] - f > 0  # the same network evaluations per added step
    cfg.sample.base_steps = 4
    assert f < sampling_flops(model, base, cfg, n=3, n_fid=2) < at[8]  # the decoder's steps alone


@pytest.mark.parametrize("training", [{"train_flops": 3e12}, {"train_flops": "3e12"}, {}, "bad", None])
def test_the_pipeline_flops_sum_both_stages_and_sampling_or_are_left_out(tmp_path, training):
    folders = []
    for k, summary in ((1, {"train_flops": 2e12}), (2, training)):
        (tmp_path / f"s{k}").mkdir()
        (tmp_path / f"s{k}" / "config.json").write_text(json.dumps({"training": summary}))
        folders.append(tmp_path / f"s{k}")
    counted = pipeline_flops(folders, sampling=1e12)
    if training == {"train_flops": 3e12}:
        assert counted == {"train_flops": 5e12, "pipeline_flops": 6e12}
    else:  # an export without its count (older, or altered): no sum rather than a wrong one
        assert counted == {}


def test_the_reference_features_are_cached_apart_per_inception_precision(class_ordered, tmp_path):
    rows = subsets(class_ordered, 200, 100, seed=1)
    rng, calls = np.random.default_rng(0), []

    def feats(x):
        calls.append(len(x))
        return rng.normal(size=(len(x), 8))

    own = {k: rng.normal(size=(100, 8)) for k in "rg"}
    for precision, new in (("fp32", 2), ("fp32", 0), ("bf16", 2)):  # the reference set and the floor's
        before = len(calls)
        fid(class_ordered, rows, own, feats, tmp_path, precision=precision)
        assert len(calls) - before == new, precision
    assert len(list(tmp_path.glob("inception-bf16-*"))) == 2 and len(list(tmp_path.glob("inception-*"))) == 4
