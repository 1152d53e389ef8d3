"""Release the trained models to a lakeFS branch, as one commit that records where they came from
(git commit, dvc.lock hash, data commit, metrics).

    ul release lakefs://models/main/ul-fashion-mnist [--source-ref main] [--message ...]

Uploads, under `<path>/` on the branch (created from --source-ref if missing), the bundle that
`ul export` writes (`ul.export.bundle`):
    stage1/{model.safetensors,config.json,README.md}   the autoencoder; README.md is its model card
    stage2/{model.safetensors,config.json,README.md}   the base model over latents
    metrics.json  params.yaml  dvc.lock
Bytes go through the S3 gateway (multipart for large files); the branch and the commit, whose
metadata carries the provenance, go through the REST API.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import yaml

from ul import export, model_card
from ul.data.manifest import sha256_file
from ul.model_card import HEADLINE
from ul.storage import StorageError
from ul.storage.lakefs import COMMIT_ID, LakeFSPath, call, client, gateway

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
    params = yaml.safe_load((root / "params.yaml").read_text()) if (root / "params.yaml").exists() else {}
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


def commit_metadata(prov: dict, metrics: dict) -> dict:
    """lakeFS commit metadata (string values only): provenance + headline metrics."""
    meta = {f"ul.{k}": str(v) for k, v in prov.items() if v is not None}
    meta.update(
        {
            f"ul.{k}": repr(metrics[k]) if isinstance(metrics[k], float) else str(metrics[k])
            for k, _ in HEADLINE
            if k in metrics
        }
    )
    return meta


def release(
    target: str,
    root: str | Path = ".",
    source_ref: str = "main",
    message: str | None = None,
    lakefs_client=None,
    s3=None,
) -> dict:
    """Upload the `ul export` bundle under `target` (lakefs://repo/branch[/path]) and commit it;
    returns {"commit", "url" (the released path at that commit), "files"}."""
    import lakefs

    root = Path(root)
    loc = LakeFSPath.parse(target)
    if loc.pinned:
        raise StorageError(f"{target}: release to a branch, not to a commit id")
    prov, metrics = provenance(root), model_card.load_metrics(root)
    with tempfile.TemporaryDirectory(prefix="ul-release-") as tmp:
        names = write_bundle(root, Path(tmp), prov, metrics)
        branch = lakefs.Branch(loc.repo, loc.ref, client=lakefs_client or client())
        call(f"create branch {loc.repo}/{loc.ref} from {source_ref}", branch.create, source_ref, exist_ok=True)
        _upload(Path(tmp), names, loc, target, s3)
    msg = message or f"Release Unified Latents models (git {str(prov.get('git_commit'))[:12]})"
    ref = call(f"commit to {loc.repo}/{loc.ref}", branch.commit, msg, metadata=commit_metadata(prov, metrics))
    return {"commit": ref.id, "url": str(loc.at(ref.id)), "files": sorted(names)}


def write_bundle(root: Path, out: Path, prov: dict | None = None, metrics: dict | None = None) -> list[str]:
    """`ul export`: both exports with full model cards, plus metrics, params and dvc.lock.
    `prov` and `metrics` are gathered from `root` unless the caller already has them."""
    missing = [p for p in (*MODELS, *EXTRA.values()) if not (root / p).exists()]
    if missing:
        raise StorageError(
            f"nothing to release: {', '.join(missing)} missing in {root.resolve()} (run `dvc repro` first)"
        )
    prov = provenance(root) if prov is None else prov
    metrics = model_card.load_metrics(root) if metrics is None else metrics
    try:
        return export.bundle(
            root / MODELS[0], root / MODELS[1], out, metrics, prov, {k: root / v for k, v in EXTRA.items()}
        )
    except export.ExportError as err:
        raise StorageError(str(err)) from None


def _upload(folder: Path, names: list[str], loc: LakeFSPath, target: str, s3=None) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = s3 or gateway()
    try:
        for name in names:
            key = f"{loc.ref}/{loc.path}/{name}" if loc.path else f"{loc.ref}/{name}"
            s3.upload_file(str(folder / name), loc.repo, key)
    except ClientError as err:
        e = err.response.get("Error", {})
        raise StorageError(
            f"upload to {target} through the S3 gateway: {e.get('Code', '?')}: {e.get('Message', '')}"
        ) from None
    except BotoCoreError as err:
        raise StorageError(f"upload to {target} through the S3 gateway: {type(err).__name__}: {err}") from None
