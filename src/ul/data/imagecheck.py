"""Find unreadable images by path before (and, if needed, after) the batch decoder sees them.

DALI reports a failure per batch, not per file, and stops the pipeline; checking files first is
what lets `decode` name the bad file and, with `on_error=skip`, leave it out. `quick` is cheap
(headers, PNG chunk CRCs, the JPEG end marker); `full` decodes every pixel and is used only on
the files of a batch that DALI rejected although they passed `quick`.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

FORMATS = ("PNG", "JPEG")
JPEG_EOI = b"\xff\xd9"


def _describe(err: Exception) -> str:
    return f"{type(err).__name__}: {err}".strip().rstrip(":")


def quick(path: str | Path) -> str | None:
    """None if `path` looks like a complete PNG/JPEG, else the reason it does not."""
    try:
        with Image.open(path) as im:
            fmt, (w, h) = im.format, im.size
            im.verify()  # PNG: walks every chunk and checks its CRC; JPEG: headers only
    except Exception as err:  # Pillow raises many types (SyntaxError, OSError, struct.error, ...)
        return _describe(err)
    if fmt not in FORMATS:
        return f"unsupported format {fmt} (only PNG and JPEG)"
    if w == 0 or h == 0:
        return f"empty image ({w}x{h})"
    if fmt == "JPEG":
        with open(path, "rb") as f:
            f.seek(max(0, Path(path).stat().st_size - 64))
            if JPEG_EOI not in f.read():
                return "truncated JPEG (no end-of-image marker)"
    return None


def full(path: str | Path) -> str | None:
    """None if every pixel of `path` decodes, else the reason."""
    try:
        with Image.open(path) as im:
            im.load()
    except Exception as err:
        return _describe(err)
    return None
