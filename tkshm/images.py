"""Pillow at the edge: decode files safely and turn any image mode into straight RGBA.

The IPC layer moves RGBA bytes only; this module is where a file becomes such an image,
and where every way a file can be wrong becomes an :class:`ImageError` with a sentence.
"""

from __future__ import annotations

import io
import os
import re
import stat
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import BinaryIO, Final

from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from .errors import ImageError, ImageTooLargeError, NotAnImageError

# 8K UHD is 33 million pixels; allow a comfortable margin above it, but refuse a file whose
# header promises more before decoding a single row (a decompression bomb: a few bytes of
# file that would expand into gigabytes of RAM).
MAX_PIXELS: Final = 100_000_000
_SIXTEEN_BIT_MODES: Final = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
# What Pillow's decoders raise on malformed data. Its plugins parse untrusted bytes with
# struct and index arithmetic, so a hostile file can surface as any of these rather than
# as the OSError("image file is truncated") a merely short file gives.
_DECODER_ERRORS: Final = (
    OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError, KeyError, TypeError,
)  # fmt: skip
# O_NONBLOCK: opening a named pipe must not wait for a writer (see _open_regular_file).
_OPEN_FLAGS: Final = (
    os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
)
# Pillow's DecompressionBombError says "Image size (N pixels) exceeds limit ...".
_CLAIMED_PIXELS: Final = re.compile(r"\((\d+) pixels\)")


@dataclass(frozen=True)
class LoadedImage:
    """A decoded file: the RGBA image plus what a viewer should tell the user about it."""

    image: Image.Image
    path: str
    format: str
    frame_count: int

    @property
    def is_animated(self) -> bool:
        return self.frame_count > 1


def fit_size(image_size: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """The largest size with the image's aspect ratio that fits in ``box``; never enlarged."""
    width, height = image_size
    box_w, box_h = max(1, box[0]), max(1, box[1])
    scale = min(box_w / width, box_h / height, 1.0)
    return max(1, round(width * scale)), max(1, round(height * scale))


def to_rgba(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit straight RGBA, the segment's only pixel format.

    Returns ``image`` itself when it already is RGBA (no copy). 16-bit greyscale is scaled
    (65535 -> 255), not clipped; palette and greyscale transparency becomes alpha.
    """
    mode = image.mode
    if mode == "RGBA":
        return image
    if mode in _SIXTEEN_BIT_MODES:
        # Pillow's own I;16 -> L conversion clips at 255; a 16-bit image is mostly brighter
        # than that, so scale the range down instead (a linear point() runs in C).
        image = image.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    elif mode == "F":
        image = image.convert("L")
    elif mode == "La":  # premultiplied: Pillow un-premultiplies only on the way to LA
        image = image.convert("LA")
    try:
        return image.convert("RGBA")
    except ValueError:  # modes without a direct route (LAB, HSV, ...) go through RGB
        try:
            return image.convert("RGB").convert("RGBA")
        except ValueError as exc:
            raise ImageError(f"Images in Pillow's {mode} mode cannot be shown; convert it first.") from exc


def load_image(path: str | os.PathLike[str]) -> LoadedImage:
    """Decode an image file fully, right way up, as RGBA; raise :class:`ImageError` if not.

    Decoding happens here, before any lock is taken, so a bad file never touches a segment.
    The size is checked against :data:`MAX_PIXELS` from the file's header, before a single
    row is decoded, so a decompression bomb costs a few hundred bytes of reading, not RAM.
    """
    name = os.fspath(path)
    with _open_regular_file(name) as file:
        return _load(file, name)


def decode_bytes(data: bytes | memoryview, name: str) -> LoadedImage:
    """:func:`load_image` for an image file held in memory (one that came out of shared
    memory, say); ``name`` is what its sentences call it. The same checks apply."""
    return _load(io.BytesIO(data), name)


def _load(file: BinaryIO, name: str) -> LoadedImage:
    with _decoding(name):
        # Not ``with Image.open(...)``: closing the image would free the pixels, and an RGBA
        # file's decoded image is the very one we return. The file itself is closed by the
        # caller; a converted original is freed on return.
        opened = Image.open(file)
        _check_size(opened, name)
        # No seek(0): an image is opened at its first frame already, and formats that
        # number frames from 1 (a layered PSD) or have no frames to seek (a SPIDER file
        # that is not a stack) would refuse it.
        frame_count = _frame_count(opened)
        opened.load()
        fmt = opened.format or "unknown"
        # In place: a transposed copy would cost a full image for nothing in the common
        # case, a file with no EXIF orientation.
        ImageOps.exif_transpose(opened, in_place=True)
        rgba = to_rgba(opened)
    return LoadedImage(rgba, name, fmt, frame_count)


@dataclass(frozen=True)
class Frame:
    """One frame of an animation, decoded: RGBA pixels and how long the file shows it."""

    image: Image.Image
    duration_ms: float | None  # None when the file does not say (a TIFF page, a still image)


@dataclass(frozen=True)
class FrameFile:
    """What :func:`open_frames` learned from a file's header, before decoding any frame."""

    path: str
    format: str
    size: tuple[int, int]  # of the first frame; a TIFF's pages may each have their own
    frame_count: int
    frames: Iterator[Frame]


@contextmanager
def open_frames(path: str | os.PathLike[str]) -> Iterator[FrameFile]:
    """Open an animation (GIF, APNG, WebP, a multi-page TIFF; a still image is one frame)
    and decode its frames one at a time, as the block iterates ``frames``, each right way
    up as its EXIF orientation says (as :func:`load_image` turns a still).

    The same checks as :func:`load_image` apply, to every frame: only a regular file, every
    frame's size checked against :data:`MAX_PIXELS` before it is decoded, and any way the
    file can be damaged an :class:`ImageError` with a sentence, raised from the iteration.
    Only one decoded frame is held at a time, so a long animation costs one frame of memory.
    """
    name = os.fspath(path)
    with _open_regular_file(name) as file:
        with _decoding(name):
            opened = Image.open(file)
            _check_size(opened, name)
            frame_count = _frame_count(opened)
            width, height = opened.size
            if opened.getexif().get(_ORIENTATION_TAG, 1) in _QUARTER_TURNS:
                width, height = height, width  # its frames are turned on their side (upright)
            head = FrameFile(name, opened.format or "unknown", (width, height), frame_count, iter(()))
        try:
            yield replace(head, frames=_decoded_frames(opened, name, frame_count))
        finally:
            opened.close()


def _decoded_frames(opened: Image.Image, name: str, frame_count: int) -> Iterator[Frame]:
    for index in range(frame_count):
        with _decoding(name):
            if index:  # an image is opened at its first frame (see load_image: no seek(0))
                opened.seek(index)
                _check_size(opened, name)
            opened.load()
            # Pillow keeps decoding into the same image object as it seeks (an APNG's next
            # frame is drawn over this one), so the frame we hand out must be a copy of it.
            rgba = to_rgba(opened)
            frame = rgba.copy() if rgba is opened else rgba
            # Right way up, as load_image shows a still: each frame (a TIFF page has its own).
            frame = upright(frame, opened)
            duration = opened.info.get("duration")
        yield Frame(frame, float(duration) if isinstance(duration, (int, float)) else None)


# EXIF orientation -> the transpose that shows the picture right way up, as
# ImageOps.exif_transpose (load_image's) has it. Frames cannot use that function: in place it
# would turn the canvas an APNG's next frame is drawn on and drop the tag the next frame
# needs, and as a copy it would copy every frame that needs no turn.
_ORIENTATIONS: Final = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_ORIENTATION_TAG: Final = ExifTags.Base.Orientation
_QUARTER_TURNS: Final = frozenset({5, 6, 7, 8})


def upright(frame: Image.Image, source: Image.Image) -> Image.Image:
    """``frame`` (decoded from ``source``'s current frame) turned as its EXIF orientation
    says; itself when there is none. The orientation is read from ``source``: a converted
    copy has lost a TIFF's tags, where its EXIF lives."""
    method = _ORIENTATIONS.get(source.getexif().get(_ORIENTATION_TAG, 1))
    return frame if method is None else frame.transpose(method)


def check_regular_file(path: str | os.PathLike[str]) -> None:
    """Raise :class:`ImageError` with the sentence :func:`load_image` would say if ``path``
    is not a regular file this process can read (missing, a folder, permission denied, a
    pipe): for a decoder that opens the file by name itself (FFmpeg)."""
    with _open_regular_file(os.fspath(path)):
        pass


@contextmanager
def _decoding(name: str) -> Iterator[None]:
    """Turn whatever Pillow raises while it opens or decodes ``name`` into an ImageError."""
    try:
        with warnings.catch_warnings():
            # Pillow warns about oddities (corrupt EXIF, odd palettes) on stderr; a damaged
            # file is reported by the exception below, in one sentence, so the CLI prints one
            # line. Pillow's own bomb warning is replaced by _check_size, which applies
            # tkshm's limit instead of Pillow's global one.
            warnings.simplefilter("ignore")
            yield
    except UnidentifiedImageError as exc:
        raise NotAnImageError(f"{name} is not an image that tkshm can read.", name) from exc
    except Image.DecompressionBombError as exc:
        # Pillow refuses before tkshm can look (above twice its MAX_IMAGE_PIXELS).
        claimed = _CLAIMED_PIXELS.search(str(exc))
        what = f"{int(claimed.group(1)):,} pixels" if claimed else "too many pixels"
        raise ImageTooLargeError(
            f"{name} claims {what}, more than the {MAX_PIXELS:,} that tkshm decodes safely "
            "(a decompression bomb?); it was not decoded.",
            name,
        ) from exc
    except NotImplementedError as exc:
        # Pillow knows the format but not this variant of it (a DirectDraw Surface in a pixel
        # format it does not decode, say).
        raise ImageError(
            f"{name} uses a kind of its format that Pillow cannot decode ({exc}); convert it to PNG first.",
            name,
        ) from exc
    except MemoryError as exc:
        raise ImageTooLargeError(
            f"{name} is too large to decode in the memory available; load a smaller image.", name
        ) from exc
    except _DECODER_ERRORS as exc:
        raise ImageError(
            f"{name} is damaged or truncated and cannot be decoded{_detail(exc)}.", name
        ) from exc


def _detail(exc: BaseException) -> str:
    """What a decoder's exception adds for a person: Pillow's own words ("image file is
    truncated", "decoder error -2"), in parentheses; nothing for the errors of Python's
    lookups and arithmetic ("index out of range", a struct's "unpack requires a buffer"),
    which are about the decoder's code, not about the file."""
    if isinstance(exc, (IndexError, KeyError, TypeError, struct.error)) or not str(exc):
        return ""
    return f" ({exc})"


@contextmanager
def _open_regular_file(name: str) -> Iterator[BinaryIO]:
    """Open ``name`` for reading, refusing anything that is not a regular file.

    ``O_NONBLOCK`` keeps a named pipe (FIFO) from blocking the open until some writer
    appears; ``fstat`` on the open descriptor then tells a file from a pipe, a device or a
    folder without a race between checking and opening.
    """
    try:
        fd = os.open(name, _OPEN_FLAGS)
    except FileNotFoundError as exc:
        raise ImageError(f"{name} does not exist.", name) from exc
    except PermissionError as exc:
        if os.path.isdir(name):  # Windows refuses to open a folder with EACCES, not EISDIR
            raise ImageError(f"{name} is a folder, not an image file.", name) from exc
        raise ImageError(f"{name} cannot be read: permission denied.", name) from exc
    except IsADirectoryError as exc:
        raise ImageError(f"{name} is a folder, not an image file.", name) from exc
    except ValueError as exc:  # a NUL byte in the name
        raise ImageError(f"{name!r} is not a valid file name.", name) from exc
    except OSError as exc:
        raise ImageError(f"{name} cannot be opened: {exc.strerror or exc}.", name) from exc
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise ImageError(f"{name} is a folder, not an image file.", name)
        if not stat.S_ISREG(mode):
            raise ImageError(f"{name} is not a regular file (a pipe or a device?); choose an image.", name)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        raw = io.FileIO(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    # A file opened from a descriptor is *named* by that number. Pillow's EPS plugin hands
    # ``name`` to Ghostscript as a path when it exists, and ``os.path.exists(3)`` is true
    # (descriptor 3 is open): "expected str, bytes or os.PathLike object, not int". Without
    # a name, Pillow copies the bytes it reads through our descriptor to a temporary file
    # for Ghostscript instead: the data still comes from the regular file checked above,
    # never from whatever the path might name by then.
    del raw.name
    with io.BufferedReader(raw) as file:
        yield file


def _frame_count(image: Image.Image) -> int:
    """How many frames a viewer of the first one should mention (1 if it is the only one)."""
    if image.format == "PSD":
        # A layered Photoshop file counts its layers as frames 1..n; what it opens at is the
        # composite of all of them, the picture itself, not a first frame of several.
        return 1
    return int(getattr(image, "n_frames", 1))


def _check_size(image: Image.Image, name: str) -> None:
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ImageTooLargeError(
            f"{name} claims {width}x{height} pixels, more than the {MAX_PIXELS:,} "
            "that tkshm decodes safely (a decompression bomb?); it was not decoded.",
            name,
        )
