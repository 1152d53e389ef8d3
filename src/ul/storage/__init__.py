"""Where data and models live outside the work tree: lakeFS (its REST API for refs and commits, its
S3 gateway for bytes) and the release of trained models with a model card.

lakeFS endpoints and keys come from the environment only, never from params.yaml, and never appear
in messages or logs. The one rule, for every reader (`ul data pin`, `ul release`, the fetch stage's
`lakefs://` sources, the ul-watch flow):
    LAKEFS_HOST                  the REST API (e.g. http://lakefs:8000; the SDK adds /api/v1)
    LAKEFS_ENDPOINT              the S3 gateway; unset = LAKEFS_HOST (lakeFS serves both on one port)
    LAKEFS_ACCESS_KEY_ID, LAKEFS_SECRET_ACCESS_KEY    the keys of both
"""


class StorageError(RuntimeError):
    """lakeFS or the S3 gateway refused or could not be reached; the message says which (never a secret).
    `transient`: the server could not be reached or failed (5xx), so trying again later may work."""

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient
