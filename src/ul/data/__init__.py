"""The data layer: fetch a source into tar shards of its encoded files + a manifest (ul.data.rawshards),
decode them into uint8 shards, validate both.

The submodules are imported lazily by their users (DALI and Great Expectations are slow to import);
this package only defines the error type they all raise, so that stages can catch one class.
"""


class DataError(ValueError):
    """A data source, archive or image is unusable; the message says which and why (never a secret).
    `transient`: the source could not be reached or failed mid-transfer, so trying again may work."""

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient


def shown(name: str) -> str:
    """`name` as it may appear in a message or a log line: unchanged when it is printable UTF-8,
    else Python's escaped repr (a newline, a control character or a byte that is not UTF-8 can
    neither break the line nor forge another one in a log)."""
    if name.isprintable():
        try:
            name.encode("utf-8")
            return name
        except UnicodeEncodeError:  # os.fsdecode's surrogate escapes: bytes that are not UTF-8
            pass
    return ascii(name)


def bad_name(name: str) -> str | None:
    """Why a file name cannot be data (None when it can): control characters, or not UTF-8."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "file name is not UTF-8"
    if not name.isprintable():
        return "file name has control characters"
    return None
