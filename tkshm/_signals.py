"""How a long-running command (``tkshm put``) is asked to stop, on each system.

``put`` stays attached to its segment until someone asks it to stop; then it detaches, so
the segment goes away if it was the last holder, and exits with status 0. What "asking"
means depends on the system:

* POSIX: ``SIGINT`` (Ctrl+C in the terminal) and ``SIGTERM`` (``kill``).
* Windows: a console sends *control events* to the processes attached to it. The C runtime
  turns ``CTRL_C_EVENT`` (Ctrl+C) into ``SIGINT`` and ``CTRL_BREAK_EVENT`` (Ctrl+Break) into
  ``SIGBREAK``, so Python signal handlers see both. Closing the console window sends
  ``CTRL_CLOSE_EVENT``, and that one is different: Windows ends the process as soon as the
  handler *returns* (or after about 5 seconds), so a handler that only sets a flag would be
  killed before the main thread detaches. Ours, registered with ``SetConsoleCtrlHandler``,
  waits until the command says it has detached. Logging off and shutting down send
  ``CTRL_LOGOFF_EVENT`` and ``CTRL_SHUTDOWN_EVENT``, handled the same way.

The platform is decided once, here; ``cli`` only asks for :func:`stop_requests`.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Final

# Windows waits about 5 s for a console handler before it ends the process anyway; detaching
# takes milliseconds, so waiting a little less than that never costs the user anything.
CLOSE_GRACE_SECONDS: Final = 4.0

# The console control events of wincon.h (the same numbers on every Windows).
CTRL_C_EVENT: Final = 0
CTRL_BREAK_EVENT: Final = 1


def console_handler(stop: threading.Event, detached: threading.Event) -> Callable[[int], bool]:
    """The ``SetConsoleCtrlHandler`` routine: leave Ctrl+C and Ctrl+Break to the signal
    handlers (return False: "not mine", the C runtime's handler runs next); for closing,
    logging off and shutting down, ask to stop and hold the process until it has detached."""

    def on_console_event(event: int) -> bool:
        if event in (CTRL_C_EVENT, CTRL_BREAK_EVENT):
            return False
        stop.set()
        detached.wait(CLOSE_GRACE_SECONDS)  # Windows ends the process once this returns
        return True

    return on_console_event


# The platform is decided once, here.
if sys.platform == "win32":  # pragma: no cover - runs only on Windows
    STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGBREAK, signal.SIGTERM)

    def _hold_console_close(stop: threading.Event, detached: threading.Event) -> Callable[[], None]:
        import win32api

        handler = console_handler(stop, detached)
        win32api.SetConsoleCtrlHandler(handler, True)
        return lambda: win32api.SetConsoleCtrlHandler(handler, False)

else:
    STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)

    def _hold_console_close(stop: threading.Event, detached: threading.Event) -> Callable[[], None]:
        return lambda: None  # POSIX has no console events; closing a terminal sends SIGHUP


@contextmanager
def stop_requests() -> Iterator[threading.Event]:
    """An event set when the user asks this process to stop; leave the block once it is set
    and detached. The previous handlers come back afterwards."""
    stop = threading.Event()
    detached = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {signum: signal.signal(signum, request_stop) for signum in STOP_SIGNALS}
    release_console = _hold_console_close(stop, detached)
    try:
        yield stop
    finally:
        detached.set()  # a close handler waiting in another thread may now return
        release_console()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
