"""Follow mode (F5): stay attached and show the newest frame another process publishes.

A still image loaded in another window and a stream of sixty frames a second take the same
path:

1. **Woken, not polling.** On POSIX the segment hands out a descriptor (a datagram socket)
   that becomes readable after each publish. Tk watches it with ``createfilehandler``, so
   the window sleeps until there is something new. Tk on Windows has no
   ``createfilehandler`` (and the segment there an event, not a socket): a thread sleeps in
   ``wait_for_change`` and tells Tk with a virtual event (:class:`WakeThread`). tkinter
   takes such a call from another thread only while ``mainloop()`` runs; where it refuses,
   an ``after()`` timer reads the header's generation counter every ``FOLLOW_POLL_MS``
   instead, without locking -- a few microseconds when nothing has changed.
2. **The newest frame, never a queue.** At most one read is on its way. A frame published
   meanwhile only marks the window as *behind*; the next read takes whatever is newest then,
   and the frames in between are skipped (and counted). A window that cannot keep up shows
   fewer frames, never late ones.
3. **Cheap copies.** A frame that fits the window is copied into one of two reused RGBA
   buffers and pasted into the ``PhotoImage`` already on screen; a bigger one is sampled
   down to the window (``read_preview``) and smoothed only once the stream pauses.
4. **A quiet trace.** A frame after a pause is traced step by step; the frames of a stream
   add one line a second that sums them up (:func:`tkshm.trace.quiet`).
5. **A publisher that stops.** When no frame has come for ``QUIET_S`` and the process that
   published the newest one is gone, the window says so and keeps that frame on screen. The
   next frame, from whichever process, is shown as usual.

Staying attached also keeps the image alive: while this window follows, it is one of the
segment's holders.
"""

from __future__ import annotations

import contextlib
import threading
import time
import tkinter
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Final, Protocol, TypeVar

from PIL import Image

from .. import ipc, trace
from ..errors import ImageError, IncompleteImageError, SegmentNotFoundError, TkshmError
from ..figures import Figures, Second, percentile
from ..images import fit_size
from .picture import Picture, copy_full

T = TypeVar("T")

# Where the segment offers no wake-up descriptor (Windows), the generation counter is read
# this often: a small image is then on screen within about 20 ms of being published.
FOLLOW_POLL_MS: Final = 20
# While a WakeThread tells Tk of each frame, the generation is still looked at this often,
# in case a wake-up was lost (say, to a window being closed).
FOLLOW_BACKSTOP_MS: Final = 250
# How long the WakeThread sleeps at most before it looks whether it should stop.
WAKE_THREAD_WAIT_S: Final = 0.1
# Attaching is retried this often while following a key nobody has published yet.
FOLLOW_ATTACH_RETRY_MS: Final = 500
# The stream's figures (frames/s, skipped/s, latency) are worked out again this often: more
# would be a blur nobody reads. (The generation on screen is said with every frame.)
STATUS_MS: Final = 250
# A frame that comes this long after the one before is traced step by step; closer frames
# are a stream, summed up in one trace line this often.
TRACE_SUMMARY_S: Final = 1.0
# No new frame for this long: ask whether the publisher still runs (the answer is on screen
# within QUIET_S + STATUS_MS, well inside a second).
QUIET_S: Final = 0.4
# A big frame is shown sampled down; once no newer one has come for this long, the full
# frame is copied once and smoothed.
SETTLE_MS: Final = 200


class FollowArea(Protocol):
    """What follow mode reads of the picture area: the room a frame gets, and a token for
    the picture on screen."""

    @property
    def token(self) -> int:
        """Bumped whenever another picture is shown: a full copy asked for under an older
        token would put back a frame the stream has moved past."""

    def size(self) -> tuple[int, int]:
        """The room for a frame: a bigger one is read as a preview of this size."""


class FollowView(Protocol):
    """What follow mode needs of the window it shows in, and no more: the follower decides
    what to read and when; the view runs its worker jobs and puts on screen what it is told.
    Kept this narrow so that follow mode can be tested without the window, and the window
    changed without reading follow mode (mypy checks that the window fits where it makes
    its follower)."""

    @property
    def root(self) -> tkinter.Tk:
        """The Tk root: ``after()`` timers, drawing a frame at once, watching the wake-up socket,
        reporting an error in a callback."""

    @property
    def key(self) -> str:
        """The key followed."""

    @property
    def closed(self) -> bool:
        """The window is gone: results still on their way are dropped, timers stop."""

    @property
    def picture_area(self) -> FollowArea:
        """Its size and token; the frames themselves go through :meth:`show_frame`."""

    def submit(
        self, work: Callable[[], T], done: Callable[[T], None], failed: Callable[[Exception], None]
    ) -> None:
        """Run ``work`` on the view's worker; ``done`` or ``failed`` then runs on the Tk thread.
        Attaching, reading and detaching go through here, so the Tk thread never waits for
        another process's lock."""

    def failed(self, error: Exception, waiting: bool = False) -> None:
        """Say what went wrong; ``waiting``: nothing is published under the key yet, and
        attaching is being retried."""

    def follow_detached(self, removed: bool) -> None:
        """Follow mode is off and detached; ``removed``: it was the last holder, so the
        segment is gone."""

    def show_frame(self, picture: Picture, figures: Figures | None) -> None:
        """A new frame: on screen at once, with its words (:meth:`stream_words`)."""

    def stream_words(self, picture: Picture, figures: Figures | None) -> None:
        """The message and status line for the frame on screen: its generation, and the
        stream's figures, or ``None`` while there is no stream (a still, or a first frame)."""

    def full_ready(self, token: int, picture: Picture) -> None:
        """The full copy of a preview shown under ``token``, unless something newer is."""

    def publisher_stopped(self, pid: int | None, generation: int) -> None:
        """No newer frame, and the process that published ``generation`` is gone (``pid``
        None: it died half-way through the next one); the frame stays on screen."""


@dataclass(frozen=True)
class Frame:
    """A frame read for follow mode: the picture and who published it when."""

    picture: Picture
    size: tuple[int, int]  # the frame's own (a preview is smaller)
    write_time_ns: int
    writer_pid: int
    traced: bool  # its steps are in the trace (else it is part of the next summary line)


def read_frame(segment: ipc.Segment, box: tuple[int, int], into: Image.Image | None, traced: bool) -> Frame:
    """Copy the newest frame (worker thread): into ``into``, a buffer the size of the frame
    before, if that still fits ``box``; else sampled down to ``box`` (a frame that fits comes
    out whole, and is the buffer of the next read). Only a ``traced`` frame's steps are traced.
    """
    with contextlib.nullcontext() if traced else trace.quiet():
        image = None
        if into is not None and fit_size(into.size, box) == into.size:
            with contextlib.suppress(ImageError):  # the stream changed size: sample it instead
                image = segment.read_image(into=into)
        if image is None:
            image = segment.read_preview(box)
        frame = segment.last_frame
        assert frame is not None, "a read sets last_frame"
        full = (frame.width, frame.height)
        if traced:
            how = "copied whole" if image.size == full else f"a {image.width}x{image.height} preview"
            trace.step("follow: generation %d, %dx%d, slot %d: %s", frame.generation, *full, frame.slot, how)
    picture = Picture(image, "shm", frame.generation, segment.last_stats, complete=image.size == full)
    return Frame(picture, full, frame.write_time_ns, frame.writer_pid, traced)


class Follower:
    """Follow mode of one window: :meth:`start`, :meth:`stop`, and what happens in between.
    It sees the window only as a :class:`FollowView`."""

    def __init__(self, view: FollowView) -> None:
        # A weak reference: no cycle, so a closed window and its Tk objects are freed at once
        # on the Tk thread, never later by the garbage collector on whichever thread runs it.
        self._view = weakref.ref(view)
        self.on = False
        self.segment: ipc.Segment | None = None  # attached while following (worker jobs only)
        self.meter = Second(time.monotonic())
        self._figures: Figures | None = None  # as last worked out (every STATUS_MS)
        self._busy = False  # a worker job is using self.segment: do not touch it here
        self._behind = False  # a newer frame was announced while busy: read again after
        self._fd: int | None = None  # the wake-up descriptor
        self._watching = False  # Tk watches it (not while a read is on its way)
        self._thread: WakeThread | None = None  # where Tk cannot watch a descriptor
        self._again = False  # read the frame on screen again (the window changed size)
        self._timers: dict[str, str] = {}  # after() ids: "attach", "poll", "status", "settle"
        self._shown: Frame | None = None
        self._spare: Image.Image | None = None  # the buffer not on screen, for the next frame
        self._last_new = 0.0  # monotonic time of the newest frame seen
        self._stopped: tuple[int, int] | None = None  # (generation, pid) said to have stopped
        self._summary = _Summary()

    @property
    def shown_size(self) -> tuple[int, int] | None:
        """The size of the frame on screen (a preview of it may be smaller)."""
        return None if self._shown is None else self._shown.size

    @property
    def view(self) -> FollowView:
        view = self._view()
        assert view is not None, "the window is gone"
        return view

    # -- on and off --------------------------------------------------------------------------
    def start(self) -> None:
        self.on = True
        self.meter, self._figures = Second(time.monotonic()), None
        self._shown, self._spare, self._stopped = None, None, None
        self._summary = _Summary()
        if self.segment is None:
            self._attach()
        else:
            self._listen()
        self._after("status", STATUS_MS, self._status_tick)

    def stop(self) -> None:
        """Detach on the worker, after any read it is doing with the segment."""
        self.close()
        segment, self.segment = self.segment, None
        if segment is not None:
            self.view.submit(segment.detach, self.view.follow_detached, self.view.failed)

    def close(self) -> None:
        """No more timers or wake-ups (the window closes, or follow mode is turned off);
        the segment stays attached for :meth:`stop` or the window to detach."""
        self.on = False
        self._behind = False
        self._unlisten()
        self._stop_thread()
        root = self.view.root
        for timer in self._timers.values():
            root.after_cancel(timer)
        self._timers.clear()

    def _after(self, name: str, ms: int, callback: Callable[[], None]) -> None:
        if name in self._timers:
            self.view.root.after_cancel(self._timers[name])

        def fire() -> None:
            self._timers.pop(name, None)
            if self.on and not self.view.closed:
                callback()

        self._timers[name] = self.view.root.after(ms, fire)

    # -- attaching ---------------------------------------------------------------------------
    def _attach(self) -> None:
        view = self.view
        self._busy = True
        view.submit(lambda: ipc.Segment.attach(view.key), self._attached, self._failed)

    def _attached(self, segment: ipc.Segment) -> None:
        self._busy = False
        if self.view.closed or not self.on:
            self.view.submit(segment.detach, lambda removed: None, self.view.failed)
            return
        self.segment = segment
        self._listen()
        self._read()  # what is there already

    def _listen(self) -> None:
        """Be told of each publish: by the segment's wake-up socket, or by polling."""
        segment = self.segment
        assert segment is not None
        fd = segment.wake_fileno()
        if fd is None:
            trace.step("follow: checking the generation every %d ms (no wake-up socket here)", FOLLOW_POLL_MS)
            self._after("poll", FOLLOW_POLL_MS, self._poll)
            self._start_thread(segment)
            return
        trace.step("follow: waiting on the segment's wake-up socket (a datagram after each publish)")
        self._fd = fd
        self._watch(True)

    def _watch(self, on: bool) -> None:
        """Have Tk watch the wake-up socket, or stop (while a read is on its way)."""
        if self._fd is None or on == self._watching:
            return
        self._watching = on
        tk: Any = self.view.root.tk  # file handlers are Tk's on Unix only (wake_fileno() is None elsewhere)
        if on:
            tk.createfilehandler(self._fd, tkinter.READABLE, self._file_handler)
        else:
            tk.deletefilehandler(self._fd)

    def _unlisten(self) -> None:
        self._watch(False)
        self._fd = None

    # -- being told of a new frame -----------------------------------------------------------
    def _file_handler(self, fd: int, mask: int) -> None:
        """Tk's file handler. Unlike a button's or a timer's, an exception raised here is not
        reported and forgotten: tkinter raises it out of ``mainloop()``, and the window would
        end. Report it as any other callback's."""
        try:
            self._woken(fd, mask)
        except Exception as error:
            self.view.root.report_callback_exception(type(error), error, error.__traceback__)

    def _woken(self, fd: int, mask: int) -> None:
        """The wake-up socket is readable: something was published."""
        segment = self.segment
        if segment is None or not self.on:
            return
        if self._busy:
            # The worker is using the segment: do not wait for it on this thread. Stop
            # watching (the socket stays readable) and look again when the read is shown.
            self._behind = True
            self._watch(False)
            return
        segment.drain_wakeups()
        self._newer()

    def _poll(self) -> None:
        """Where there is no wake-up socket: has the generation changed? Microseconds if not."""
        thread = self._thread
        self._after("poll", FOLLOW_BACKSTOP_MS if thread and thread.working else FOLLOW_POLL_MS, self._poll)
        if not self._busy and self._is_newer():
            self._newer()

    def _start_thread(self, segment: ipc.Segment) -> None:
        root = self.view.root
        thread = self._thread = WakeThread(root, segment, self._thread_woken)
        thread.start()

    def _stop_thread(self) -> None:
        """Stop the WakeThread, waiting a moment for it (it looks every WAKE_THREAD_WAIT_S)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.stop(self.view.root)

    def _thread_woken(self) -> None:
        """(Tk thread.) The WakeThread saw a new generation."""
        if self._thread is None or not self.on or self.view.closed:
            return
        if self._thread.working is False:
            self._thread.working = True
            trace.step(
                "follow: woken by a thread waiting on the segment's event (checking every %d ms as well)",
                FOLLOW_BACKSTOP_MS,
            )
        if not self._busy and self._is_newer():
            self._newer()
        elif self._busy:
            self._behind = True

    def reread(self) -> None:
        """Read the newest frame even if it is the one on screen (for a new window size)."""
        self._again = True
        self._newer()

    def _is_newer(self) -> bool:
        segment, shown = self.segment, self._shown
        if segment is None:
            return False
        if shown is None or self._again:
            return True
        try:
            return segment.peek_generation() != shown.picture.generation
        except TkshmError:
            return True  # let the read say what is wrong

    def _newer(self) -> None:
        if self._busy:
            self._behind = True  # read it when the read on its way is shown: never queue
        else:
            self._read()

    def _read(self) -> None:
        segment = self.segment
        if segment is None or not self.on:
            return
        self._busy, self._behind = True, False
        now = time.monotonic()
        traced = now - self._last_new >= TRACE_SUMMARY_S  # the first after a pause
        self.view.root.update_idletasks()  # the layout first: the frame is read for its size
        box, spare = self.view.picture_area.size(), self._spare
        self.view.submit(lambda: read_frame(segment, box, spare, traced), self._frame, self._failed)

    # -- showing it ----------------------------------------------------------------------------
    def _frame(self, frame: Frame) -> None:
        self._busy = False
        if not self.on or self.view.closed:
            return
        picture = frame.picture
        previous = self._shown
        if previous is None or picture.generation != previous.picture.generation or self._again:
            self._again = False
            self._show(frame, previous)
        self._caught_up()

    def _caught_up(self) -> None:
        """A worker job on the segment is done: read again if a newer frame came meanwhile."""
        segment = self.segment
        if self._fd is not None and not self._watching and segment is not None:
            segment.drain_wakeups()  # what came while we were not watching
            self._watch(True)
        if self._behind and self._is_newer():
            self._read()
        else:
            self._behind = False

    def _show(self, frame: Frame, previous: Frame | None) -> None:
        view, picture = self.view, frame.picture
        now = time.monotonic()
        first = previous is None or self._stopped is not None
        if self._stopped is not None:
            trace.step(
                "follow: a new frame (generation %d) from process %d: following again",
                picture.generation or 0, frame.writer_pid,
            )  # fmt: skip
            self._stopped = None
        self._last_new = now
        if first:
            self._figures = None  # a new stream (or a first frame): no figures of the old one
        view.show_frame(picture, self._figures)
        # The old frame's buffer is free now that the new one is on screen: the next read
        # copies into it. (A sampled preview is the window's size, not the frame's: no reuse.)
        old = previous.picture if previous is not None else None
        reusable = old is not None and old.complete and old.image is not picture.image
        self._spare = old.image if reusable and old is not None else None
        self._shown = frame
        view.root.update_idletasks()  # draw it now: latency is publish to pixels on screen
        latency = max(0.0, (time.time_ns() - frame.write_time_ns) / 1e9)
        again = previous is not None and previous.picture.generation == picture.generation
        if previous is None:  # the frame already there: its latency would be its age
            self.meter.begin_at(picture.generation or 0)
        elif not again:  # (a frame read again for a new window size is not a new frame)
            self.meter.taken(picture.generation or 0, latency, now)
            if not frame.traced:
                self._summary.add(picture.generation or 0, latency)
        if not picture.complete:
            self._after("settle", SETTLE_MS, self._settle)

    def _settle(self) -> None:
        """No newer frame since a preview was shown: copy the full frame once and smooth it."""
        segment, shown = self.segment, self._shown
        if segment is None or shown is None or self._busy or shown.picture.complete:
            return
        self._busy = True
        token, traced = self.view.picture_area.token, shown.traced

        def full() -> Picture:
            with contextlib.nullcontext() if traced else trace.quiet():
                return copy_full(segment, "follow")

        self.view.submit(full, lambda picture: self._full(token, picture), self._failed)

    def _full(self, token: int, picture: Picture) -> None:
        self._busy = False
        shown = self._shown
        if not self.on or shown is None or picture.generation != shown.picture.generation:
            self._newer()  # a newer frame came meanwhile: show that instead
            return
        self.view.full_ready(token, picture)
        self._shown = replace(shown, picture=picture)
        self._caught_up()

    # -- a few times a second: the status line, the trace summary, a stopped publisher -------
    def _status_tick(self) -> None:
        self._after("status", STATUS_MS, self._status_tick)
        now = time.monotonic()
        if self._shown is not None and self._stopped is None:
            self._status_words(now)
        if self._summary.count and self._summary.age(now) >= TRACE_SUMMARY_S:
            self._summary.report(now)
            self._summary = _Summary()
        self._check_publisher(now)

    def _status_words(self, now: float) -> None:
        shown = self._shown
        if shown is None:
            return
        self._figures = self.meter.figures(now)
        self.view.stream_words(shown.picture, self._figures)

    def _check_publisher(self, now: float) -> None:
        segment, shown = self.segment, self._shown
        if segment is None or shown is None or self._busy or self._stopped is not None:
            return
        if now - self._last_new < QUIET_S:
            return
        try:
            if self._is_newer() or segment.publisher_alive():
                return
        except TkshmError:
            return
        generation = shown.picture.generation or 0
        self._stopped = (generation, shown.writer_pid)
        if self._summary.count:
            self._summary.report(now)
            self._summary = _Summary()
        trace.step(
            "follow: process %d, which published generation %d, has stopped; its frame stays on screen",
            shown.writer_pid, generation,
        )  # fmt: skip
        self.view.publisher_stopped(shown.writer_pid, generation)

    # -- errors --------------------------------------------------------------------------------
    def _failed(self, error: Exception) -> None:
        self._busy = False
        if not self.on:
            return
        if self._fd is not None and self.segment is not None:
            self.segment.drain_wakeups()
            self._watch(True)
        if isinstance(error, SegmentNotFoundError):
            # Nothing published yet (or an empty segment): keep trying, quietly, but say so.
            if self.segment is None:
                self._after("attach", FOLLOW_ATTACH_RETRY_MS, self._attach)
            self.view.failed(error, waiting=True)
            return
        if isinstance(error, IncompleteImageError) and self._shown is not None:
            # The publisher died half-way through a frame: the last complete one stays.
            self._stopped = (self._shown.picture.generation or 0, self._shown.writer_pid)
            self.view.publisher_stopped(None, self._shown.picture.generation or 0)
            return
        self.view.failed(error)


class WakeThread:
    """Where Tk cannot watch the segment (Windows): a thread that sleeps in
    ``wait_for_change`` and, for each new generation, tells the Tk thread with a virtual event.

    tkinter hands a call from another thread to the Tk thread only while ``mainloop()`` runs
    (a window driven by ``update()`` gets ``RuntimeError``); then the thread ends and the
    window's poll, which never stopped, carries on alone.
    """

    def __init__(self, root: tkinter.Misc, segment: ipc.Segment, woken: Callable[[], None]) -> None:
        self.working: bool | None = False  # True once a wake-up has reached Tk; None: refused
        self._segment = segment
        self._root = root
        self._event = f"<<tkshm-frame-{id(self)}>>"
        self._stopping = threading.Event()
        root.bind(self._event, lambda event: woken())
        self._thread = threading.Thread(target=self._run, name="tkshm-follow-wake", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, root: tkinter.Misc) -> None:
        """(Tk thread.) End the thread before the segment is detached: it waits on its event."""
        self._stopping.set()
        self._thread.join(2 * WAKE_THREAD_WAIT_S)
        with contextlib.suppress(tkinter.TclError):
            root.unbind(self._event)

    def _run(self) -> None:
        try:
            seen = self._segment.peek_generation()
            while not self._stopping.is_set():
                newest = self._segment.wait_for_change(seen, timeout=WAKE_THREAD_WAIT_S)
                if newest > seen and not self._stopping.is_set():
                    seen = newest
                    self._root.event_generate(self._event, when="tail")
        except (RuntimeError, tkinter.TclError):  # not inside mainloop(), or the window is gone
            self.working = None
        except (TkshmError, OSError):  # detached under us: the window is closing
            pass


class _Summary:
    """The frames of a stream since the last trace line that summed them up."""

    def __init__(self) -> None:
        self.count = 0
        self.started = time.monotonic()
        self.first = self.last = 0
        self.latencies: list[float] = []

    def add(self, generation: int, latency: float) -> None:
        if self.count == 0:
            self.first = generation
        self.count += 1
        self.last = generation
        self.latencies.append(latency)

    def age(self, now: float) -> float:
        return now - self.started

    def report(self, now: float) -> None:
        published = self.last - self.first + 1
        p50 = percentile(sorted(self.latencies), 0.5) or 0.0
        trace.step(
            "follow: %d frames shown in the last %.1f s (generations %d to %d, %d skipped); "
            "latency p50 %.1f ms (publish to on screen)",
            self.count, self.age(now), self.first, self.last, published - self.count, p50 * 1000,
        )  # fmt: skip
