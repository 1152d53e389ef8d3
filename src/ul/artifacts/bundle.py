"""The `ul export` bundle of a pipeline work tree: both exports with full model cards (evaluation
and provenance), plus metrics.json, params.yaml and dvc.lock — written locally; `ul release`
(ul.release) uploads it.

    stage1/{model.safetensors,config.json,README.md}   the autoencoder; README.md is its model card
    stage2/{model.safetensors,config.json,README.md}   the base model over latents
    metrics.json  params.yaml  dvc.lock
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from ul.artifacts import export, model_card
from ul.common import bounded
from ul.common.errors import ExportError
from ul.common.hashing import sha256_file
from ul.storage.lakefs import COMMIT_ID, LakeFSPath

EXTRA = {"metrics.json": "eval/metrics.json", "params.yaml": "params.yaml", "dvc.lock": "dvc.lock"}
MODELS = ("models/stage1", "models/stage2")


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def provenance(root: str | Path = ".") -> dict:
    """Git commit (and whether tracked files differ from it), dvc.lock hash, data source and commit."""
    root = Path(root)
    try:
        params = (
            bounded.read_yaml(root / "params.yaml", what="parameter file") if (root / "params.yaml").exists() else {}
        )
    except bounded.ParseError as err:
        raise ExportError(str(err)) from None
    source = (params.get("data") or {}).get("source")
    data_commit = None
    if isinstance(source, str) and source.startswith("lakefs://"):
        ref = LakeFSPath.parse(source).ref
        data_commit = ref if COMMIT_ID.fullmatch(ref) else None
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": _git(root, "rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "dvc_lock_sha256": sha256_file(root / "dvc.lock") if (root / "dvc.lock").exists() else None,
        "data_source": source,
        "data_commit": data_commit,
        "preset": params.get("preset"),
    }


def write_bundle(root: Path, out: Path, prov: dict | None = None, metrics: dict | None = None) -> list[str]:
    """`ul export`: both exports with full model cards, plus metrics, params and dvc.lock.
    `prov` and `metrics` are gathered from `root` unless the caller already has them."""
    missing = [p for p in (*MODELS, *EXTRA.values()) if not (root / p).exists()]
    if missing:
        raise ExportError(
            f"nothing to export: {', '.join(missing)} missing in {root.resolve()} (run `dvc repro` first)"
        )
    prov = provenance(root) if prov is None else prov
    metrics = model_card.load_metrics(root) if metrics is None else metrics
    return export.bundle(
        root / MODELS[0], root / MODELS[1], out, metrics, prov, {k: root / v for k, v in EXTRA.items()}, root
    )
