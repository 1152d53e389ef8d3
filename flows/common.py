"""What the flows share: run a command with its output streamed line by line to the Prefect log,
read DVC's verdict on each stage, and tell transient failures (remote or network I/O, a held lock:
worth a retry with back-off) from the rest (a corrupt image: retrying cannot help)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from flows.progress import ANSI, ProgressCadence
from ul.common import bounded
from ul.common.errors import TEMPFAIL

REPO_ROOT = Path(__file__).resolve().parents[1]
DVC = (sys.executable, "-m", "dvc")
UL = (sys.executable, "-m", "ul.cli")

# Output that means "the network or a remote failed", not "the stage is wrong".
TRANSIENT = re.compile(
    r"could not connect|cannot reach|connection (?:refused|reset|aborted|closed)|timed? ?out\b|"
    r"temporary failure|name or service not known|name resolution|network is unreachable|"
    r"service unavailable|too many requests|slow ?down|throttl|max retries exceeded|"
    r"remote end closed|broken pipe|\b50[234]\b|unable to acquire lock|EndpointConnectionError",
    re.IGNORECASE,
)
# A stage's exit status TEMPFAIL (75, EX_TEMPFAIL: ul.common.errors) is its own verdict "worth a retry"; under
# DVC it reaches us in DVC's line below. Our stages' `error:` lines carry file names, which whoever
# made the data chose ("connection refused.png"), so they never decide a retry, and only whole lines
# of DVC's own count as verdicts (a name cannot start a line: names are printed escaped).
STAGE_EXIT = re.compile(r"^ERROR: failed to reproduce '[^'\n]+': failed to run: .*, exited with (-?\d+)$", re.M)
VERDICTS = (  # DVC's own log lines (dvc/stage), strongest first
    ("ran", re.compile(r"^Running stage '([^'\n]+)':$", re.M)),
    ("restored from run cache", re.compile(r"^Stage '([^'\n]+)' is cached - skipping run", re.M)),
    ("up to date", re.compile(r"^Stage '([^'\n]+)' didn't change, skipping$", re.M)),
)


class CommandFailed(RuntimeError):
    """A command exited non-zero; the message carries its error lines (what the run's log shows)."""

    transient = False

    def __init__(self, what: str, returncode: int, output: str):
        self.what, self.returncode, self.output = what, returncode, output
        lines = [ln for ln in output.splitlines() if ln.strip()]
        errors = [ln for ln in lines if re.match(r"\s*(error|ERROR)\b", ln)] or lines[-5:]
        super().__init__(f"{what} failed (exit {returncode}): " + " | ".join(errors[-6:]))


class TransientFailure(CommandFailed):
    """A command failed on network or remote I/O (or a lock held by another run): retried."""

    transient = True


class CommandTimeout(CommandFailed):
    """A command ran past its time limit and was stopped (its whole process group)."""

    def __init__(self, what: str, timeout_s: float, output: str):
        RuntimeError.__init__(self, f"{what} ran past its {timeout_s:g} s limit and was stopped")
        self.what, self.returncode, self.output = what, None, output


def retry_if_transient(task, task_run, state) -> bool:
    """Prefect `retry_condition_fn` of every task: retry only a failure marked `transient` (a
    TransientFailure; a StorageError from a lakeFS that cannot be reached or failed with 5xx)."""
    try:
        state.result()
    except BaseException as err:
        return bool(getattr(err, "transient", False))
    return False


def refuse_interpolations(overrides: list) -> None:
    """Overrides are data, not code: a `${...}` (an OmegaConf interpolation or resolver such as
    `${oc.env:SECRET}`, which `dvc exp run -S` would resolve into params.yaml) is refused, naming
    the key, before any command runs."""
    from ul.common.config_checks import refuse_interpolations as refuse

    for item in overrides:  # one at a time: a key given twice is checked both times
        key, _, value = str(item).partition("=")
        refuse({key: value}, what="overrides")


def subprocess_env() -> dict:
    """The environment for DVC and stage commands: this interpreter's bin first on PATH (DVC's stage
    commands say `python`), analytics off."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("DVC_NO_ANALYTICS", "1")
    env.setdefault("GX_ANALYTICS_ENABLED", "false")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def run(
    cmd: Sequence[str],
    cwd: str | Path,
    what: str | None = None,
    timeout_s: float | None = None,
    log: Callable[[str], None] | None = None,
    log_error: Callable[[str], None] | None = None,
    cadence: ProgressCadence | None = None,
    live: TextIO | None = None,
) -> str:
    """Run `cmd` in `cwd`, stream its output lines (stdout and stderr, with tqdm's \\r updates split)
    to `log` as they come, progress bars at a human cadence (`cadence`, default ProgressCadence()),
    and return what was logged. On a terminal (`live`, default stderr when it is a TTY) the bars
    also show live, every refresh, without going to the log. Raises TransientFailure, CommandFailed
    or CommandTimeout; on a timeout, or when the flow run is stopped, the command and its children
    are stopped too."""
    what = what or " ".join(str(c) for c in cmd[2:] if c) or str(cmd[0])
    # Same process group as the flow run: whatever stops the run's group stops the command too.
    proc = subprocess.Popen(
        [str(c) for c in cmd],
        cwd=str(cwd),
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        bufsize=1,
    )
    lines: list = []
    cadence = cadence or ProgressCadence()
    if live is None and sys.stderr.isatty():
        live = sys.stderr

    def emit(shown: list) -> None:
        for line in shown:
            lines.append(line)
            sink = log_error if (log_error and re.match(r"\s*(error|ERROR)\b", line)) else log
            if sink:
                sink(line)

    def pump():
        for line in proc.stdout:  # universal newlines: '\r' progress updates come as lines too
            line = line.rstrip()
            if not line:
                continue
            shown = cadence(line)
            if live is not None:  # the bar as it moves; cleared before a logged line is printed
                live.write("\r\x1b[K" if shown else f"\r{ANSI.sub('', line)[:200]}\x1b[K")
                live.flush()
            emit(shown)
        emit(cadence.flush())

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _stop_tree(proc)
        reader.join(5)
        raise CommandTimeout(what, timeout_s, "\n".join(lines)) from None
    except BaseException:  # the flow run is being cancelled: take the command down with it
        _stop_tree(proc)
        raise
    reader.join(30)
    output = "\n".join(lines)
    if proc.returncode != 0:
        cls = TransientFailure if is_transient(proc.returncode, lines) else CommandFailed
        raise cls(what, proc.returncode, output)
    return output


def is_transient(returncode: int, lines: list) -> bool:
    """Worth a retry: a stage said so (exit 75, directly or as DVC reports it); else, when no stage
    failed, DVC's own messages (a remote or the network, a held lock) in its last 30 lines."""
    if returncode == TEMPFAIL:
        return True
    stages = STAGE_EXIT.findall("\n".join(lines))
    if stages:
        return all(int(code) == TEMPFAIL for code in stages)
    return any(TRANSIENT.search(ln) for ln in lines[-30:] if not ln.lstrip().startswith("error:"))


def _stop_tree(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """Stop the command and every process under it (DVC runs stages as its children): SIGTERM,
    then SIGKILL for whatever is left after `grace_s`."""
    import psutil

    try:
        tree = [psutil.Process(proc.pid)]
        tree += tree[0].children(recursive=True)
    except psutil.NoSuchProcess:
        return
    for p in tree:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(tree, timeout=grace_s)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=grace_s)
    proc.wait()


def verdicts(output: str) -> dict:
    """{stage: verdict} for every stage DVC reported on in `output`."""
    found: dict = {}
    for verdict, pattern in reversed(VERDICTS):  # stronger verdicts overwrite weaker ones
        for stage in pattern.findall(output):
            found[stage] = verdict
    return found


def merge_verdicts(into: dict, new: dict) -> dict:
    rank = {v: i for i, (v, _) in enumerate(VERDICTS)}
    for stage, v in new.items():
        if stage not in into or rank.get(v, 99) < rank.get(into[stage], 99):
            into[stage] = v
    return into


def dvc_stages(repo: Path) -> list:
    """Stage names of dvc.yaml, in file order."""
    return list((bounded.read_yaml(Path(repo) / "dvc.yaml", what="dvc.yaml") or {}).get("stages", {}))


def default_remote(repo: Path) -> str | None:
    """The DVC default remote's name, or None when none is configured."""
    out = subprocess.run([*DVC, "remote", "default"], cwd=repo, env=subprocess_env(), capture_output=True, text=True)
    name = out.stdout.strip()
    return name if out.returncode == 0 and name else None


def repo_dir(path: str) -> Path:
    p = Path(path).expanduser().resolve()
    if not (p / "dvc.yaml").is_file():
        raise FileNotFoundError(f"{p}: no dvc.yaml here; set repo_dir to the pipeline's checkout")
    return p
