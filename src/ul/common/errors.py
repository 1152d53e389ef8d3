"""Errors that stage entry points turn into one readable line (kept free of heavy imports)."""


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; the run stopped before the optimizer step, checkpoints intact."""


class ExportError(ValueError):
    """An exported model folder is missing, incomplete, corrupt or of another kind; names the path."""


def redact_urls(text: str) -> str:
    """`text` with the user info (`user:password@`) of every URL in it removed: what every
    message that may carry an endpoint or source URL goes through before it is shown."""
    import re

    return re.sub(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@'\"]*@", r"\1", text)
