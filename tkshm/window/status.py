"""The words of the status line: key, size, generation, and how long the copy took; for a
stream, frames per second, frames skipped and the latency from publish to screen.

A number and its unit are joined by a no-break space (U+00A0), so that Tk never wraps a
line between "0" and "ms"; and each number keeps the digits that mean something: a copy of
0.4 ms is "0.4 ms", not "0 ms".
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from .. import ipc

NBSP: Final = "\u00a0"
SEPARATOR: Final = " \u00b7 "


def number(value: float) -> str:
    """Two significant digits below 10, whole numbers above: 0.042, 0.4, 2.8, 33, 1234."""
    if value >= 9.95:
        return f"{value:.0f}"
    if value <= 0:
        return "0"
    text = f"{value:.2g}"
    if "e" in text:  # below 0.0001: nothing a person reads
        return f"{value:.4f}"
    return text


def milliseconds(seconds: float) -> str:
    return f"{number(seconds * 1000)}{NBSP}ms"


def size(nbytes: int) -> str:
    """Bytes in the unit that reads best: 900 bytes, 25 kB, 4.1 MB, 33.2 MB."""
    if nbytes >= 1_000_000:
        return f"{nbytes / 1e6:.1f}{NBSP}MB"
    if nbytes >= 1000:
        return f"{number(nbytes / 1000)}{NBSP}kB"
    return f"{nbytes}{NBSP}bytes"


def describe(
    tr: Callable[[str], str],
    key: str,
    pixels: tuple[int, int],
    generation: int | None,
    stats: ipc.CopyStats | None,
    published: bool,
) -> str:
    """``Key: k · 1280x800 pixels · generation 1 · Copied 4.1 MB in 2.8 ms · lock wait 0.04 ms``"""
    parts = [tr("Key: {key}").format(key=key)]
    parts.append(tr("{width}\u00d7{height}\u00a0pixels").format(width=pixels[0], height=pixels[1]))
    if generation is not None:
        parts.append(tr("generation {generation}").format(generation=generation))
    if stats is not None:
        verb = tr("Published {size} in {time}") if published else tr("Copied {size} in {time}")
        parts.append(verb.format(size=size(stats.nbytes), time=milliseconds(stats.copy_s)))
        parts.append(tr("lock wait {time}").format(time=milliseconds(stats.lock_wait_s)))
    return SEPARATOR.join(parts)


# -- follow mode: a stream's figures ---------------------------------------------------------
@dataclass(frozen=True)
class StreamFigures:
    """What the status line says of a stream: its rate, what was skipped, how late."""

    frames_per_second: float
    skipped: int  # frames published but never shown, since following began
    latency_s: float  # publish to on screen, the mean over the last few frames


class StreamMeter:
    """Counts the frames follow mode shows (pure logic: no Tk, no clock of its own).

    Frames per second is measured over the last ``WINDOW_S``; a window that has seen fewer
    than two frames in that time is not watching a stream (a still image, or a stream that
    stopped), and :meth:`figures` says None.
    """

    WINDOW_S: Final = 2.0

    def __init__(self) -> None:
        self._recent: deque[tuple[float, float]] = deque()  # (when shown, latency)
        self.count = 0  # frames shown
        self.skipped = 0
        self.last_generation: int | None = None

    def shown(self, generation: int, latency_s: float, now: float) -> None:
        last = self.last_generation
        if last is not None and generation > last + 1:  # generations count every publish
            self.skipped += generation - last - 1
        self.last_generation = generation
        self.count += 1
        self._recent.append((now, latency_s))
        self._forget(now)

    def figures(self, now: float) -> StreamFigures | None:
        self._forget(now)
        recent = self._recent
        if len(recent) < 2:
            return None
        span = recent[-1][0] - recent[0][0]
        gap = now - recent[-1][0]
        if span <= 0 or gap > 3 * span / (len(recent) - 1) + 0.1:
            return None  # the stream has paused: a rate would describe the past
        latency = sum(late for _, late in recent) / len(recent)
        return StreamFigures((len(recent) - 1) / span, self.skipped, latency)

    def _forget(self, now: float) -> None:
        while self._recent and now - self._recent[0][0] > self.WINDOW_S:
            self._recent.popleft()


def describe_stream(
    tr: Callable[[str], str],
    key: str,
    pixels: tuple[int, int],
    generation: int | None,
    figures: StreamFigures,
) -> str:
    """``Key: k · 640x360 pixels · generation 812 · 30 frames/s · 2 skipped · latency 3.1 ms``"""
    parts = [tr("Key: {key}").format(key=key)]
    parts.append(tr("{width}\u00d7{height}\u00a0pixels").format(width=pixels[0], height=pixels[1]))
    if generation is not None:
        parts.append(tr("generation {generation}").format(generation=generation))
    parts.append(tr("{rate}\u00a0frames/s").format(rate=number(figures.frames_per_second)))
    parts.append(tr("{count}\u00a0skipped").format(count=figures.skipped))
    parts.append(tr("latency {time}").format(time=milliseconds(figures.latency_s)))
    return SEPARATOR.join(parts)
