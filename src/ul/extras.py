"""The optional parts of the distribution (pyproject.toml's extras) and the one message that says
which to install when a module of one is missing: the model API needs none of them."""

from __future__ import annotations

DISTRIBUTION = "unified-latents"

# top-level module -> the extra that installs it
EXTRAS = {
    "av": "video",
    "diffusers": "diffusers",
    "starlette": "serve",
    "uvicorn": "serve",
    **dict.fromkeys(
        (
            "hydra",
            "dvc",
            "prefect",
            "great_expectations",
            "pandas",
            "matplotlib",
            "scipy",
            "lakefs",
            "lakefs_sdk",
            "lakefs_spec",
            "boto3",
            "botocore",
            "s3fs",
            "ruamel",
            "psutil",
            "urllib3",
            "nvidia",
        ),
        "pipeline",
    ),
}


class MissingExtra(ImportError):
    """A module of an optional extra is not installed; the message names the extra to install."""


def extra_of(err: ModuleNotFoundError) -> str | None:
    """The extra that provides the module `err` could not find, if it is one of ours."""
    return EXTRAS.get((err.name or "").partition(".")[0])


def message(err: ModuleNotFoundError, what: str = "this") -> str:
    """`<what> needs the [extra] extra: pip install 'unified-latents[extra]'` (or `err` itself when
    the module is not one an extra provides)."""
    extra = extra_of(err)
    if extra is None:
        return str(err)
    return f"{what} needs the [{extra}] extra (module {err.name!r} is not installed): pip install '{DISTRIBUTION}[{extra}]'"


def require(module: str, what: str):
    """Import `module`, or raise MissingExtra naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if extra_of(err) is None:
            raise
        raise MissingExtra(message(err, what)) from None
