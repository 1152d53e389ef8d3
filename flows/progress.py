"""Which lines of a command's progress bars reach a flow run's log: a piped tqdm refreshes many
times a second, and a log that a person reads wants a bar's start, its steps and its end."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

# A tqdm refresh, as a piped tqdm writes it ('\r'-separated, ANSI cursor moves for nested bars):
# "decode:  45%|####5     | 45/100 [00:01<00:02, 30.0img/s]", "hashing: 45file [00:01, 30.0file/s]".
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
PROGRESS = re.compile(
    r"^(?P<desc>.*?):?\s*(?:(?P<pct>\d{1,3})%\|[^|]*\|\s*)?(?P<n>[\d.]+[kMGTPEZY]?)"
    r"(?:/(?P<total>[\d.]+[kMGTPEZY]?))?\s*[^\s\[]*\s*\[[\d:]+(?:<[\d:?]+)?(?:,[^\]]*)?\]\s*$"
)


class ProgressCadence:
    """Which progress-bar refreshes go to the run's log: a bar's first line, then one each time it
    passes another `step_pct` percent or `interval_s` seconds after the last one logged (a bar with
    no total: by time only), and its last state when other output follows or the command ends.
    Every other line is logged as it comes. `__call__(line)` returns the lines to log now."""

    def __init__(self, step_pct: float = 10.0, interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.step_pct, self.interval_s, self.clock = step_pct, interval_s, clock
        self.last: dict = {}  # bar → (position logged, percent logged, time logged)
        self.pending: dict = {}  # bar → (its latest line not logged, its position)

    def __call__(self, line: str) -> list:
        m = PROGRESS.match(ANSI.sub("", line).strip())
        if not m:
            return [*self.flush(), line]
        bar, pct, pos, now = m["desc"].strip(), m["pct"], m["n"], self.clock()
        done = m["total"] is not None and pos == m["total"]
        pct = None if pct is None else (float(pct) if done else min(float(pct), 99.0))  # tqdm rounds 99.9 up
        last = self.last.get(bar)
        due = (
            last is None
            or now - last[2] >= self.interval_s
            or (done and pos != last[0])
            or (pct is not None and (last[1] is None or pct >= last[1] + self.step_pct))
        )
        if not due:
            self.pending[bar] = (line, pos)
            return []
        self.pending.pop(bar, None)
        self.last[bar] = (pos, pct, now)
        return [line]

    def flush(self) -> list:
        """Each bar's latest unlogged state, where it moved since the line logged last."""
        out = [ln for bar, (ln, pos) in self.pending.items() if self.last.get(bar, (None,))[0] != pos]
        for bar, (_, pos) in self.pending.items():
            self.last[bar] = (pos, self.last[bar][1], self.clock())
        self.pending.clear()
        return out
