"""A stream's figures in one vocabulary: the window's status line and ``tkshm watch`` say the
same three things, over the same second, with the same words.

A reader of a stream does not take every frame: it takes the newest one whenever it gets
round to it, and the generation counter (which counts every publish) tells how many it
passed over. So, over the last second (:data:`WINDOW_S`):

``frames/s``
    frames the reader took per second: shown on screen (the window), copied out (``watch``).
``skipped/s``
    frames published in that second that the reader never took, per second. ``frames/s``
    plus ``skipped/s`` is the publisher's own rate.
``latency p50`` (and ``p99``)
    the median (and 99th percentile) time from a frame's publish to its being taken: on
    screen for the window, copied out for ``watch``. Both ends are read on the wall clock,
    the one clock every process of a machine shares.

:class:`Second` keeps those figures for a window that looks back one second a few times a
second; ``tkshm watch`` counts the same things in whole seconds (:mod:`tkshm.watching`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

# The figures cover this much time: watch prints one line per second, and the window's status
# line looks back as far.
WINDOW_S: Final = 1.0

GLOSSARY: Final = (
    ("frames/s", "frames {taken} per second"),
    ("skipped/s", "frames published but not {taken}, per second (the reader takes the newest frame "
     "and passes over those it had no time for; frames/s + skipped/s is the publisher's rate)"),
    ("latency p50, p99", "the median and 99th-percentile time from publish to {end}"),
)  # fmt: skip


def explain(taken: str, end: str) -> str:
    """The glossary in one paragraph, for a reader that takes frames as ``taken`` ("shown",
    "read") and measures latency up to ``end`` ("on screen", "copied out")."""
    words = "; ".join(f"{word}: {meaning.format(taken=taken, end=end)}" for word, meaning in GLOSSARY)
    return f"Over the last second: {words}."


def percentile(sorted_values: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile (``fraction`` 0.5 for p50) of values sorted ascending."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass(frozen=True)
class Figures:
    """A stream's figures over the last second (see the module's glossary)."""

    frames_per_second: float
    skipped_per_second: float
    latency_p50_s: float
    latency_p99_s: float


class Second:
    """The frames a reader took in the last second (pure counting: no clock of its own).

    Fewer than two frames in the last second is no stream (a still image, or a stream that
    stopped), and neither is a last frame much older than the stream's own pace: then
    :meth:`figures` says None rather than describe the past.
    """

    def __init__(self, start: float) -> None:
        self._start = start
        self._recent: deque[tuple[float, int, float]] = deque()  # (when taken, passed over, latency)
        self._last_generation: int | None = None

    def begin_at(self, generation: int) -> None:
        """The frame already there when following began: it is not counted (its latency would
        be its age), but frames after it that are never taken are skipped."""
        self._last_generation = generation

    def taken(self, generation: int, latency_s: float, now: float) -> None:
        """A frame taken at ``now``: its generation and its latency."""
        last = self._last_generation
        passed = generation - last - 1 if last is not None and generation > last else 0
        self._last_generation = generation
        self._recent.append((now, passed, latency_s))
        self._forget(now)

    def figures(self, now: float) -> Figures | None:
        self._forget(now)
        recent = self._recent
        if len(recent) < 2:
            return None
        pace = (recent[-1][0] - recent[0][0]) / (len(recent) - 1)
        if now - recent[-1][0] > 3 * pace + 0.1:
            return None  # the stream has paused
        seconds = min(WINDOW_S, max(now - self._start, 1e-9))
        latencies = sorted(late for _, _, late in recent)
        p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
        assert p50 is not None and p99 is not None
        skipped = sum(passed for _, passed, _ in recent)
        return Figures(len(recent) / seconds, skipped / seconds, p50, p99)

    def _forget(self, now: float) -> None:
        while self._recent and now - self._recent[0][0] >= WINDOW_S:  # (the last second, open at its start)
            self._recent.popleft()
