"""Waiting for the next frame: woken by the writer where the backend can, looking where not.

A reader that waits should sleep in the kernel until the writer says "new frame", not poll
a timer: polling costs CPU and adds half a period of latency. On POSIX the writer sends a
datagram to a socket each waiting reader binds (``tkshm._wake``), and the reader sleeps in
``select`` on it; on Windows it sets an event each waiting reader made (``tkshm._events``),
and the reader sleeps in ``WaitForSingleObject``. Where neither can be had (a directory too
deep for a socket path, a holder table that is full) the reader looks at the header's
generation counter instead: every ``POLL_INTERVAL`` at first, a quarter less often each time
nothing has come, up to ``POLL_LONGEST``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Final, Protocol

from . import trace

# A stream's next frame is seen within a few ms; a reader of a silent segment wakes 50 times
# a second.
POLL_INTERVAL: Final = 0.002
POLL_LONGEST: Final = 0.02
_TIMER: Final = time.perf_counter


class Waiter(Protocol):
    """What the writer wakes: a socket on POSIX (``tkshm._wake.Waiter``), an event on Windows
    (``tkshm._events.Waiter``)."""

    def fileno(self) -> int | None:
        """A descriptor for ``select`` or Tk's ``createfilehandler``; None for an event."""
        ...

    def wait(self, timeout: float | None) -> bool:
        """Sleep until woken (True) or ``timeout`` passes (False)."""
        ...

    def drain(self) -> None: ...

    def close(self) -> None: ...


class Wakeups:
    """One attached segment's wake-ups, as its reader sees them.

    ``make`` builds the waiter (raising ``OSError`` where it cannot: then the generation is
    polled), and ``peek`` reads the generation without a lock.
    """

    def __init__(
        self, make: Callable[[], Waiter], peek: Callable[[], int], thread_lock: threading.RLock
    ) -> None:
        self._make = make
        self._peek = peek
        self._thread_lock = thread_lock
        self._waiter: Any = None  # made by the first wait; False: none to be had, poll

    def waiter(self) -> Waiter | None:
        """The waiter, made on first use (None: poll the generation instead)."""
        with self._thread_lock:
            if self._waiter is None:
                try:
                    self._waiter = self._make()
                except OSError as exc:  # a directory too deep for a socket path: poll instead
                    trace.step("no wake-up (%s); polling the generation instead", exc.strerror or exc)
                    self._waiter = False
            return self._waiter or None

    def fileno(self) -> int | None:
        waiter = self.waiter()
        return None if waiter is None else waiter.fileno()

    def drain(self) -> None:
        waiter = self.waiter()
        if waiter is not None:
            waiter.drain()

    def close(self) -> None:
        with self._thread_lock:
            if self._waiter:
                self._waiter.close()
            self._waiter = None

    def wait(self, after_generation: int, timeout: float | None) -> int:
        """Sleep until the generation passes ``after_generation``; return the generation then
        (after ``timeout``, whatever it is: not newer shows the timeout)."""
        deadline = None if timeout is None else _TIMER() + timeout
        waiter = self.waiter()  # registered before we look, so no publish is missed
        woken = False
        pause = POLL_INTERVAL
        while True:
            generation = self._peek()
            if generation > after_generation:
                return generation  # a wake-up left unread is drained by the next wait
            if woken and waiter is not None:  # woken for an older frame: drain, sleep again
                waiter.drain()
            left = None if deadline is None else deadline - _TIMER()
            if left is not None and left <= 0:
                return generation
            if waiter is None:
                time.sleep(pause if left is None else min(pause, left))
                pause = min(pause * 1.25, POLL_LONGEST)
                continue
            woken = waiter.wait(left)
