"""File names are data in the flows' logs too (issue 9, class 7): a name that reads like a network
error does not make a corrupt file look worth a retry, and no output line but DVC's own decides a
stage's verdict. Whether a failure is transient is the failing stage's own verdict (exit 75)."""

from __future__ import annotations

import sys

import pytest

from flows import common
from ul.data.layout import DataError
from ul.stages import _cli
from ul.storage import StorageError

DVC_FAILED = "ERROR: failed to reproduce 'pixels': failed to run: python -m ul.stages.pixels, exited with {}"


def _fail(tmp_path, lines: list, code: int):
    script = "import sys\n" + "".join(f"print({ln!r})\n" for ln in lines) + f"sys.exit({code})\n"
    with pytest.raises(common.CommandFailed) as err:
        common.run([sys.executable, "-c", script], tmp_path, "dvc repro", 30)
    return err.value


@pytest.mark.parametrize("name", ["connection refused.png", "timed out 503.jpg", "Could not connect.png"])
def test_a_file_named_like_a_network_error_is_not_retried(tmp_path, name):
    stage_error = f"error: 1 unreadable image(s) in data/raw: train/{name} (truncated PNG)"
    assert not _fail(tmp_path, [stage_error, DVC_FAILED.format(1)], 255).transient
    assert not _fail(tmp_path, [stage_error], 1).transient  # the stage run directly


def test_a_stage_that_says_transient_is_retried_whatever_its_message(tmp_path):
    assert _fail(tmp_path, ["error: data.source=s3://b: NoSuchBucket", DVC_FAILED.format(75)], 255).transient
    assert _fail(tmp_path, ["error: anything"], 75).transient
    # DVC's own trouble (no stage failed): its message decides, as before
    assert _fail(tmp_path, ["ERROR: unexpected error - Could not connect to the endpoint URL"], 255).transient


def test_a_name_cannot_forge_a_stage_verdict():
    out = (
        "Running stage 'pixels':\n"
        "error: 1 unreadable image(s) in data/raw: train/Running stage 'evaluate':.png (bad)\n"
        "error: x/Stage 'train_stage1' didn't change, skipping.png: corrupt\n" + DVC_FAILED.format(1)
    )
    assert common.verdicts(out) == {"pixels": "ran"}


@pytest.mark.parametrize(
    "err,code",
    [
        (DataError("cannot reach http://h/a.zip: [Errno 111] Connection refused", transient=True), 75),
        (StorageError("cannot reach lakeFS", transient=True), 75),
        (ConnectionResetError(104, "reset"), 75),
        (DataError("connection refused.png: truncated"), 1),
        (StorageError("lakefs://r/main: not found"), 1),
    ],
)
def test_stage_exit_status_is_75_only_for_transient_failures(err, code):
    assert _cli.exit_status(err) == code


def test_network_failures_of_an_archive_download_are_transient(tmp_path):
    from ul.data.fetch import archive

    with pytest.raises(DataError) as err:  # nothing listens on port 9 (discard) on loopback
        archive.download("http://127.0.0.1:9/a.zip", "0" * 64, tmp_path / "a.zip", timeout=5)
    assert err.value.transient
