"""Follow mode (F5): stay attached and show each new image another process publishes.

An ``after()`` callback every ``FOLLOW_POLL_MS`` reads the header's generation counter
without locking (a few microseconds) and asks the worker for a locked read only when the
counter has changed. Staying attached also keeps the image alive: while this window
follows, it is one of the segment's holders.
"""

from __future__ import annotations

import time
import weakref
from typing import TYPE_CHECKING, Final

from .. import ipc
from ..errors import SegmentNotFoundError, TkshmError
from .picture import Picture, copy_full, sample

if TYPE_CHECKING:
    from .dialog import Dialog

# The generation counter is read this often (the target: a small image on screen within
# 50 ms of being published).
FOLLOW_POLL_MS: Final = 20
# Attaching is retried this often while following a key nobody has published yet.
FOLLOW_ATTACH_RETRY_MS: Final = 500


class Follower:
    """Follow mode of one dialog: :meth:`start`, :meth:`stop`, and the timer in between."""

    def __init__(self, dialog: Dialog) -> None:
        # A weak reference: no cycle, so a closed dialog and its Tk objects are freed at once
        # on the Tk thread, never later by the garbage collector on whichever thread runs it.
        self._dialog = weakref.ref(dialog)
        self.on = False
        self.segment: ipc.Segment | None = None  # attached while following (worker jobs only)
        self._busy = False  # a worker job is using self.segment: do not peek
        self._seen = -1  # the generation last asked for
        self._next_attach = 0.0
        self._after: str | None = None

    @property
    def dialog(self) -> Dialog:
        dialog = self._dialog()
        assert dialog is not None, "the dialog is gone"
        return dialog

    def start(self) -> None:
        self.on = True
        self._seen = -1
        self._next_attach = 0.0
        self._tick()

    def stop(self) -> None:
        """Detach on the worker, after any read it is doing with the segment."""
        self.on = False
        self._cancel()
        segment, self.segment = self.segment, None
        if segment is not None:
            self.dialog.submit(segment.detach, self.dialog.follow_detached, self.dialog.failed)

    def _cancel(self) -> None:
        if self._after is not None:
            self.dialog.root.after_cancel(self._after)
            self._after = None

    def close(self) -> None:
        """The window closes: no more timer (the dialog detaches the segment itself)."""
        self.on = False
        self._cancel()

    def _tick(self) -> None:
        """Every ~20 ms: has the generation changed? A few microseconds when it has not."""
        self._after = None
        dialog = self.dialog
        if dialog.closed or not self.on:
            return
        if not self._busy:
            if self.segment is None:
                if time.monotonic() >= self._next_attach:
                    self._busy = True
                    dialog.submit(lambda: ipc.Segment.attach(dialog.key), self._attached, self._failed)
            else:
                try:
                    generation = self.segment.peek_generation()
                except TkshmError as exc:
                    self._failed(exc)
                else:
                    if generation != self._seen:
                        self._seen = generation
                        self._busy = True
                        dialog.started = time.perf_counter()
                        segment, box = self.segment, dialog.picture_area.size()
                        dialog.submit(lambda: sample(segment, box, "follow"), self._sampled, self._failed)
        self._after = dialog.root.after(FOLLOW_POLL_MS, self._tick)

    def _attached(self, segment: ipc.Segment) -> None:
        self._busy = False
        if self.dialog.closed or not self.on:
            self.dialog.submit(segment.detach, lambda removed: None, self.dialog.failed)
            return
        self.segment = segment

    def _sampled(self, picture: Picture) -> None:
        """The same two steps as the display button, on the segment we stay attached to."""
        segment = self.segment
        if segment is None or not self.on:
            self._busy = False
            return
        self.dialog.show_picture(picture)
        if picture.complete:
            self._busy = False
            return
        token = self.dialog.picture_area.token
        self.dialog.submit(
            lambda: copy_full(segment, "follow"), lambda full: self._full(token, full), self._failed
        )

    def _full(self, token: int, picture: Picture) -> None:
        self._busy = False
        if self.on:
            self.dialog.full_ready(token, picture)

    def _failed(self, error: Exception) -> None:
        self._busy = False
        if isinstance(error, SegmentNotFoundError):
            # Nothing published yet (or an empty segment): keep trying, quietly, but say so.
            self._next_attach = time.monotonic() + FOLLOW_ATTACH_RETRY_MS / 1000
            self.dialog.failed(error, waiting=True)
            return
        self.dialog.failed(error)
