"""Model work off the request thread: one worker runs the jobs in turn (torch already uses every
core for one), and at most `size` wait; past that a request is told the page is busy at once,
rather than hanging every user behind a slow decode."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor


class Busy(RuntimeError):
    """The queue is full; the message says so (the page shows it, the server keeps running)."""


class WorkQueue:
    def __init__(self, size: int = 4):
        self.size = size
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ul-serve")
        self._slots = threading.BoundedSemaphore(size + 1)  # the running job and `size` waiting
        self.pending = 0  # jobs taken and not finished (for the page's tests and a status line)
        self._lock = threading.Lock()

    async def run(self, fn, *args):
        """`fn(*args)` on the worker; Busy when `size` jobs already wait."""
        if not self._slots.acquire(blocking=False):
            raise Busy(f"busy: {self.size} requests are already waiting; try again in a moment")
        with self._lock:
            self.pending += 1
        future = self._pool.submit(fn, *args)
        future.add_done_callback(self._done)  # when the job ends, even if its client left
        return await asyncio.wrap_future(future)

    def _done(self, _future) -> None:
        with self._lock:
            self.pending -= 1
        self._slots.release()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
