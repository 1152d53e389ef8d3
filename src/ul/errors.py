"""Errors that stage entry points turn into one readable line (kept free of heavy imports)."""


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; the run stopped before the optimizer step, checkpoints intact."""


class ExportError(ValueError):
    """An exported model folder is missing, incomplete, corrupt or of another kind; names the path."""
