"""The data layer's shared names, imported by fetch, pixels and validate alike (and importing none
of them): the error type, how a file name is shown and when it is refused, the decoded folder's
file names, and the refusal of unreadable files."""

from __future__ import annotations

from pathlib import Path

SKIPPED = "skipped.json"  # decoded folder: the files left out, with why
PATHS = "paths.txt"  # decoded shard folder: the manifest path of each row
MAX_LISTED = 10  # files named in one refusal


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


class BackendError(RuntimeError):
    """Decoding failed at or after file `first` of the list (DALI only knows the batch)."""

    def __init__(self, first: int, message: str):
        super().__init__(message)
        self.first = first


def refuse(bad: dict[str, str], raw_dir: Path, noun: str = "image") -> None:
    """Stop with one DataError naming the unreadable files (`noun`: what they are) and why."""
    listed = "; ".join(f"{shown(p)} ({r})" for p, r in list(bad.items())[:MAX_LISTED])
    more = f"; and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
    raise DataError(
        f"{len(bad)} unreadable {noun}(s) in {raw_dir}: {listed}{more}. "
        "Fix or remove them, or set pixels.on_error=skip to leave them out"
    )
