"""Pillow at the edge of the mapping: copies between shared memory and RGBA images.

The segment stores raw RGBA rows; Pillow can wrap such rows as an image without copying them
(``Image.frombuffer``). Every copy here is one pass of memcpy through such a wrapper, and
no wrapper outlives the call that made it -- except a :func:`view`, which its caller closes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeVar

from PIL import Image

from .errors import ImageError
from .frames import Slot
from .header import BYTES_PER_PIXEL

T = TypeVar("T")


def through_pixels(mapping: Any, offset: int, width: int, height: int, use: Callable[[Image.Image], T]) -> T:
    """Call ``use`` on the mapping's pixels wrapped as a Pillow image, without copying them.

    ``frombuffer`` makes an image whose rows *are* the shared memory. It must not outlive
    this call (the mapping cannot be closed while it exists, and its pixels change with the
    next write), so ``use`` gets it as a temporary and must return something else.
    """
    view = memoryview(mapping)[offset : offset + width * height * BYTES_PER_PIXEL]
    try:
        return use(Image.frombuffer("RGBA", (width, height), view, "raw", "RGBA", 0, 1))  # type: ignore[arg-type]
    finally:
        view.release()


def _paste(rgba: Image.Image) -> Callable[[Image.Image], None]:
    def paste(target: Image.Image) -> None:
        # frombuffer marks its images read-only to protect the buffer, and paste() would then
        # copy the target first; here writing through is the point. (``readonly`` is an
        # attribute of Pillow's Image class, not a documented API: the cross-process tests
        # would catch a Pillow that changed it.)
        target.readonly = 0
        target.paste(rgba, (0, 0))

    return paste


def copy_into(mapping: Any, offset: int, rgba: Image.Image) -> None:
    """Copy RGBA pixels into the mapping with one pass of memcpy.

    ``Image.tobytes()`` encodes in small chunks and joins them (about twice the cost of a
    copy). Instead we wrap the mapping itself as a Pillow image and ``paste`` into it, which
    copies row by row straight into shared memory.
    """
    through_pixels(mapping, offset, rgba.width, rgba.height, _paste(rgba))


def copy_out(mapping: Any, offset: int, width: int, height: int) -> Image.Image:
    """Copy RGBA pixels out of the mapping into a new image, with one pass of memcpy.

    ``copy()`` takes its memory from Pillow's own allocator, which can recycle the blocks of
    images freed earlier (``PILLOW_BLOCKS_MAX``) instead of asking the kernel for fresh
    pages: memory touched for the first time costs more than the copy itself.
    """
    return through_pixels(mapping, offset, width, height, Image.Image.copy)


def check_target(into: Image.Image, slot: Slot) -> None:
    """Refuse an ``into`` image the frame cannot be copied into as it is."""
    if into.mode != "RGBA" or into.size != (slot.width, slot.height):
        raise ImageError(
            f"Cannot read the {slot.width}x{slot.height} frame into a {into.width}x{into.height} "
            f"{into.mode} image; pass an RGBA image of the frame's size."
        )


def copy_out_into(mapping: Any, offset: int, into: Image.Image) -> None:
    """Copy the pixels into an image the caller keeps, with one pass of memcpy and no
    allocation: ``paste`` writes into ``into``'s own memory."""
    through_pixels(mapping, offset, into.width, into.height, lambda pixels: into.paste(pixels, (0, 0)))


# Pillow's own writes into an image. On one made by frombuffer (read-only) each would copy the
# whole frame first, silently, and change the copy: a view refuses them instead.
_WRITES: Final = ("paste", "putpixel", "putalpha", "putdata")


def view(mapping: Any, slot: Slot) -> tuple[Image.Image, memoryview]:
    """The slot's pixels as a read-only image over the mapping itself, with the buffer it
    holds; :func:`close_view` ends both. Its write methods raise :class:`ImageError`."""
    buffer = memoryview(mapping)[slot.offset : slot.offset + slot.payload_length]
    image = Image.frombuffer("RGBA", (slot.width, slot.height), buffer, "raw", "RGBA", 0, 1)  # type: ignore[arg-type]
    for name in _WRITES:
        setattr(image, name, _refuse_write)
    return image, buffer


def _refuse_write(*args: object, **kwargs: object) -> None:
    raise ImageError(
        "This image is a view of the frame in shared memory and cannot be changed; "
        "change a copy of it (image.copy()) instead."
    )


def close_view(image: Image.Image, buffer: memoryview) -> None:
    image.close()  # drops Pillow's hold on the buffer...
    buffer.release()  # ...so that the mapping can be closed again
