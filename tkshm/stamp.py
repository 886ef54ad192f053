"""A frame's number and publish time, written into its own pixels, top and bottom.

A stream of frames through shared memory can fail in two ways a viewer cannot see by
looking: a frame can be *torn* (its top half from one publish, its bottom half from the
next, when a copy races a write) and it can be *late*. The stamp makes both measurable by
any process that can read the pixels, with no side channel: the publisher writes the same
24 bytes into the first pixels of the **first row** and of the **last row**, just before it
publishes. A reader that finds the two rows' stamps equal knows the frame is whole (a copy is
made top to bottom, so a torn one shows two different frames' stamps); the time in it, from
``time.time_ns()`` (the same wall clock in every process), gives the publish-to-read latency.

The 24 bytes, little-endian, three to a pixel in red, green and blue (alpha stays 255, so a
stamped frame looks opaque in a viewer, and premultiplying it cannot change the bytes):

======  ====  =============  ==================================================
offset  size  field          meaning
======  ====  =============  ==================================================
0       4     magic          ``b"TKST"``
4       8     frame_number   counts from 0 at the publisher's start
12      8     time_ns        ``time.time_ns()`` when the frame was stamped
20      4     crc32          of bytes 0..19: random pixels are never a stamp
======  ====  =============  ==================================================

So a stamp is :data:`STAMP_PIXELS` (8) pixels wide and one row high; an image narrower
than that cannot carry one.
"""

from __future__ import annotations

import struct
import zlib
from typing import Final, NamedTuple

from PIL import Image

MAGIC: Final = b"TKST"
_RECORD: Final = struct.Struct("<4sQQ")
_CRC: Final = struct.Struct("<I")
STAMP_BYTES: Final = _RECORD.size + _CRC.size  # 24
STAMP_PIXELS: Final = STAMP_BYTES // 3  # RGB carries 3 bytes a pixel; alpha is left opaque


class Stamp(NamedTuple):
    """What one stamp says: which frame, and when it was published."""

    frame_number: int
    time_ns: int


def _pixels(frame_number: int, time_ns: int) -> Image.Image:
    record = _RECORD.pack(MAGIC, frame_number, time_ns)
    payload = record + _CRC.pack(zlib.crc32(record))
    return Image.frombytes("RGB", (STAMP_PIXELS, 1), payload).convert("RGBA")


def stamp(image: Image.Image, frame_number: int, time_ns: int) -> None:
    """Write the stamp into ``image`` (RGBA, changed in place): first row and last row, at
    the left edge. Costs two 8-pixel pastes, whatever the image's size.

    ``frame_number`` and ``time_ns`` must fit in 64 bits (``time.time_ns()`` does until 2554).
    """
    if image.mode != "RGBA":
        raise ValueError(f"a stamp goes into an RGBA image, not {image.mode}")
    if image.width < STAMP_PIXELS:
        raise ValueError(f"a stamp needs an image at least {STAMP_PIXELS} pixels wide")
    pixels = _pixels(frame_number, time_ns)
    image.paste(pixels, (0, 0))
    image.paste(pixels, (0, image.height - 1))


def _read_row(image: Image.Image, y: int) -> Stamp | None:
    raw = image.crop((0, y, STAMP_PIXELS, y + 1)).convert("RGB").tobytes()
    record, (crc,) = raw[: _RECORD.size], _CRC.unpack_from(raw, _RECORD.size)
    magic, frame_number, time_ns = _RECORD.unpack(record)
    if magic != MAGIC or zlib.crc32(record) != crc:
        return None
    return Stamp(frame_number, time_ns)


def read_stamps(image: Image.Image) -> tuple[Stamp | None, Stamp | None]:
    """The stamps of the first and of the last row (None where a row carries none).

    Equal: a whole frame. Different: a torn one (rows of two publishes). Both None: the
    frame was never stamped (a file played, a still image).
    """
    if image.width < STAMP_PIXELS or image.height < 1:
        return None, None
    return _read_row(image, 0), _read_row(image, image.height - 1)


def read_stamp(image: Image.Image) -> Stamp | None:
    """The frame's stamp if its first and last rows carry the same one, else None: either
    it carries none, or it is torn (:func:`read_stamps` tells the two apart)."""
    top, bottom = read_stamps(image)
    return top if top is not None and top == bottom else None
