"""Frames in time: what ``tkshm play`` publishes, and when.

A stream is a sequence of images published one after another under one key, each shown for
its own *duration*. Three small ideas carry it:

* **Sources** turn something into timed frames: an animated file (GIF, APNG, WebP, a
  multi-page TIFF), each frame with the duration the file gives it, or the moving test
  pattern, which carries its frame number and publish time in its pixels (:mod:`tkshm.stamp`).
* **A deadline schedule** (:class:`Schedule`) says when each frame is due. Frame *n* is due at
  the start time plus the durations of frames 0..n-1 -- computed from the start, never from
  "now", so the small lateness of every wake-up does not add up (no drift). A frame whose
  whole time has already passed when it comes up is *dropped*, not shown late: a slow
  publisher stays on time and shows fewer frames, instead of falling further behind.
* **The segment, as a stream sees it** (:class:`Publisher`, :class:`Follower`): the few calls
  of :mod:`tkshm.ipc` a stream needs, in one place.

``time.monotonic`` drives the schedule: the wall clock (``time.time_ns``) can be stepped by NTP
or by hand, and a schedule on it would stall or race. Wall-clock time is used only for what
other processes compare against: the stamp and the header's write time.
"""

from __future__ import annotations

import functools
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from PIL import Image, ImageDraw, ImageFont

from . import ipc
from .errors import ImageError, TkshmError
from .header import BYTES_PER_PIXEL
from .images import MAX_PIXELS, Frame, open_frames
from .stamp import STAMP_PIXELS, stamp

# What a browser shows a GIF frame for when the file says 0 (or nothing): a tenth of a second.
DEFAULT_DURATION_S: Final = 0.1
# Frames are decoded once, up front, if they fit in this much memory (RGBA); a longer or
# larger animation is decoded again on each pass instead, one frame in memory at a time.
CACHE_BYTES: Final = 512 * 1024 * 1024
# A publisher that fell this far behind (the machine was suspended, the process stopped with
# Ctrl+Z) starts a new schedule from now instead of dropping every frame it missed.
RESYNC_S: Final = 1.0
MAX_FPS: Final = 1000.0
# --start chooses the first frame that begins at or after it; a frame beginning this little
# before it counts as at it: summed durations (0.1 + 0.2 is not 0.3 in floating point) and a
# video's pts * time_base both round. Far below any frame's duration.
START_SLACK_S: Final = 1e-4
# A frame published this recently by a process that still runs: someone streams under the key.
# Long enough for the slowest animation frames in common use (a few seconds each).
LIVE_STREAM_S: Final = 5.0


@dataclass(frozen=True)
class TimedFrame:
    """A frame to publish and how long it stays up. ``render`` makes the image when the frame
    is due (so a frame that is dropped costs nothing; the pattern stamps the time of now)."""

    duration_s: float
    render: Callable[[], Image.Image]


# -- pacing ----------------------------------------------------------------------------------
class Schedule:
    """The deadline schedule: when each frame is due, from a start time and the durations.

    Times are ``time.monotonic()`` seconds. Pure arithmetic, no clock of its own, so the
    tests can drive it with any times they like.
    """

    def __init__(self, start: float) -> None:
        self._due = start

    def next(self, duration_s: float, now: float) -> float | None:
        """When the next frame (shown for ``duration_s``) is due, or None: drop it, its whole
        time is already over. Either way the schedule moves on by ``duration_s``."""
        due, end = self._due, self._due + duration_s
        self._due = end
        if now < end:
            return due
        if now - end > RESYNC_S:  # far behind: begin again from now rather than drop for ages
            self._due = now
        return None


@dataclass
class PlayCount:
    """How a play went: frames published, and frames dropped to keep time."""

    published: int = 0
    dropped: int = 0


def play(
    frames: Iterable[TimedFrame],
    publish: Callable[[Image.Image], object],
    stop: threading.Event,
    clock: Callable[[], float] = time.monotonic,
    most: int | None = None,
    seconds: float | None = None,
) -> PlayCount:
    """Publish each frame when it is due, until the frames end or ``stop`` is set, or (if
    given) ``most`` frames are published or ``seconds`` have passed since the first frame
    went up.

    Waiting is ``stop.wait(timeout)``: a wait a signal handler (Ctrl+C) can end at once.
    The time limit ends a wait too, so ``seconds`` is kept even when frames are long.
    """
    count = PlayCount()
    schedule: Schedule | None = None
    end: float | None = None
    for frame in frames:
        if stop.is_set() or (most is not None and count.published >= most):
            break
        if schedule is None:
            # The first frame goes up at once, and the clock starts when it is up: opening the
            # file, decoding it and creating the segment (slow on Windows) are not lateness.
            publish(frame.render())
            count.published += 1
            up = clock()
            schedule = Schedule(up + frame.duration_s)
            end = None if seconds is None else up + seconds
            continue
        due = schedule.next(frame.duration_s, clock())
        if due is None:
            if end is not None and clock() >= end:
                break
            count.dropped += 1
            continue
        if end is not None and due >= end:
            stop.wait(max(0.0, end - clock()))  # the time is up before this frame is due
            break
        if stop.wait(max(0.0, due - clock())):
            break
        publish(frame.render())
        count.published += 1
    return count


def frame_duration(duration_ms: float | None, fps: float | None) -> float:
    """Seconds a frame stays up: ``1/fps`` if given, else the file's, else the default (also
    for a file that says 0, as browsers treat a GIF frame of 0 ms)."""
    if fps is not None:
        return 1.0 / fps
    if duration_ms is None or duration_ms <= 0:
        return DEFAULT_DURATION_S
    return duration_ms / 1000.0


# -- an animated file ------------------------------------------------------------------------
@dataclass(frozen=True)
class Animation:
    """An animated file ready to play: what it is, and its frames (decoded or to decode)."""

    path: str
    format: str
    size: tuple[int, int]
    frame_count: int
    cached: bool  # decoded once, up front; else decoded again on each pass

    def frames(
        self, fps: float | None, loop: bool, speed: float = 1.0, start_s: float = 0.0
    ) -> Iterator[TimedFrame]:
        """The timed frames of one pass, or of endless passes with ``loop``; each pass from
        the first frame that begins at or after ``start_s`` (the file's own time, before
        ``speed`` divides the durations). A pass with no such frame raises ImageError."""
        passes = itertools.count() if loop else range(1)
        for _ in passes:
            decoded = iter(self._cache) if self._cache is not None else _decode(self.path)
            begins, played = 0.0, False
            for frame in decoded:
                duration = frame_duration(frame.duration_ms, fps)
                skipped = begins < start_s - START_SLACK_S
                begins += duration
                if not skipped:
                    played = True
                    yield TimedFrame(duration / speed, _constant(frame.image))
            if not played:
                raise ImageError(
                    f"{self.path} is {begins:.2f} s long; --start {start_s:g} is past its last frame.",
                    self.path,
                )

    def length_s(self, fps: float | None) -> float | None:
        """How long one pass lasts (before any speed-up), if the frames are decoded already."""
        if self._cache is None:
            return None
        return sum(frame_duration(frame.duration_ms, fps) for frame in self._cache)

    _cache: tuple[Frame, ...] | None = None


def _constant(image: Image.Image) -> Callable[[], Image.Image]:
    return lambda: image


def _decode(path: str) -> Iterator[Frame]:
    with open_frames(path) as opened:
        yield from opened.frames


def open_animation(path: str, cache_bytes: int = CACHE_BYTES) -> Animation:
    """Open ``path`` and decode its frames now if they fit in ``cache_bytes``; raise
    :class:`~tkshm.errors.ImageError` (with a sentence) for anything that is not a readable
    image. A file that is too big to cache has its first frame decoded here anyway, so that a
    file that cannot be played is refused before anything is published."""
    with open_frames(path) as opened:
        width, height = opened.size
        head = Animation(opened.path, opened.format, opened.size, opened.frame_count, cached=False)
        first = next(opened.frames, None)
        if first is None:
            raise ImageError(f"{path} has no frames to play.", path)
        if opened.frame_count * width * height * BYTES_PER_PIXEL > cache_bytes:
            return head
        cache, total = [first], width * height * BYTES_PER_PIXEL
        for frame in opened.frames:
            total += frame.image.width * frame.image.height * BYTES_PER_PIXEL
            if total > cache_bytes:  # a TIFF's later pages can be larger than its first
                return head
            cache.append(frame)
    return Animation(head.path, head.format, head.size, len(cache), True, tuple(cache))


# -- the test pattern ------------------------------------------------------------------------
# SMPTE colour bars at 75 %, left to right, and the strip under them (as videotestsrc draws).
_BARS: Final = (
    (191, 191, 191),
    (191, 191, 0),
    (0, 191, 191),
    (0, 191, 0),
    (191, 0, 191),
    (191, 0, 0),
    (0, 0, 191),
)
_STRIP: Final = (
    (0, 0, 191),
    (19, 19, 19),
    (191, 0, 191),
    (19, 19, 19),
    (0, 191, 191),
    (19, 19, 19),
    (191, 191, 191),
)
_BOTTOM: Final = (
    (0, 33, 76),
    (255, 255, 255),
    (50, 0, 106),
    (19, 19, 19),
    (9, 9, 9),
    (19, 19, 19),
    (29, 29, 29),
)
# The sweeping bar crosses the width in this many frames (4 s at 60 fps).
_SWEEP_FRAMES: Final = 240
MIN_PATTERN_SIZE: Final = (STAMP_PIXELS * 4, 16)


class TestPattern:
    """A moving test pattern, cheap enough for 60 frames a second at 1920x1080 on one core.

    The colour bars are drawn once. Each frame then only repairs the two places that moved
    since the last one -- a bar sweeping left to right and a box bouncing off the edges, with
    the frame number in it -- by pasting the background back over the old places and the
    moving parts over the new ones: a few hundred kilobytes touched per frame instead of the
    8 MB of the whole image. Last come the stamps (:func:`tkshm.stamp.stamp`), first row and
    last row, so that a reader can tell a whole frame from a torn one and measure latency.
    """

    __test__ = False  # not a pytest test class, whatever its name says

    def __init__(self, width: int, height: int) -> None:
        self.size = (width, height)
        self._background = _colour_bars(width, height)
        self._image = self._background.copy()
        self._bar_width = max(2, width // 64)
        self._box_side = max(8, min(width, height) // 6)
        self._bar = Image.new("RGBA", (self._bar_width, height), (255, 255, 255, 255))
        self._font = ImageFont.load_default(size=max(8, self._box_side // 4))
        self._dirty: list[tuple[int, int, int, int]] = []

    def frame(self, frame_number: int, time_ns: Callable[[], int] = time.time_ns) -> Image.Image:
        """Frame ``frame_number``, stamped with ``time_ns()`` as it is returned. The image is
        the pattern's own, changed again by the next call: publish (copy) it before that."""
        image = self._image
        for box in self._dirty:
            image.paste(self._background.crop(box), box[:2])
        width, height = self.size
        bar_x = frame_number * max(1, width // _SWEEP_FRAMES) % max(1, width - self._bar_width)
        image.paste(self._bar, (bar_x, 0))
        box_x, box_y = (
            _bounce(frame_number * 5, width - self._box_side),
            _bounce(frame_number * 3, height - self._box_side),
        )
        box = (box_x, box_y, box_x + self._box_side, box_y + self._box_side)
        draw = ImageDraw.Draw(image)
        draw.rectangle(box, fill=(255, 255, 255, 255), outline=(0, 0, 0, 255))
        draw.text((box_x + 4, box_y + 4), str(frame_number), fill=(0, 0, 0, 255), font=self._font)
        self._dirty = [(bar_x, 0, bar_x + self._bar_width, height), (*box[:2], box[2] + 1, box[3] + 1)]
        stamp(image, frame_number, time_ns())
        return image

    def frames(self, fps: float, numbering: Callable[[], int] | None = None) -> Iterator[TimedFrame]:
        """Endless timed frames at ``fps``; each is drawn only if it is not dropped. Each
        carries the number ``numbering()`` gives as it is drawn (``tkshm play``: the
        generation it is about to be published as), else 0, 1, 2, ..."""
        for number in itertools.count():
            if numbering is None:
                yield TimedFrame(1.0 / fps, functools.partial(self.frame, number))
            else:
                yield TimedFrame(1.0 / fps, functools.partial(self._numbered, numbering))

    def _numbered(self, numbering: Callable[[], int]) -> Image.Image:
        return self.frame(numbering())


def _bounce(travel: int, span: int) -> int:
    """Where a point moving ``travel`` pixels back and forth between 0 and ``span`` is."""
    if span <= 0:
        return 0
    offset = travel % (2 * span)
    return offset if offset <= span else 2 * span - offset


def _colour_bars(width: int, height: int) -> Image.Image:
    image = Image.new("RGBA", (width, height))
    draw = ImageDraw.Draw(image)
    bands = (
        (0, height * 2 // 3, _BARS),
        (height * 2 // 3, height * 3 // 4, _STRIP),
        (height * 3 // 4, height, _BOTTOM),
    )
    for top, bottom, colours in bands:
        for index, colour in enumerate(colours):
            left, right = width * index // len(colours), width * (index + 1) // len(colours)
            if right > left and bottom > top:
                draw.rectangle((left, top, right - 1, bottom - 1), fill=(*colour, 255))
    return image


def pattern_size_problem(width: int, height: int) -> str | None:
    """Why the pattern cannot be this size (a sentence), or None if it can."""
    low_w, low_h = MIN_PATTERN_SIZE
    if width < low_w or height < low_h:
        return f"the test pattern is at least {low_w}x{low_h} pixels (its stamps need the room)"
    if width * height > MAX_PIXELS:
        return f"{width}x{height} is more than the {MAX_PIXELS:,} pixels a segment holds"
    return None


# -- the segment, as a stream sees it ---------------------------------------------------------
@dataclass(frozen=True)
class OtherPublisher:
    """Another process publishing under the key: its id, and how old its newest frame is."""

    pid: int
    age_s: float


def other_publisher(key: str, recent_s: float = LIVE_STREAM_S) -> OtherPublisher | None:
    """The live process that published a frame under ``key`` in the last ``recent_s``
    seconds, if it is not this one; else None (nothing published, its writer gone, or an
    image left there long ago, which a new stream may replace as a Load would).

    Two publishers on one key take turns in the same segment, so a reader sees their frames
    mixed; nothing in the segment forbids it (any process may publish), so ``play`` asks.
    """
    try:
        with ipc.Segment.attach(key) as segment:
            info = segment.info()
            alive = segment.publisher_alive()
    except TkshmError:  # nothing published (or a damaged segment, which create deals with)
        return None
    age_s = max(0.0, (time.time_ns() - info.write_time_ns) / 1e9)
    if not alive or info.writer_pid in (0, os.getpid()) or age_s > recent_s:
        return None
    return OtherPublisher(info.writer_pid, age_s)


class Publisher:
    """Publishes frames under a key; creates the segment at the first frame, sized for it.

    Creating it only then means a file that fails to decode never leaves a segment behind.
    """

    def __init__(self, key: str) -> None:
        self.key = key
        self.segment: ipc.Segment | None = None
        self.first: ipc.SegmentInfo | None = None

    def next_generation(self) -> int:
        """The generation the next publish will have (while nobody else publishes here)."""
        if self.segment is not None:
            return self.segment.peek_generation() + 1
        try:
            return ipc.info(self.key).generation + 1
        except ipc.SegmentNotFoundError:
            return 1

    def publish(self, image: Image.Image) -> ipc.SegmentInfo:
        if self.segment is None:
            self.segment = ipc.Segment.create(self.key, image.width * image.height * BYTES_PER_PIXEL)
        info = self.segment.write_image(image)
        self.first = self.first or info
        return info

    def close(self) -> None:
        """Detach (the segment goes if we were its last holder); idempotent."""
        if self.segment is not None:
            self.segment.detach()


@dataclass(frozen=True)
class Received:
    """A frame a :class:`Follower` read: its pixels, generation and publish time."""

    image: Image.Image  # the follower's own buffer: valid until its next read
    generation: int
    write_time_ns: int


class Follower:
    """Attached to a key, waiting for each new frame and reading it."""

    def __init__(self, key: str) -> None:
        self.segment = ipc.Segment.attach(key)
        self._buffer: Image.Image | None = None

    def generation(self) -> int:
        """The newest generation, looked at without the lock."""
        return self.segment.peek_generation()

    def wait_for_change(self, after_generation: int, timeout: float) -> int:
        """Wait until the generation is newer than ``after_generation`` or ``timeout`` passes;
        return the generation then (not newer: the timeout passed). The publish wakes us."""
        return self.segment.wait_for_change(after_generation, timeout)

    def read(self) -> Received:
        """Copy the newest frame out, with the generation and write time it was published with."""
        # Into the same buffer each time: a stream of 8 MB frames would otherwise be a stream
        # of 8 MB allocations. A frame of another size gets a buffer of its own.
        try:
            image = self.segment.read_image(into=self._buffer)
        except ImageError:
            image = self.segment.read_image()
        self._buffer = image
        frame = self.segment.last_frame
        assert frame is not None
        return Received(image, frame.generation, frame.write_time_ns)

    def publisher_alive(self) -> bool | None:
        """Whether the process that published the newest frame still runs; None if the header
        cannot say right now (a successor mapping gone on Windows, a damaged header): the next
        read says what is wrong, in words."""
        try:
            return self.segment.publisher_alive()
        except TkshmError:
            return None

    def close(self) -> None:
        self.segment.detach()
