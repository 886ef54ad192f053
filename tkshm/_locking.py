"""Waiting for an advisory lock with a timeout, the same way on every platform.

Neither ``flock`` nor ``LockFileEx`` has a timed wait, so a lock is taken non-blocking and
retried with a growing pause. A reader that polls every few milliseconds costs nothing next to
the copy it waits for, and a stuck peer becomes a "busy" message instead of a frozen program.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

import portalocker

_FIRST_PAUSE: Final = 0.0005
_LONGEST_PAUSE: Final = 0.01


def wait_for(try_once: Callable[[], bool], timeout: float) -> float | None:
    """Call ``try_once`` until it returns True; return the seconds waited, or None once
    ``timeout`` seconds have passed without it."""
    started = time.perf_counter()
    pause = _FIRST_PAUSE
    while not try_once():
        waited = time.perf_counter() - started
        if waited >= timeout:
            return None
        time.sleep(min(pause, timeout - waited))
        pause = min(pause * 2, _LONGEST_PAUSE)
    return time.perf_counter() - started


def try_lock(lock: Callable[[int, portalocker.LockFlags], None], fd: int, exclusive: bool) -> bool:
    """Take a portalocker lock through ``lock`` without waiting; False if another process
    holds it. The backends pass their locker: ``flock`` on POSIX, ``LockFileEx`` on Windows."""
    wanted = portalocker.LockFlags.EXCLUSIVE if exclusive else portalocker.LockFlags.SHARED
    try:
        lock(fd, wanted | portalocker.LockFlags.NON_BLOCKING)
    except portalocker.AlreadyLocked:
        return False
    return True
