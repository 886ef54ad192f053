"""What Qt's example puts in shared memory: ``QDataStream << QImage``.

Qt's example streams the image into a ``QBuffer`` and copies the buffer into a segment of
exactly its size. For ``QDataStream`` version 5 and later (every Qt 5 and Qt 6) that is::

    offset  size  field
    0       4     marker, a big-endian qint32: 1 = an image follows, 0 = a null image
    4       rest  the image as a PNG file (QImageWriter(..., "png"))

The reader streams the whole segment back with ``QDataStream >> QImage``, which hands the
bytes after the marker to ``QImageReader`` (it recognises any format Qt reads, not only PNG).

tkshm's own segments hold raw RGBA pixels instead: no encoding on the way in, no decoding
on the way out, at the price of a bigger segment. The tour measures the difference.
"""

from __future__ import annotations

import io
from typing import Final

from PIL import Image

from ..errors import CorruptSegmentError, ImageError
from ..images import MAX_PIXELS, decode_bytes, to_rgba

MARKER_SIZE: Final = 4
_IMAGE: Final = (1).to_bytes(MARKER_SIZE, "big")
_NULL: Final = (0).to_bytes(MARKER_SIZE, "big")
#: The largest payload tkshm reads: a PNG of the largest image it decodes, stored without
#: compression (raw RGBA, a filter byte per row, deflate's 5 bytes per 64 KiB block), with
#: room to spare. A segment beyond it is refused before a byte of it is copied.
MAX_PAYLOAD: Final = MAX_PIXELS * 4 * 102 // 100 + (1 << 20)


def encode(image: Image.Image) -> bytes:
    """``QDataStream << image``: the marker, then a PNG of the image.

    An image whose alpha is 255 everywhere is written as an RGB PNG, as Qt writes an opaque
    ``QImage``: a quarter smaller, and read back as the same pixels.
    """
    rgba = to_rgba(image)
    opaque = rgba.getchannel("A").getextrema() == (255, 255)
    buffer = io.BytesIO()
    buffer.write(_IMAGE)
    (rgba.convert("RGB") if opaque else rgba).save(buffer, "PNG")
    return buffer.getvalue()


def null_image() -> bytes:
    """``QDataStream << QImage()``: a null image is the marker 0 and nothing else."""
    return _NULL


def decode(data: bytes, where: str) -> Image.Image:
    """``QDataStream >> image`` with tkshm's decoding limits; ``where`` names the segment in
    the sentences of the errors it raises (:class:`CorruptSegmentError`, :class:`ImageError`)."""
    if len(data) < MARKER_SIZE:
        raise CorruptSegmentError(
            f"{where} holds {len(data)} bytes, too few for a QDataStream'd image "
            f"(a {MARKER_SIZE}-byte marker, then an image file)."
        )
    marker = data[:MARKER_SIZE]
    if marker == _NULL:
        raise ImageError(f"{where} holds a null image (QDataStream's marker 0): there is no picture in it.")
    if marker != _IMAGE:
        raise CorruptSegmentError(
            f"{where} does not hold a QDataStream'd image: it starts with {marker.hex(' ')}, "
            "not the marker 00 00 00 01."
        )
    # A view, not a slice: the PNG is not copied again before Pillow reads it.
    return decode_bytes(memoryview(data)[MARKER_SIZE:], f"The image in {where}").image
