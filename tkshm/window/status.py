"""The words of the status line: key, size, generation, and how long the copy took.

A number and its unit are joined by a no-break space (U+00A0), so that Tk never wraps a
line between "0" and "ms"; and each number keeps the digits that mean something: a copy of
0.4 ms is "0.4 ms", not "0 ms".
"""

from __future__ import annotations

from collections.abc import Callable
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
