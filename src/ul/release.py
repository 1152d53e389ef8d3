"""Release the trained models to a lakeFS branch, as one commit that records where they came from
(git commit, dvc.lock hash, data commit, metrics).

    ul release lakefs://models/main/ul-fashion-mnist [--source-ref main] [--message ...]

Uploads, under `<path>/` on the branch (created from --source-ref if missing), the bundle that
`ul export` writes (ul.artifacts.bundle). Bytes go through the S3 gateway (multipart for large
files); the branch and the commit, whose metadata carries the provenance, go through the REST API.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ul.artifacts import model_card
from ul.artifacts.bundle import provenance, write_bundle
from ul.artifacts.model_card import HEADLINE
from ul.common.errors import ExportError
from ul.storage import StorageError
from ul.storage.lakefs import LakeFSPath, call, client, gateway


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
        try:
            names = write_bundle(root, Path(tmp), prov, metrics)
        except ExportError as err:
            raise StorageError(f"nothing released: {err}") from None
        branch = lakefs.Branch(loc.repo, loc.ref, client=lakefs_client or client())
        call(f"create branch {loc.repo}/{loc.ref} from {source_ref}", branch.create, source_ref, exist_ok=True)
        _upload(Path(tmp), names, loc, target, s3)
    msg = message or f"Release Unified Latents models (git {str(prov.get('git_commit'))[:12]})"
    ref = call(f"commit to {loc.repo}/{loc.ref}", branch.commit, msg, metadata=commit_metadata(prov, metrics))
    return {"commit": ref.id, "url": str(loc.at(ref.id)), "files": sorted(names)}


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
