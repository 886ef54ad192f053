"""The words of the status line: key, size, generation, and how long the copy took; for a
stream, frames shown and skipped per second and the latency from publish to screen, in the
words ``tkshm watch`` uses too (:mod:`tkshm.figures`).

A number and its unit are joined by a no-break space (U+00A0), so that Tk never wraps a
line between "0" and "ms"; and each number keeps the digits that mean something: a copy of
0.4 ms is "0.4 ms", not "0 ms".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from .. import ipc
from ..figures import Figures

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


def describe_qt(
    tr: Callable[[str], str],
    key: str,
    pixels: tuple[int, int],
    stats: ipc.CopyStats | None,
    published: bool,
    protocol: str,
) -> str:
    """``Key: K · 97x61 pixels · PNG encoded and published in 3.1 ms · Qt 5 protocol: ...``

    The time is the lesson's point: Qt's example moves a PNG, so each side pays for encoding
    or decoding it, where tkshm's own segments move raw pixels."""
    parts = [tr("Key: {key}").format(key=key)]
    parts.append(tr("{width}\u00d7{height}\u00a0pixels").format(width=pixels[0], height=pixels[1]))
    if stats is not None:
        if published:
            verb = tr("PNG encoded and published in {time}")
        else:
            verb = tr("copied out and PNG decoded in {time}")
        parts.append(verb.format(time=milliseconds(stats.copy_s)))
    parts.append(protocol)
    return SEPARATOR.join(parts)


# -- follow mode: a stream's figures (their words are tkshm watch's: see tkshm.figures) ------
def describe_stream(
    tr: Callable[[str], str],
    key: str,
    pixels: tuple[int, int],
    generation: int | None,
    figures: Figures,
) -> str:
    """``Key: k · 640x360 pixels · generation 812 · 30 frames/s · 2 skipped/s · latency p50 3.1 ms``"""
    parts = [tr("Key: {key}").format(key=key)]
    parts.append(tr("{width}\u00d7{height}\u00a0pixels").format(width=pixels[0], height=pixels[1]))
    if generation is not None:
        parts.append(tr("generation {generation}").format(generation=generation))
    parts.append(tr("{rate}\u00a0frames/s").format(rate=number(figures.frames_per_second)))
    parts.append(tr("{rate}\u00a0skipped/s").format(rate=number(figures.skipped_per_second)))
    parts.append(tr("latency\u00a0p50\u00a0{time}").format(time=milliseconds(figures.latency_p50_s)))
    return SEPARATOR.join(parts)


def stream_glossary(tr: Callable[[str], str]) -> str:
    """What each figure of :func:`describe_stream` measures: the status line's tooltip."""
    return "\n".join(
        (
            tr("Over the last second:"),
            tr("frames/s: frames shown per second"),
            tr(
                "skipped/s: frames published but not shown, per second (the window shows the "
                "newest frame and passes over those it had no time for)"
            ),
            tr("latency p50: the median time from publish to on screen"),
        )
    )
