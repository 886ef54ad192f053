"""One background thread that runs jobs in order and hands results to the Tk thread."""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Worker:
    """``submit(work, done, failed)`` runs ``work()`` on the worker; ``done(result)`` or
    ``failed(error)`` then runs on the *main* thread, called from :meth:`deliver`, which
    the window polls with ``after()``. Jobs touching a segment are serialised this way, so
    one ``Segment`` is never used by two threads at once.
    """

    def __init__(self) -> None:
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._results: queue.Queue[Callable[[], None]] = queue.Queue()
        self.pending = 0
        self._thread = threading.Thread(target=self._run, name="tkshm-worker", daemon=True)
        self._thread.start()

    def submit(
        self, work: Callable[[], T], done: Callable[[T], None], failed: Callable[[Exception], None]
    ) -> None:
        self.pending += 1

        def job() -> None:
            try:
                result = work()
            except Exception as exc:  # handed to the main thread, which turns it into a sentence
                self._results.put(functools.partial(failed, exc))
            else:
                self._results.put(functools.partial(done, result))

        self._jobs.put(job)

    def deliver(self) -> None:
        """Run the callbacks of finished jobs (main thread only)."""
        while True:
            try:
                callback = self._results.get_nowait()
            except queue.Empty:
                return
            self.pending -= 1
            callback()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()

    def stop(self, timeout: float) -> bool:
        """Finish the queued jobs and end the thread; return whether it ended in time."""
        self._jobs.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            return False
        # Results nobody will deliver: drop them (and the callbacks they would have called).
        while not self._results.empty():
            self._results.get_nowait()
        self.pending = 0
        return True
