"""Pillow at the edge: decode files safely and turn any image mode into straight RGBA.

The IPC layer moves RGBA bytes only; this module is where a file becomes such an image,
and where every way a file can be wrong becomes an :class:`ImageError` with a sentence.
"""

from __future__ import annotations

import errno
import os
import struct
import warnings
import zlib
from dataclasses import dataclass
from typing import Final

from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError, ImageTooLargeError

# 8K UHD is 33 million pixels; allow a comfortable margin above it, but refuse a file whose
# header promises more before decoding a single row (a decompression bomb: a few bytes of
# file that would expand into gigabytes of RAM).
MAX_PIXELS: Final = 100_000_000
_SIXTEEN_BIT_MODES: Final = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})


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
    try:
        return image.convert("RGBA")
    except ValueError:  # modes without a direct route (LAB, HSV, ...) go through RGB
        return image.convert("RGB").convert("RGBA")


def load_image(path: str | os.PathLike[str]) -> LoadedImage:
    """Decode an image file fully, right way up, as RGBA; raise :class:`ImageError` if not.

    Decoding happens here, before any lock is taken, so a bad file never touches a segment.
    """
    name = os.fspath(path)
    if os.path.isdir(name):
        raise ImageError(f"{name} is a folder, not an image file.", name)
    try:
        with warnings.catch_warnings():
            # Pillow warns (rather than fails) between MAX_IMAGE_PIXELS and twice that.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(name) as opened:
                _check_size(opened, name)
                frame_count = getattr(opened, "n_frames", 1)
                opened.seek(0)
                opened.load()
                fmt = opened.format or "unknown"
                upright = ImageOps.exif_transpose(opened)
                rgba = to_rgba(upright)
                if rgba is opened:
                    rgba = opened.copy()  # detach from the file we are about to close
    except FileNotFoundError as exc:
        raise ImageError(f"{name} does not exist.", name) from exc
    except PermissionError as exc:
        raise ImageError(f"{name} cannot be read: permission denied.", name) from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"{name} is not an image that tkshm can read.", name) from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"{name} is too large to decode safely ({exc}).", name) from exc
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as exc:
        if isinstance(exc, OSError) and exc.errno == errno.EISDIR:
            raise ImageError(f"{name} is a folder, not an image file.", name) from exc
        raise ImageError(f"{name} is damaged or truncated and cannot be decoded ({exc}).", name) from exc
    return LoadedImage(rgba, name, fmt, frame_count)


def _check_size(image: Image.Image, name: str) -> None:
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ImageTooLargeError(
            f"{name} claims {width}x{height} pixels, more than the {MAX_PIXELS:,} "
            "that tkshm decodes safely; it was not decoded.",
            name,
        )
