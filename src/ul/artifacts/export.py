"""Exported models: a folder anyone can load, with no pickle anywhere.

    models/stage1/                  (and models/stage2/)
        model.safetensors           EMA weights (safetensors: tensors only, cannot run code)
        config.json                 the class, the full config that built it, the training summary
                                    and `latents` (shape, λ(0), α0, σ0, z_clean's statistics, the
                                    scale for a downstream diffusion model, the rate: latent_stats)
        README.md                   the model card (ul.artifacts.model_card)

This is what caching, evaluation, sampling, `ul release` and `ul.Autoencoder.load` read; the
training checkpoint (`ckpt.pt`, with optimizer and RNG) beside it is for resuming only.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import nn

from ul.artifacts import model_card
from ul.common import atomic, bounded
from ul.common.config import Config, ConfigError, from_dict, to_dict
from ul.common.errors import ExportError
from ul.common.hashing import sha256_bytes, sha256_file
from ul.common.regular import NotRegularFile, open_regular
from ul.core.klvae import KLVAE
from ul.core.model import BaseModel, UnifiedLatents

WEIGHTS, CONFIG, CARD = "model.safetensors", "config.json", "README.md"
FORMAT = "ul-export/1"
MAX_CONFIG_BYTES = 1 << 20
CLASSES = {"UnifiedLatents": UnifiedLatents, "KLVAE": KLVAE, "BaseModel": BaseModel}
STAGE1 = (UnifiedLatents, KLVAE)  # what a stage-1 export may hold


def save(model: nn.Module, cfg: Config, folder: str | Path, training: dict, latents: dict | None = None) -> Path:
    """Write weights, config (with the `training` summary and, for a stage-1 model, the `latents`
    section of ul.artifacts.latent_stats) and model card into `folder`, each file atomically."""
    folder = Path(folder)
    kind = type(model).__name__
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    weights = canonical(safetensors_bytes(state, metadata={"format": FORMAT, "class": kind}))
    atomic.write_bytes(folder / WEIGHTS, weights)
    meta = {"format": FORMAT, "class": kind, "config": to_dict(cfg), "training": training}
    meta["weights_sha256"] = sha256_bytes(weights)  # checked at every load: a damaged or altered file is refused
    if latents is not None:
        meta["latents"] = latents
    atomic.write_text(folder / CONFIG, json.dumps(meta, indent=1, sort_keys=True) + "\n")
    atomic.write_text(folder / CARD, model_card.card(kind, cfg, training, folder=str(folder), latents=latents))
    return folder


def canonical(data: bytes) -> bytes:
    """The same safetensors file with its JSON header in one fixed order (metadata keys sorted,
    tensors by offset): the writer keeps the metadata in a Rust HashMap, whose order changes from
    process to process, so equal weights would get a different sha256 on every run."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__", None)
    ordered = {"__metadata__": dict(sorted(meta.items()))} if meta is not None else {}
    ordered |= dict(sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]))
    text = json.dumps(ordered, separators=(",", ":")).encode()
    if len(text) > n:  # cannot happen (the same content, reordered); keep the writer's bytes then
        return data
    return data[:8] + text + b" " * (n - len(text)) + data[8 + n :]


def bundle(stage1: Path, stage2: Path, out: Path, metrics: dict, prov: dict, extra: dict, root: Path) -> list[str]:
    """A shareable copy of both exports whose model cards carry the evaluation and provenance,
    plus `extra` files ({name in the bundle: source path}); returns the bundle's file names. Only
    regular files inside the work tree `root` are copied (`copy_from_tree`)."""
    names = []
    for name, src in (("stage1", stage1), ("stage2", stage2)):
        cls, cfg = read_config(src)
        meta = read_meta(src)
        (out / name).mkdir(parents=True, exist_ok=True)
        for f in (WEIGHTS, CONFIG):
            copy_from_tree(src / f, out / name / f, root)
        text = model_card.card(
            cls.__name__, cfg, meta.get("training", {}), metrics, prov, name, "stage1", meta.get("latents")
        )
        (out / name / CARD).write_text(text, encoding="utf-8")
        names += [f"{name}/{f}" for f in (WEIGHTS, CONFIG, CARD)]
    for name, src in extra.items():
        copy_from_tree(src, out / name, root)
        names.append(name)
    return names


def copy_from_tree(src: Path, dst: Path, root: Path) -> None:
    """Copy `src` only if it is a regular file whose real path lies inside `root` (a link may point
    within the tree, as DVC's symlink cache does, never out of it), read from the descriptor that
    was checked, so a file swapped for a link after the check is not followed."""
    real, top = Path(os.path.realpath(src)), Path(os.path.realpath(root))
    if not real.is_relative_to(top):
        raise ExportError(f"{src}: leads out of the work tree {top} (to {real}); only files inside it are exported")
    try:
        f = open_regular(real, nofollow=True)
    except FileNotFoundError:
        raise ExportError(f"{src}: missing") from None
    except NotRegularFile:
        raise ExportError(f"{src}: not a regular file; only regular files are exported") from None
    except OSError as err:
        raise ExportError(f"{src}: cannot be read ({err.strerror})") from None
    with f, open(dst, "xb") as out:
        shutil.copyfileobj(f, out)


def read_meta(folder: str | Path) -> dict:
    """config.json of an export as it is (bounded in size, a JSON object)."""
    path = Path(folder) / CONFIG
    _require_file(path)
    try:
        meta = bounded.read_json(path, MAX_CONFIG_BYTES, "model config")
    except bounded.ParseError as err:
        raise ExportError(f"{err} (not a ul model config)") from None
    if not isinstance(meta, dict):
        raise ExportError(f"{path}: not a ul model config (a JSON {type(meta).__name__}, not an object)")
    return meta


def read_config(folder: str | Path, meta: dict | None = None) -> tuple[type, Config]:
    """The class and config of an export (from its `meta`, when the caller has read it), checked
    like params.yaml."""
    path = Path(folder) / CONFIG
    meta = read_meta(folder) if meta is None else meta
    try:
        kind = meta.get("class")
        if kind not in CLASSES:
            raise ExportError(
                f"{path}: unknown model class {kind!r}; this version of ul loads {', '.join(sorted(CLASSES))}"
            )
        return CLASSES[kind], from_dict(_renamed(meta["config"]))
    except ExportError:
        raise
    except (ValueError, KeyError, TypeError, ConfigError) as err:
        raise ExportError(f"{path}: not a ul model config ({type(err).__name__}: {err})".splitlines()[0]) from None


def _renamed(config: dict) -> dict:
    """An export's config in today's names: exports written before the config section `ul` and
    the value `latent: ul` were renamed `unified` (the package is `ul`) still load."""
    if not isinstance(config, dict):
        return config
    config = {("unified" if k == "ul" and "unified" not in config else k): v for k, v in config.items()}
    if config.get("latent") == "ul":
        config["latent"] = "unified"
    return config


def load(folder: str | Path, device="cpu", expect: type | tuple | None = None) -> tuple[nn.Module, Config]:
    """The model of an export folder, in eval mode, without gradients, on `device`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ExportError(f"{folder}: no exported model folder here (did the training stage run?)")
    meta = read_meta(folder)
    cls, cfg = read_config(folder, meta)
    if expect is not None and not issubclass(cls, expect):
        names = " or ".join(c.__name__ for c in (expect if isinstance(expect, tuple) else (expect,)))
        raise ExportError(f"{folder}: holds a {cls.__name__}, expected a {names}")
    path = folder / WEIGHTS
    _require_file(path)
    _check_shapes(cls, cfg, path)  # before anything is allocated: a config may ask for a huge network
    recorded = meta.get("weights_sha256")  # exports before it was recorded load unchecked
    if recorded is not None and recorded != sha256_file(path):
        raise ExportError(f"{path}: sha256 differs from the weights_sha256 {CONFIG} records: damaged or altered")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ExportError(f"{path}: not readable safetensors ({err})".splitlines()[0]) from None
    bad = next((k for k, v in state.items() if v.is_floating_point() and not v.isfinite().all()), None)
    if bad is not None:
        raise ExportError(f"{path}: tensor {bad} holds NaN or infinite values; the export is damaged")
    model = cls(cfg)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ExportError(f"{path}: weights do not fit {CONFIG} ({str(err).splitlines()[0]})") from None
    return model.to(device).eval().requires_grad_(False), cfg


def _check_shapes(cls: type, cfg: Config, path: Path) -> None:
    """The network `cfg` builds (on the meta device: shapes only, no memory) must have exactly the
    tensors of the weights file, by name and shape, read from its header (no tensor is loaded)."""
    import torch
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            stored = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except (SafetensorError, OSError, ValueError) as err:
        raise ExportError(f"{path}: not readable safetensors ({err})".splitlines()[0]) from None
    with torch.device("meta"):
        wanted = {k: tuple(v.shape) for k, v in cls(cfg).state_dict().items()}
    if stored.keys() != wanted.keys():
        extra, missing = sorted(stored.keys() - wanted.keys()), sorted(wanted.keys() - stored.keys())
        raise ExportError(
            f"{path}: tensors do not match {CONFIG} (missing {missing[:3]}, unexpected {extra[:3]}); "
            "the export is damaged or its files come from different models"
        )
    for k, shape in wanted.items():
        if stored[k] != shape:
            raise ExportError(
                f"{path}: tensor {k} has shape {list(stored[k])}, {CONFIG} builds {list(shape)}; "
                "the export is damaged or its files come from different models"
            )


def identity(folder: str | Path) -> str:
    """The sha256 of the weights file: what a latent file records to name the model that made it."""
    return sha256_file(Path(folder) / WEIGHTS)


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise ExportError(f"{path}: missing (an export folder holds {WEIGHTS}, {CONFIG} and {CARD})")
