"""The data layer: fetch a source into encoded files + a manifest, decode them into uint8 shards, validate both.

The submodules are imported lazily by their users (DALI and Great Expectations are slow to import);
this package only defines the error type they all raise, so that stages can catch one class.
"""


class DataError(ValueError):
    """A data source, archive or image is unusable; the message says which and why (never a secret)."""
