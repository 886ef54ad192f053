"""The IPC trace: every step of the protocol as one line, for a class to watch.

tkshm reports what it does through the standard :mod:`logging` module, on the logger named
``tkshm.trace``, at level INFO: the key turned into a native name, create or attach, lock
requested and granted (with the wait), bytes copied and how long it took, unlock, detach,
and the segment removed. Nothing is printed unless someone listens: ``tkshm --trace`` and
the window's trace pane do, and so can any script::

    import logging
    logging.basicConfig(format=tkshm.trace.FORMAT, datefmt=tkshm.trace.DATE_FORMAT)
    logging.getLogger("tkshm.trace").setLevel(logging.INFO)

A line carries the process id, because the point of the trace is to watch *two* processes
take turns: ``15:42:01.124 tkshm[4242] lock granted (shared) after 0.02 ms``.

A stream would bury that story under thirty copies a second, so a reader of frames can
leave a frame's steps out with :func:`quiet` and say once a second what they added up to.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Final, TextIO

LOGGER: Final = logging.getLogger("tkshm.trace")
FORMAT: Final = "%(asctime)s.%(msecs)03d tkshm[%(process)d] %(message)s"
DATE_FORMAT: Final = "%H:%M:%S"


class _Quiet(threading.local):
    depth = 0


_quiet: Final = _Quiet()


class _LeaveOutQuiet(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return _quiet.depth == 0


LOGGER.addFilter(_LeaveOutQuiet())


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Leave out the steps this thread takes inside the block (the frames of a stream after
    the first: whoever reads them reports a summary instead). Other threads trace as usual."""
    _quiet.depth += 1
    try:
        yield
    finally:
        _quiet.depth -= 1


def step(message: str, *args: object) -> None:
    """Report one step (``%``-style arguments, formatted only if someone listens)."""
    LOGGER.info(message, *args)


def on() -> bool:
    """Whether anyone listens: lets a hot path skip measuring what nobody will read."""
    return LOGGER.isEnabledFor(logging.INFO)


def formatter() -> logging.Formatter:
    return logging.Formatter(FORMAT, DATE_FORMAT)


def to_stream(stream: TextIO | None = None) -> logging.Handler:
    """Print the trace to ``stream`` (standard error by default) and return the handler,
    for :func:`stop`."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    start(handler)
    return handler


def start(handler: logging.Handler) -> None:
    """Send the trace to ``handler`` as well."""
    handler.setFormatter(formatter())
    LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.INFO)


def stop(handler: logging.Handler) -> None:
    """Stop sending the trace to ``handler``; with no handler left, stop tracing."""
    LOGGER.removeHandler(handler)
    if not LOGGER.handlers:
        LOGGER.setLevel(logging.NOTSET)
