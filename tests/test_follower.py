"""Follow mode's :class:`~tkshm.window.follow.Follower` on its own: a real Tk root (pytest-xvfb)
and a real segment, but no dialog. In its place a small :class:`~tkshm.window.follow.FollowView`
records what the follower tells it, so that these tests say what follow mode does, not how
the window words it: the published frame is shown, then each newer one (woken by the
segment's wake-up socket on POSIX, by polling the generation on Windows); stopping detaches
on the worker; a key nobody published is waited for; a publisher that exits is reported.
"""

from __future__ import annotations

import logging
import time
import tkinter as tk
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
from patterns import pattern, seed_of
from peer import Peer
from platforms import WINDOWS, posix_only, windows_only
from tk_fixtures import pump

from tkshm import ipc
from tkshm.errors import SegmentNotFoundError
from tkshm.figures import Figures
from tkshm.window.follow import Follower
from tkshm.window.picture import Picture
from tkshm.window.worker import Worker

T = TypeVar("T")

DEADLINE = 20.0  # generous: a busy two-core machine runs other tests alongside
ROOM = (320, 240)  # the fake picture area's size: SMALL frames fit, BIG ones are sampled down
SMALL = (160, 120)
BIG = (640, 480)
RESULT_POLL_MS = 2  # as the dialog looks for its worker's results


class Area:
    """The picture area as the follower sees it: a fixed room, and a token that each frame
    shown bumps (as the real one does), so a stale full copy would show."""

    def __init__(self) -> None:
        self.token = 0

    def size(self) -> tuple[int, int]:
        return ROOM


class View:
    """A :class:`FollowView` that keeps what it is told. Its worker is the window's own
    :class:`Worker`, whose results it delivers from ``after()`` as the dialog does: the
    follower's jobs really run on another thread, and its callbacks on the Tk one."""

    def __init__(self, root: tk.Tk, key: str) -> None:
        self.root = root
        self.key = key
        self.closed = False
        self.picture_area = Area()
        self.worker = Worker()
        self.submitted = 0
        self.frames: list[Picture] = []  # show_frame, in order
        self.frame_figures: list[Figures | None] = []  # what show_frame was told, frame by frame
        self.words: list[tuple[Picture, Figures | None]] = []
        self.full: list[tuple[int, Picture]] = []
        self.failures: list[tuple[Exception, bool]] = []
        self.detached: list[bool] = []
        self.stopped: list[tuple[int | None, int]] = []
        self._delivering = False
        self.follower = Follower(self)

    # -- FollowView --------------------------------------------------------------------------
    def submit(
        self, work: Callable[[], T], done: Callable[[T], None], failed: Callable[[Exception], None]
    ) -> None:
        self.submitted += 1
        self.worker.submit(work, done, failed)
        if not self._delivering:
            self._delivering = True
            self.root.after(RESULT_POLL_MS, self._deliver)

    def failed(self, error: Exception, waiting: bool = False) -> None:
        self.failures.append((error, waiting))

    def follow_detached(self, removed: bool) -> None:
        self.detached.append(removed)

    def show_frame(self, picture: Picture, figures: Figures | None) -> None:
        self.picture_area.token += 1
        self.frames.append(picture)
        self.frame_figures.append(figures)

    def stream_words(self, picture: Picture, figures: Figures | None) -> None:
        self.words.append((picture, figures))

    def full_ready(self, token: int, picture: Picture) -> None:
        self.full.append((token, picture))

    def publisher_stopped(self, pid: int | None, generation: int) -> None:
        self.stopped.append((pid, generation))

    # -- the test's side ---------------------------------------------------------------------
    def _deliver(self) -> None:
        self.worker.deliver()
        if self.worker.pending and not self.closed:
            self.root.after(RESULT_POLL_MS, self._deliver)
        else:
            self._delivering = False

    def seeds(self) -> list[int]:
        return [seed_of(picture.image) for picture in self.frames]

    def wait(self, condition: Callable[[], object], what: str) -> None:
        pump(self.root, lambda: bool(condition()), DEADLINE, what)

    def close(self) -> None:
        """As the dialog closes: no more timers, the worker finished, the segment detached."""
        self.closed = True
        self.follower.close()
        if self.worker.stop(timeout=ipc.DEFAULT_TIMEOUT + 1) and self.follower.segment is not None:
            self.follower.segment.detach()
            self.follower.segment = None


class Publisher:
    """This process publishing pattern frames under the test's key, through one handle."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.segment: ipc.Segment | None = None

    def frame(self, seed: int, size: tuple[int, int] = SMALL) -> int:
        """Publish ``pattern(size, seed)`` and return its generation."""
        image = pattern(*size, seed)
        if self.segment is None:
            self.segment = ipc.publish(image, self.key)
            return self.segment.peek_generation()
        return self.segment.write_image(image).generation

    def detach(self) -> None:
        if self.segment is not None:
            self.segment.detach()
            self.segment = None


@pytest.fixture
def view(tk_root: tk.Tk, key: str) -> Iterator[View]:
    made = View(tk_root, key)
    yield made
    made.close()


@pytest.fixture
def publisher(key: str) -> Iterator[Publisher]:
    made = Publisher(key)
    yield made
    made.detach()


def test_start_attaches_and_shows_the_published_frame_with_its_words(
    view: View, publisher: Publisher
) -> None:
    generation = publisher.frame(seed=1)
    view.follower.start()
    view.wait(lambda: view.frames, "the published frame")
    assert view.follower.segment is not None
    assert view.seeds() == [1]
    picture = view.frames[0]
    assert (picture.source, picture.generation, picture.complete) == ("shm", generation, True)
    assert picture.image.size == SMALL
    assert view.frame_figures == [None]  # a first frame is no stream yet
    view.wait(lambda: view.words, "the status line's words")
    assert view.words[-1][0].generation == generation
    assert view.failures == [] and view.stopped == []


def follow_a_first_frame(view: View, publisher: Publisher, caplog: pytest.LogCaptureFixture) -> None:
    """Trace to ``caplog``, publish seed 1, start following, and wait until it is shown."""
    caplog.set_level(logging.INFO, logger="tkshm.trace")
    publisher.frame(seed=1)
    view.follower.start()
    view.wait(lambda: view.frames, "the first frame")


def test_a_newer_publish_is_shown_woken_by_the_segment_or_found_by_polling(
    view: View, publisher: Publisher, caplog: pytest.LogCaptureFixture
) -> None:
    follow_a_first_frame(view, publisher, caplog)
    newer = publisher.frame(seed=2)
    view.wait(lambda: view.frames[-1].generation == newer, "the newer frame")
    assert view.seeds() == [1, 2]  # each frame once, the newer one read whole
    how = (
        "follow: checking the generation every 20 ms (no wake-up socket here)"
        if WINDOWS
        else "follow: waiting on the segment's wake-up socket (a datagram after each publish)"
    )
    assert how in caplog.messages


@windows_only("Tk watches the wake-up socket itself on POSIX; on Windows a thread waits on an event")
def test_inside_mainloop_a_thread_waiting_on_the_segments_event_wakes_follow_mode(
    view: View, publisher: Publisher, caplog: pytest.LogCaptureFixture
) -> None:
    follow_a_first_frame(view, publisher, caplog)
    root, newer, end = view.root, [0], time.monotonic() + DEADLINE

    def woken() -> bool:
        thread = view.follower._thread
        return thread is not None and thread.working is True

    def check() -> None:  # inside mainloop(), as in the real program: quit once it is shown
        if (view.frames[-1].generation == newer[0] and woken()) or time.monotonic() > end:
            root.quit()
        else:
            root.after(10, check)

    def publish() -> None:
        newer[0] = publisher.frame(seed=2)
        check()

    root.after(50, publish)
    root.mainloop()
    assert view.frames[-1].generation == newer[0], "the newer frame was not shown"
    thread = view.follower._thread
    assert thread is not None and thread.working is True
    assert any(
        m.startswith("follow: woken by a thread waiting on the segment's event") for m in caplog.messages
    )


@posix_only("Tk's file handlers exist on POSIX only; on Windows a thread posts a virtual event")
def test_an_error_while_woken_is_reported_and_the_main_loop_goes_on(
    view: View, publisher: Publisher, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # tkinter raises an exception from a file handler out of mainloop(): a window closed by
    # Ctrl+C while a woken read laid itself out ended with "application has been destroyed".
    follow_a_first_frame(view, publisher, caplog)
    root, reported, end = view.root, [], time.monotonic() + DEADLINE
    monkeypatch.setattr(root, "report_callback_exception", lambda *info: reported.append(info[1]))

    def destroyed() -> tuple[int, int]:
        raise tk.TclError('can\'t invoke "winfo" command: application has been destroyed')

    monkeypatch.setattr(view.picture_area, "size", destroyed)

    def check() -> None:
        if reported or time.monotonic() > end:
            root.quit()
        else:
            root.after(10, check)

    root.after(50, lambda: (publisher.frame(seed=2), check()))
    root.mainloop()  # on the old code this raised the TclError
    assert [str(e) for e in reported] == ['can\'t invoke "winfo" command: application has been destroyed']


def test_a_frame_bigger_than_the_room_is_shown_sampled_down_then_whole_through_full_ready(
    view: View, publisher: Publisher
) -> None:
    generation = publisher.frame(seed=5, size=BIG)
    view.follower.start()
    view.wait(lambda: view.full, "the full copy once the preview has settled")
    preview = view.frames[0]
    assert not preview.complete and preview.generation == generation
    assert preview.image.width <= ROOM[0] and preview.image.height <= ROOM[1]
    token, full = view.full[0]
    assert token == view.picture_area.token  # asked for under the frame still on screen
    assert full.complete and full.image.size == BIG and seed_of(full.image) == 5
    assert view.follower.shown_size == BIG


@pytest.mark.parametrize("last_holder", [False, True], ids=["publisher-attached", "last-holder"])
def test_stop_detaches_on_the_worker_and_says_whether_that_removed_the_segment(
    view: View, publisher: Publisher, key: str, last_holder: bool
) -> None:
    publisher.frame(seed=1)
    view.follower.start()
    view.wait(lambda: view.frames, "the published frame")
    if last_holder:
        publisher.detach()  # the follower alone keeps the segment now
    submitted = view.submitted
    view.follower.stop()
    assert not view.follower.on and view.follower.segment is None
    assert view.submitted == submitted + 1  # detaching is a worker job, never done on the Tk thread
    view.wait(lambda: view.detached, "follow_detached")
    assert view.detached == [last_holder]
    assert (ipc.remains(key) == []) is last_holder


def test_a_key_nobody_published_is_waited_for_then_followed_once_published(
    view: View, publisher: Publisher
) -> None:
    view.follower.start()
    view.wait(lambda: view.failures, "the failed attach")
    error, waiting = view.failures[0]
    assert isinstance(error, SegmentNotFoundError) and waiting
    assert view.frames == [] and view.follower.segment is None
    publisher.frame(seed=3)
    view.wait(lambda: view.frames, "the frame, once attaching is retried")
    assert view.seeds() == [3]
    assert all(waiting for _, waiting in view.failures)


def test_a_publisher_that_exits_is_reported_with_its_pid_and_last_generation(
    view: View, peer: Peer, key: str
) -> None:
    generation = peer.call("publish", key=key, width=SMALL[0], height=SMALL[1], seed=4)["gen"]
    pid = peer.call("pid")["pid"]  # (on Windows a venv's python is a launcher: not Popen's pid)
    view.follower.start()
    view.wait(lambda: view.frames, "the published frame")
    peer.close()  # it detaches and exits; the follower keeps the segment alive
    view.wait(lambda: view.stopped, "publisher_stopped")
    assert view.stopped == [(pid, generation)]
    assert view.seeds() == [4] and view.failures == []
