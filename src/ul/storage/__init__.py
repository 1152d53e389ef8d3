"""Where data and models live outside the work tree: lakeFS (its REST API for refs and commits, its
S3 gateway for bytes) and the release of trained models with a model card.

Endpoints and keys come from the environment only (LAKEFS_HOST, LAKEFS_ACCESS_KEY_ID,
LAKEFS_SECRET_ACCESS_KEY; LAKEFS_ENDPOINT for the S3 gateway when it differs from LAKEFS_HOST),
never from params.yaml, and never appear in messages or logs.
"""


class StorageError(RuntimeError):
    """lakeFS or the S3 gateway refused or could not be reached; the message says which (never a secret)."""
