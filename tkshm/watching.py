"""What a reader of a stream sees: ``tkshm watch``'s numbers, once a second.

Its words are the window's (:mod:`tkshm.figures`): each second, *frames/s* read, *skipped/s*
(frames published that it never read: a gap in the generation counter) and the *latency*
from publish to copied out, p50 and p99. The publish time is the frame's stamp
(:mod:`tkshm.stamp`) when it carries one, else the header's write time; both are
``time.time_ns()`` of another process, the wall clock being the one clock all processes of
a machine share. A stamped frame whose first and last rows disagree was *torn*: its rows
came from two publishes.

:class:`Statistics` is pure counting (the tests feed it numbers); :func:`watch` is the loop
that attaches, waits for frames and prints.
"""

from __future__ import annotations

import json
import math
import threading
import time
from array import array
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Final, TextIO

from .errors import IncompleteImageError, SegmentNotFoundError
from .figures import WINDOW_S, percentile
from .stamp import Stamp, read_stamps
from .stream import LIVE_STREAM_S, Follower

# Latencies kept for the final summary's percentiles: an hour at 60 fps fits, in 1.7 MB.
MAX_SAMPLES: Final = 250_000
REPORT_EVERY_S: Final = WINDOW_S  # the window's figures look back as far
# How long one wait for a new frame lasts at most: the stop request and the clock are looked
# at between waits.
_WAIT_S: Final = 0.05
# A key whose newest frame is this old, its publisher still running, holds a still (a put, a
# window's Load), not a stream: the same line play draws before it refuses a second publisher.
STILL_AFTER_S: Final = LIVE_STREAM_S


@dataclass(frozen=True)
class Report:
    """The numbers of one interval (or, with ``summary``, of the whole watch)."""

    seconds: float
    frames: int
    skipped: int
    fps: float  # frames read per second
    skipped_per_s: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    latency_from: str | None  # "stamp", "header", or None when no frame came
    torn: int | None  # None: no stamped frame, so tearing could not be checked
    publisher: str  # "alive", "gone", "unknown", or "none" (nothing published yet)
    summary: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        """One line for a person, in the window's words (:mod:`tkshm.figures`)."""
        rates = f"{self.fps:.1f} frames/s, {self.skipped_per_s:.1f} skipped/s"
        if self.summary:
            line = f"total {self.seconds:.1f} s: {self.frames} frames, {self.skipped} skipped ({rates})"
        else:
            line = f"last {self.seconds:.1f} s: {rates}"
        if self.latency_p50_ms is not None and self.latency_p99_ms is not None:
            line += (
                f", latency p50 {self.latency_p50_ms:.2f} ms p99 {self.latency_p99_ms:.2f} ms"
                f" (publish to copied out, from the {self.latency_from})"
            )
        if self.torn is not None:
            line += f", {self.torn} torn"
        return line


def _ms(ns: float | None) -> float | None:
    return None if ns is None else round(ns / 1e6, 3)


class _Tally:
    def __init__(self, start: float) -> None:
        self.start = start
        self.frames = 0
        self.skipped = 0
        self.torn = 0
        self.stamped = 0
        self.latencies: array[int] = array("q")
        self.from_stamp = False


class Statistics:
    """Counts frames, gaps, latencies and torn frames, per interval and in total."""

    def __init__(self, start: float) -> None:
        self._interval = _Tally(start)
        self._total = _Tally(start)
        self._last_generation: int | None = None

    def begin_at(self, generation: int) -> None:
        """The generation already published when watching began: frames after it that are
        never read count as skipped, and it is not counted itself (it may be of long ago)."""
        self._last_generation = generation

    def frame(self, generation: int, latency_ns: int, torn: bool | None) -> None:
        """Count a frame read: its generation, its latency, and ``torn`` (None: unstamped)."""
        last = self._last_generation
        # (Lower than the last cannot happen to a follower, which keeps the segment alive; a
        # caller reading several segments in turn may see it, and it is no gap.)
        gap = generation - last - 1 if last is not None and generation > last else 0
        self._last_generation = generation
        for tally in (self._interval, self._total):
            tally.frames += 1
            tally.skipped += gap
            if torn is not None:
                tally.stamped += 1
                tally.torn += int(torn)
                tally.from_stamp = True
            if len(tally.latencies) < MAX_SAMPLES:
                tally.latencies.append(latency_ns)

    def report(self, now: float, publisher: str) -> Report:
        """The interval's numbers; the next interval begins now."""
        report = self._report(self._interval, now, publisher, summary=False)
        self._interval = _Tally(now)
        return report

    def summary(self, now: float, publisher: str) -> Report:
        """The numbers of the whole watch."""
        return self._report(self._total, now, publisher, summary=True)

    @staticmethod
    def _report(tally: _Tally, now: float, publisher: str, summary: bool) -> Report:
        seconds = max(now - tally.start, 1e-9)
        ordered = sorted(tally.latencies)
        source = ("stamp" if tally.from_stamp else "header") if tally.frames else None
        return Report(
            round(seconds, 3), tally.frames, tally.skipped, round(tally.frames / seconds, 2),
            round(tally.skipped / seconds, 2), _ms(percentile(ordered, 0.50)),
            _ms(percentile(ordered, 0.99)), source,
            tally.torn if tally.stamped else None, publisher, summary,
        )  # fmt: skip


def measure(
    stamps: tuple[Stamp | None, Stamp | None], write_time_ns: int, read_ns: int
) -> tuple[int, bool | None]:
    """Latency (ns) and torn-ness (None: unstamped) of a frame read at ``read_ns``, from its
    two stamps (:func:`tkshm.stamp.read_stamps`), else from the header's write time."""
    top, bottom = stamps
    if top is None and bottom is None:
        return read_ns - write_time_ns, None
    published = top if top is not None else bottom
    assert published is not None
    return read_ns - published.time_ns, top != bottom


def watch(
    key: str,
    out: TextIO,
    stop: threading.Event,
    as_json: bool = False,
    seconds: float | None = None,
    say: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    publish_hint: str = "tkshm play",
) -> Report:
    """Follow ``key`` and print a report each second until ``stop`` is set or ``seconds``
    have passed; return the summary (printed too). ``say`` gets the one-off notices: nothing
    is published yet (``publish_hint`` names the command that would), the key holds a still,
    the publisher went away, a publisher came back.

    A key nothing is published under is waited for, as the window waits, and as a watch
    waits for the next publisher once one goes: a watch started before its stream is a
    normal way to begin, not a mistake. Until then the reports say ``publisher: "none"``.
    """

    def emit(report: Report) -> None:
        print(json.dumps(report.as_dict()) if as_json else report.text(), file=out, flush=True)

    def notice(text: str) -> None:
        if say is not None:
            say(text)

    start = clock()
    stats = Statistics(start)
    end = None if seconds is None else start + seconds
    next_report = start + REPORT_EVERY_S
    follower: Follower | None = None
    generation = 0
    publisher = "none"
    said: str | None = None  # the state last told: "waiting", "still", "gone" or "alive"
    try:
        while not stop.is_set():
            now = clock()
            if end is not None and now >= end:
                break
            wait = min(_WAIT_S, max(0.0, next_report - now))
            if end is not None:
                wait = min(wait, max(0.0, end - now))
            if follower is None:
                follower = _attached(key)
                if follower is None:
                    if said is None:
                        said = "waiting"
                        notice(
                            f"nothing is published under key {key!r} yet; waiting for a publisher "
                            f"(start one with {publish_hint})"
                        )
                    stop.wait(wait)
                else:
                    # The frame already there is not counted: its latency would be its age.
                    generation = follower.generation()
                    stats.begin_at(generation)
            if follower is not None:
                newest = follower.wait_for_change(generation, wait)
                if newest > generation:
                    try:
                        received = follower.read()
                    except IncompleteImageError:  # its writer died mid-copy; the next write repairs it
                        generation = newest
                        continue
                    read_ns = time.time_ns()
                    if received.generation <= generation:
                        # Windows: the writer has grown the segment into a new mapping and
                        # marked the old one changed; the new frame is not complete yet.
                        continue
                    generation = received.generation
                    latency, torn = measure(read_stamps(received.image), received.write_time_ns, read_ns)
                    stats.frame(received.generation, latency, torn)
            now = clock()
            if now >= next_report:
                if follower is not None:
                    publisher, said = _tell_state(follower, said, notice)
                emit(stats.report(now, publisher))
                # The next report is due a whole second after this one was, not after now:
                # no drift; after a stall, skip the reports that were missed.
                next_report += REPORT_EVERY_S * max(1, math.floor((now - next_report) / REPORT_EVERY_S) + 1)
        summary = stats.summary(clock(), publisher)
        emit(summary)
        return summary
    finally:
        if follower is not None:
            follower.close()


def _attached(key: str) -> Follower | None:
    """A follower of ``key``, or None while nothing is published under it."""
    try:
        return Follower(key)
    except SegmentNotFoundError:
        return None


def _tell_state(
    follower: Follower, said: str | None, notice: Callable[[str], None]
) -> tuple[str, str | None]:
    """The publisher's state for the report ("alive", "gone", "unknown"), and the state told
    so far, after telling (once each time it changes) that the key holds a still, that the
    publisher has gone, or that one is back after a still, a wait or a departure."""
    alive = follower.publisher_alive()
    publisher = "unknown" if alive is None else ("alive" if alive else "gone")
    if alive is None:
        return publisher, said
    if not alive:
        if said != "gone":
            notice("the publisher has gone; waiting for frames under this key")
        return publisher, "gone"
    info = follower.segment.info()
    age_s = (time.time_ns() - info.write_time_ns) / 1e9
    if age_s >= STILL_AFTER_S:
        if said != "still":
            notice(
                f"this key holds a still image ({info.width}x{info.height}, generation "
                f"{info.generation}, published {age_s:.0f} s ago by process {info.writer_pid}, "
                "which keeps it there), not a stream; waiting for its next publish"
            )
        return publisher, "still"
    if said in ("gone", "still"):
        notice(f"a publisher is back (process {info.writer_pid}); frames are coming under this key again")
    elif said == "waiting":
        notice(f"process {info.writer_pid} publishes under this key now; following it")
    return publisher, "alive"
