"""Errors that stage entry points and commands turn into one readable line, and the one way that
line is written (kept free of heavy imports)."""

import re
import sys

# EX_TEMPFAIL (sysexits.h): a stage's own verdict that trying again later may work (a server or the
# network failed). Flows read it from the exit status, never from the message, which may carry
# file names chosen by whoever made the data.
TEMPFAIL = 75


class ConfigError(ValueError):
    """A parameter is unknown, mistyped or out of range; the message names key and value."""


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; the run stopped before the optimizer step, checkpoints intact."""


class ExportError(ValueError):
    """An exported model folder is missing, incomplete, corrupt or of another kind; names the path."""


def redact_urls(text: str) -> str:
    """`text` with the user info (`user:password@`) of every URL in it removed: what every
    message that may carry an endpoint or source URL goes through before it is shown."""
    return re.sub(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@'\"]*@", r"\1", text)


def redact_url(url: str) -> str:
    """One URL without its user info (user:password@) and query string, safe to print; a text that
    may hold URLs goes through `redact_urls`."""
    import urllib.parse

    p = urllib.parse.urlsplit(url)
    host = p.hostname or ""
    if p.port:
        host += f":{p.port}"
    return urllib.parse.urlunsplit((p.scheme, host, p.path, "", ""))


def error_line(err: BaseException | str, one_line: bool = False) -> str:
    """`error: ...` for an expected failure: URL user info removed, control characters escaped,
    and any further line of the message indented (or dropped, `one_line`), so that no text in it
    (a file name, a server's answer) can forge a line of its own in a log that a flow reads."""
    text = redact_urls(str(err)) or type(err).__name__
    lines = ["".join(c if c.isprintable() else ascii(c)[1:-1] for c in ln) for ln in text.splitlines()]
    lines = lines[:1] if one_line else lines
    return "error: " + "\n".join([lines[0]] + [ln if ln[:1].isspace() else "  " + ln for ln in lines[1:]])


def report(err: BaseException | str, one_line: bool = False) -> int:
    """Print `error_line(err)` to stderr; returns the exit status of an expected failure, 1."""
    print(error_line(err, one_line), file=sys.stderr)
    return 1
