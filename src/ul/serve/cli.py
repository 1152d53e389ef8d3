"""`ul serve [MODELS...]`: the page on 127.0.0.1 over exported models, each loaded once."""

from __future__ import annotations

import argparse
from pathlib import Path

from ul.common.device import resolve_device
from ul.common.errors import ExportError, report


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="ul serve",
        description="A local web page that puts an image (an upload, or one of the held-out set) through\n"
        "every model given, side by side, ordered by bits: the model's input after its training-time\n"
        "transform, the reconstruction, bits per image and per pixel, PSNR; samples from a generator\n"
        "pair (a stage1/ with its stage2/ beside it); the model cards. Loopback only, nothing from the\n"
        "network. Needs the [serve] extra.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "models",
        nargs="*",
        default=["models"],
        help="export folders, or folders holding stage1/ (and stage2/), e.g. the exports of a sweep's "
        "experiments (default: models)",
    )
    p.add_argument("--port", type=int, default=8765, help="(default: %(default)s)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s, this machine only)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu", help="(default: %(default)s)")
    p.add_argument("--steps", type=int, default=50, help="decoder (and base) sampler steps (default: %(default)s)")
    p.add_argument("--queue", type=int, default=4, help="requests that may wait for the model (default: %(default)s)")
    args = p.parse_args(argv)
    if not 1 <= args.steps <= 1000 or not 0 <= args.queue <= 1000:
        return report(f"--steps {args.steps}, --queue {args.queue}: steps in [1, 1000], queue in [0, 1000]")
    import uvicorn  # missing: ul.cli says which extra installs it

    from ul.serve import app, models

    try:
        served = models.load(models.find(args.models), resolve_device(args.device))
    except (ExportError, OSError, ValueError) as err:
        return report(err, one_line=True)
    print(f"ul serve: {len(served)} model(s): " + ", ".join(f"{s.name} ({s.folder})" for s in served))
    print(f"ul serve: http://{args.host}:{args.port}/  (Ctrl-C stops it)")
    uvicorn.run(
        app.create_app(served, args.steps, args.queue, Path(".")), host=args.host, port=args.port, log_level="warning"
    )
    return 0
