"""The page and its JSON handlers (Starlette). Uploads arrive as the file's raw bytes (the page
posts them with fetch), read with a size cap as they stream; every image goes through the `ul`
commands' policy (ul.inputs), so a refused file gets the same words here as there."""

from __future__ import annotations

import contextlib
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from ul import inputs
from ul.common.errors import ExportError, error_line
from ul.common.images import png_bytes
from ul.data.pixels import imagecheck
from ul.serve import models
from ul.serve.page import PAGE
from ul.serve.queue import Busy, WorkQueue

MAX_UPLOAD = 32 << 20  # bytes: a photo, not a dataset
MAX_SAMPLES = 16
BACKGROUNDS = ("refuse", *imagecheck.BACKGROUNDS)


def _int(request: Request, key: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(key, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{key}={raw!r}: not a whole number") from None
    if not lo <= value <= hi:
        raise ValueError(f"{key}={value}: must be in [{lo}, {hi}]")
    return value


def _error(err: BaseException | str, status: int) -> JSONResponse:
    return JSONResponse({"error": error_line(err, one_line=True)}, status_code=status)


async def _body(request: Request) -> bytes:
    """The upload, at most MAX_UPLOAD bytes (refused as it streams, whatever Content-Length says)."""
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_UPLOAD:
            raise OverflowError(f"upload: over {MAX_UPLOAD:,} bytes; an image for this page is at most that")
    if not data:
        raise ValueError("upload: empty; choose an image file")
    return bytes(data)


def create_app(served: list[models.Served], steps: int = 50, queue_size: int = 4, root: Path = Path(".")) -> Starlette:
    """The app over `served` (loaded once, by the caller); `steps`: the decoder's sampler steps."""
    work = WorkQueue(queue_size)
    held = models.held_out(root)

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(PAGE)

    async def listing(request: Request) -> JSONResponse:
        rows = [
            {"index": i, "model": s.name, "folder": str(s.folder), "transform": s.transform, "samples": bool(s.stage2)}
            for i, s in enumerate(served)
        ]
        return JSONResponse({"models": rows, "held_out": len(held), "steps": steps, "max_upload": MAX_UPLOAD})

    async def reconstruct(request: Request) -> JSONResponse:
        try:
            seed = _int(request, "seed", 0, 0, 2**31 - 1)
            background = request.query_params.get("background", "refuse")
            if background not in BACKGROUNDS:
                raise ValueError(f"background={background!r}: one of {', '.join(BACKGROUNDS)}")
            name = request.query_params.get("name", "upload")[:200]
            data = await _body(request)
            return JSONResponse(await work.run(models.reconstruct_all, served, data, name, seed, steps, background))
        except OverflowError as err:
            return _error(err, 413)
        except Busy as err:
            return _error(err, 503)
        except (inputs.InputError, ValueError) as err:
            return _error(err, 400)

    async def sample(request: Request) -> JSONResponse:
        try:
            s = served[_int(request, "model", 0, 0, len(served) - 1)]
            n = _int(request, "n", 8, 1, MAX_SAMPLES)
            seed = _int(request, "seed", 0, 0, 2**31 - 1)
            return JSONResponse(await work.run(models.sample, s, n, seed, steps))
        except Busy as err:
            return _error(err, 503)
        except (ExportError, ValueError) as err:
            return _error(err, 400)

    async def card(request: Request) -> Response:
        try:
            s = served[_int(request, "model", 0, 0, len(served) - 1)]
        except ValueError as err:
            return _error(err, 400)
        return Response(models.card(s), media_type="text/plain; charset=utf-8")

    async def held_out(request: Request) -> Response:
        try:
            k = _int(request, "k", 0, 0, max(0, len(held) - 1))
        except ValueError as err:
            return _error(err, 400)
        if not held:
            return _error("no held-out images here (run the pipeline: data/pixels/test)", 404)
        return Response(png_bytes(held[k][None], nrow=1, pad=0), media_type="image/png")

    app = Starlette(
        routes=[
            Route("/", page),
            Route("/api/models", listing),
            Route("/api/reconstruct", reconstruct, methods=["POST"]),
            Route("/api/sample", sample, methods=["POST"]),
            Route("/api/card", card),
            Route("/api/held-out", held_out),
        ],
        lifespan=_closing(work),
    )
    app.state.work = work
    return app


def _closing(work: WorkQueue):
    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        work.close()

    return lifespan
