"""What every thin stage entry point shares: `--params`/`--metrics` arguments, the config load,
the metrics file, and turning expected errors into one `error: ...` line and exit status 1 (75 when worth a retry)."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

from ul.common import atomic
from ul.common.config import Config, ConfigError, LaunchConfig, load
from ul.common.errors import TEMPFAIL, ExportError, NonFiniteLossError, error_line
from ul.common.launch import relaunch
from ul.data.layout import DataError


def parser(stage: str, doc: str) -> argparse.ArgumentParser:
    """The parser of `python -m ul.stages.<stage>`, whose help is the stage's module docstring."""
    p = argparse.ArgumentParser(
        prog=f"python -m ul.stages.{stage}", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.set_defaults(_module=f"ul.stages.{stage}")
    p.add_argument(
        "--params",
        default="params.yaml",
        help="parameter file read through ul.common.config.load (default: %(default)s)",
    )
    p.add_argument(
        "--metrics", default=f"metrics/{stage}.json", help="where the stage's metrics JSON goes (default: %(default)s)"
    )
    return p


def write_metrics(path: str | Path, metrics: dict) -> None:
    atomic.write_text(path, json.dumps(metrics, indent=1, sort_keys=True) + "\n")


EXPECTED = (ConfigError, DataError, ExportError, NonFiniteLossError, OSError)


def exit_status(err: BaseException) -> int:
    transient = getattr(err, "transient", False) or isinstance(err, (ConnectionError, TimeoutError))
    return TEMPFAIL if transient else 1


SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|ACCESS_KEY|PRIVATE|CREDENTIAL", re.IGNORECASE)


def refuse_secrets(cfg: Config) -> None:
    """Secrets come only from the environment: a parameter holding the value of a secret variable
    (e.g. written into params.yaml by a resolved `${oc.env:...}`) stops the stage before it is
    used, sent anywhere or recorded in dvc.lock."""
    from ul.common.config import to_dict

    secrets = {k: v for k, v in os.environ.items() if SECRET_NAME.search(k) and len(v) >= 6}
    flat = json.dumps(to_dict(cfg))
    for name, value in secrets.items():
        if value in flat:
            raise ConfigError(
                f"a parameter holds the value of the environment variable {name} (a secret); "
                "secrets come only from the environment: remove it from params.yaml"
            )


def run(
    args: argparse.Namespace,
    body: Callable[[Config], dict | None],
    launch: Callable[[Config], LaunchConfig] | None = None,
    argv: list | None = None,
    ckpt: Path | None = None,
) -> int:
    """Load the config, run `body`, write its metrics; expected failures → stderr + status 1.
    With `launch` (the stage's launch params), more than one process runs the stage under
    torchrun (ul.common.launch) with the same arguments (`argv`, else the command line's); `body`
    returns None in the processes that write nothing (torchrun's ranks but 0)."""
    try:
        cfg = load(args.params)
        refuse_secrets(cfg)
        if launch is not None:
            again = sys.argv[1:] if argv is None else [str(a) for a in argv]
            if (status := relaunch(launch(cfg), args._module, again, ckpt)) is not None:
                return status
        metrics = body(cfg)
    except EXPECTED as err:
        if getattr(err, "metrics", None):  # a failed validation still reports what it measured
            write_metrics(args.metrics, err.metrics)
        print(error_line(err), file=sys.stderr)
        return exit_status(err)
    if metrics is None:
        return 0
    write_metrics(args.metrics, metrics)
    print(json.dumps(metrics, sort_keys=True))
    return 0


def read_input(reader: Callable, folder: str | Path, made_by: str):
    """`reader(folder)` (a shard or latent folder); a damaged folder is a DataError naming it and
    the stage that writes it, not a traceback."""
    try:
        return reader(folder)
    except EXPECTED:
        raise
    except (ValueError, KeyError, TypeError, IndexError) as err:  # a corrupt index.json or .npy
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"{folder}: unreadable ({reason}); re-run the {made_by} stage") from None
