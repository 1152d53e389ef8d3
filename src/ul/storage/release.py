"""Release the trained models to a lakeFS branch, with a model card, as one commit that records where
they came from (git commit, dvc.lock hash, data commit, metrics).

    ul release lakefs://models/main/ul-fashion-mnist [--source-ref main] [--message ...]

Uploads, under `<path>/` on the branch (created from --source-ref if missing):
    stage1/model.pt   the encoder, prior and diffusion decoder (EMA weights + config; `ul.export.load`)
    stage2/model.pt   the base model over latents
    MODEL_CARD.md     metrics, provenance and params (markdown)
    metrics.json  params.yaml  dvc.lock
Bytes go through the S3 gateway (multipart for large files); the branch and the commit, whose
metadata carries the provenance, go through the REST API. `provenance()` and `metrics_table()` are
also what the Prefect flows put into their summaries.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import yaml

from ul.storage import StorageError
from ul.storage.lakefs import COMMIT_ID, LakeFSPath, call, client, gateway

FILES = {  # release name -> (path in the work tree, what it is)
    "stage1/model.pt": ("models/stage1/model.pt", "encoder + prior + diffusion decoder (EMA weights, config)"),
    "stage2/model.pt": ("models/stage2/model.pt", "base model over latents (EMA weights, config)"),
    "metrics.json": ("eval/metrics.json", "evaluation metrics"),
    "params.yaml": ("params.yaml", "the parameters of the run"),
    "dvc.lock": ("dvc.lock", "DVC lock file: hashes of every stage's inputs and outputs"),
}
# (key in eval/metrics.json, label) in the order of the tables
HEADLINE = (("psnr_db", "PSNR (dB)"), ("rfid", "rFID"), ("gfid", "gFID"), ("fid_num_samples", "FID samples (N)"),
            ("latent_bits_per_image", "latent bits / image"), ("latent_bits_per_dim", "latent bits / dim"),
            ("latent_bits_per_pixel", "latent bits / pixel"))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _git(root: Path, *args: str) -> Optional[str]:
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


def load_metrics(root: str | Path = ".") -> dict:
    path = Path(root) / "eval" / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else {}


def metrics_rows(metrics: dict) -> list:
    """[{"metric", "value"}] with the headline metrics first, then every other scalar."""
    labels = dict(HEADLINE)
    keys = [k for k, _ in HEADLINE if k in metrics] + sorted(k for k in metrics if k not in labels)
    return [{"metric": k, "value": metrics[k]} for k in keys if isinstance(metrics[k], (int, float, str, bool))]


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def metrics_table(metrics: dict) -> str:
    """The metrics as a markdown table (headline metrics first)."""
    if not metrics:
        return "_no eval/metrics.json_\n"
    labels = dict(HEADLINE)
    rows = "".join(f"| {labels.get(r['metric'], r['metric'])} | {_fmt(r['value'])} |\n" for r in metrics_rows(metrics))
    return "| metric | value |\n|---|---|\n" + rows


def provenance_lines(prov: dict) -> str:
    dirty = {True: " (work tree modified)", False: "", None: ""}[prov.get("git_dirty")]
    if prov.get("data_commit"):
        data = f"`{prov['data_source']}` (lakeFS commit `{prov['data_commit']}`)"
    else:
        data = f"`{prov.get('data_source')}` (not a pinned lakeFS commit)"
    return (f"- git commit: `{prov.get('git_commit') or 'unknown'}`{dirty}\n"
            f"- dvc.lock sha256: `{prov.get('dvc_lock_sha256') or 'none'}`\n"
            f"- data: {data}\n"
            f"- preset: `{prov.get('preset')}`\n")


def model_card(prov: dict, metrics: dict, params_text: str, files: dict, released_at: str) -> str:
    """The markdown model card: what the files are, how good they are, and where they came from."""
    n = metrics.get("fid_num_samples")
    file_rows = "".join(f"| `{name}` | {what} | {size} | `{sha[:16]}` |\n" for name, (what, size, sha) in files.items())
    return (
        "# Unified Latents: autoencoder and base model\n\n"
        "A latent diffusion autoencoder trained with Unified Latents (a diffusion prior regularises the\n"
        "encoder's latents, a diffusion decoder reconstructs the image), plus a base diffusion model over\n"
        f"those latents. Released {released_at}.\n\n"
        "## Files\n\n| file | what | bytes | sha256 (first 16) |\n|---|---|---|---|\n" + file_rows +
        "\n## Evaluation (held-out split)\n\n" + metrics_table(metrics) +
        (f"\nFID is computed with N = {n} samples; small-N FID is biased upward, compare only at equal N.\n" if n else "") +
        "\n## Provenance\n\n" + provenance_lines(prov) +
        "\nReproduce: check out the git commit, then `dvc repro` (the data commit is in params.yaml).\n"
        "\n## Loading\n\n```python\nfrom ul import export\nul_model, cfg = export.load(\"stage1/model.pt\")   # encode / decode\n"
        "base, _ = export.load(\"stage2/model.pt\")          # sample latents\n```\n"
        "\n## Parameters\n\n```yaml\n" + params_text.rstrip() + "\n```\n")


def commit_metadata(prov: dict, metrics: dict) -> dict:
    """lakeFS commit metadata (string values only): provenance + headline metrics."""
    meta = {f"ul.{k}": str(v) for k, v in prov.items() if v is not None}
    meta.update({f"ul.{k}": repr(metrics[k]) if isinstance(metrics[k], float) else str(metrics[k])
                 for k, _ in HEADLINE if k in metrics})
    return meta


def release(target: str, root: str | Path = ".", source_ref: str = "main", message: Optional[str] = None,
            lakefs_client=None, s3=None) -> dict:
    """Upload FILES and MODEL_CARD.md under `target` (lakefs://repo/branch[/path]) and commit them;
    returns {"commit", "url" (the released path at that commit), "files"}."""
    import lakefs
    from botocore.exceptions import BotoCoreError, ClientError

    root = Path(root)
    loc = LakeFSPath.parse(target)
    if loc.pinned:
        raise StorageError(f"{target}: release to a branch, not to a commit id")
    missing = [src for src, _ in FILES.values() if not (root / src).is_file()]
    if missing:
        raise StorageError(f"nothing to release: {', '.join(missing)} missing in {root.resolve()} (run `dvc repro` first)")

    prov, metrics = provenance(root), load_metrics(root)
    released_at = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    files = {name: (what, (root / src).stat().st_size, sha256_file(root / src)) for name, (src, what) in FILES.items()}
    card = model_card(prov, metrics, (root / "params.yaml").read_text(), files, released_at)

    cl = lakefs_client or client()
    branch = lakefs.Branch(loc.repo, loc.ref, client=cl)
    call(f"create branch {loc.repo}/{loc.ref} from {source_ref}", branch.create, source_ref, exist_ok=True)

    s3 = s3 or gateway()
    key = (lambda name: f"{loc.ref}/{loc.path}/{name}" if loc.path else f"{loc.ref}/{name}")
    try:
        for name, (src, _) in FILES.items():
            s3.upload_file(str(root / src), loc.repo, key(name))
        s3.put_object(Bucket=loc.repo, Key=key("MODEL_CARD.md"), Body=card.encode(), ContentType="text/markdown")
    except ClientError as err:
        e = err.response.get("Error", {})
        raise StorageError(f"upload to {target} through the S3 gateway: {e.get('Code', '?')}: {e.get('Message', '')}") from None
    except BotoCoreError as err:
        raise StorageError(f"upload to {target} through the S3 gateway: {type(err).__name__}: {err}") from None

    msg = message or f"Release Unified Latents models (git {str(prov.get('git_commit'))[:12]})"
    ref = call(f"commit to {loc.repo}/{loc.ref}", branch.commit, msg, metadata=commit_metadata(prov, metrics))
    return {"commit": ref.id, "url": str(loc.at(ref.id)), "files": sorted([*FILES, "MODEL_CARD.md"]), "card": card}
