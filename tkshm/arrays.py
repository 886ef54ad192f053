"""NumPy at the edge of the mapping: arrays in and out of shared memory, without Pillow.

A frame in the segment is ``height`` rows of ``width`` RGBA pixels, four bytes each, row
after row: exactly the memory of a C-contiguous ``numpy.ndarray`` of shape
``(height, width, 4)`` and dtype ``uint8``. So NumPy can *wrap* a frame where it lies instead
of copying it (``numpy.frombuffer``), and a copy in or out is one assignment, which NumPy
does as one pass of memcpy when both sides are contiguous (and as a strided loop when the
caller's array is not: a slice, a transposed view, OpenCV's BGR).

NumPy is optional (``pip install 'tkshm[numpy]'``); it is imported on first use, so tkshm
itself starts without it.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final, Literal

from .errors import ArrayError, ImageTooLargeError, TkshmError
from .frames import Slot
from .header import BYTES_PER_PIXEL
from .images import MAX_PIXELS

if TYPE_CHECKING:  # numpy is imported on first use; these are only names for the hints
    import numpy as np
    from numpy.typing import NDArray

    Pixels = NDArray[np.uint8]
else:
    Pixels = Any

Channels = Literal["rgba", "bgra", "rgb", "bgr", "gray"]
CHANNELS: Final[dict[int, tuple[str, ...]]] = {4: ("rgba", "bgra"), 3: ("rgb", "bgr"), 1: ("gray",)}
_OPAQUE: Final = 255


def numpy() -> ModuleType:
    """NumPy, or a :class:`TkshmError` that says which extra brings it."""
    try:
        return importlib.import_module("numpy")
    except ImportError as exc:
        raise TkshmError("Arrays need NumPy: pip install 'tkshm[numpy]'.") from exc


def check(array: object, channels: str | None = None) -> tuple[int, int, str]:
    """The ``(height, width, channels)`` of an array that can be published as a frame, or
    an :class:`ArrayError` (:class:`ImageTooLargeError` for too many pixels) saying what is
    wrong with it, in one sentence."""
    np = numpy()
    if not isinstance(array, np.ndarray):
        raise ArrayError(
            f"Expected a numpy.ndarray of pixels, not {type(array).__name__}; "
            "wrap the data with numpy.asarray(..., dtype=numpy.uint8) first."
        )
    if array.dtype != np.uint8:
        raise ArrayError(
            f"The array's dtype is {array.dtype}, but frames hold 8 bits a channel: pass a uint8 "
            "array (for floats in 0..1, (a * 255).round().astype(numpy.uint8))."
        )
    shape = tuple(array.shape)
    depth = 1 if len(shape) == 2 else shape[2] if len(shape) == 3 else 0
    if depth not in CHANNELS:
        raise ArrayError(
            f"An array of shape {shape} is not an image: pass height x width x 4 (RGBA), "
            "height x width x 3 (RGB or BGR) or height x width (gray)."
        )
    height, width = shape[0], shape[1]
    if height == 0 or width == 0:
        raise ArrayError(f"The array of shape {shape} has no pixels; there is nothing to publish.")
    if width * height > MAX_PIXELS:
        raise ImageTooLargeError(
            f"The array is {width}x{height} pixels, more than the {MAX_PIXELS:,} a frame may hold; "
            "publish a smaller one."
        )
    if channels is None:
        channels = CHANNELS[depth][0]
    if channels not in CHANNELS[depth]:
        said = " or ".join(repr(name) for name in CHANNELS[depth])
        raise ArrayError(
            f"An array of shape {shape} has {depth} channel(s): say channels={said}, not {channels!r}."
        )
    return height, width, channels


def _frame(
    mapping: Any, offset: int, height: int, width: int, readonly: bool
) -> tuple[Pixels, list[memoryview]]:
    """The frame at ``offset`` as an array over the mapping itself, with the buffers under it
    (for :func:`_release` once the array is gone)."""
    buffers = [memoryview(mapping)[offset : offset + height * width * BYTES_PER_PIXEL]]
    if readonly:  # a read-only buffer: numpy then refuses writes, and refuses to allow them again
        buffers.insert(0, buffers[0].toreadonly())
    frame: Pixels = numpy().frombuffer(buffers[0], dtype="uint8").reshape(height, width, BYTES_PER_PIXEL)
    return frame, buffers


def _release(buffers: list[memoryview]) -> None:
    for buffer in buffers:
        buffer.release()


def copy_into(mapping: Any, offset: int, array: Pixels, channels: str) -> None:
    """Copy ``array`` (checked by :func:`check`) into the mapping as RGBA: one assignment
    per channel group, with alpha filled in for arrays that have none."""
    height, width = array.shape[:2]
    target, buffers = _frame(mapping, offset, height, width, readonly=False)
    try:
        if channels == "rgba":
            target[...] = array
        elif channels == "bgra":
            target[..., 2::-1] = array[..., :3]
            target[..., 3] = array[..., 3]
        else:
            if channels == "rgb":
                target[..., :3] = array
            elif channels == "bgr":
                target[..., 2::-1] = array
            else:  # gray: the same value in R, G and B
                target[..., :3] = array[..., None]
            target[..., 3] = _OPAQUE
    finally:
        del target
        _release(buffers)


def view(mapping: Any, slot: Slot) -> Pixels:
    """The slot's pixels as a read-only array over the mapping itself: no copy.

    NumPy cannot be told to let go of a buffer, so the array keeps these pages mapped for as
    long as it lives (:mod:`tkshm._unmap`), even after its lease has ended.
    """
    return _frame(mapping, slot.offset, slot.height, slot.width, readonly=True)[0]


def copy_out(mapping: Any, slot: Slot, into: Pixels | None) -> Pixels:
    """Copy the slot's pixels into ``into`` (or a new array) with one assignment."""
    np = numpy()
    shape = (slot.height, slot.width, BYTES_PER_PIXEL)
    if into is not None and (
        not isinstance(into, np.ndarray)
        or into.dtype != np.uint8
        or into.shape != shape
        or not into.flags.writeable
    ):
        raise ArrayError(
            f"Cannot read the {slot.width}x{slot.height} frame into that array; pass a writable "
            f"uint8 array of shape {shape}."
        )
    source, buffers = _frame(mapping, slot.offset, slot.height, slot.width, readonly=True)
    try:
        if into is None:
            copied: Pixels = source.copy()
            return copied
        np.copyto(into, source)
        kept: Pixels = into
        return kept
    finally:
        del source
        _release(buffers)
