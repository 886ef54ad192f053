"""The exceptions tkshm raises, one hierarchy for the library, the CLI and the window.

Every message is a sentence a person can act on; details live in attributes and in
``__cause__`` (the ``OSError`` or Pillow error underneath)::

    TkshmError                      base class: catch this to catch everything below
    ├── InvalidKeyError             the key cannot name a segment (empty, NUL, too long)
    ├── SegmentNotFoundError        nothing is published under the key ("load an image first")
    ├── SegmentInUseError           a live process holds the segment a publisher needs to create
    ├── LockTimeoutError            another process held the lock for longer than the timeout
    ├── CorruptSegmentError         the header is not a valid tkshm header
    │   └── IncompleteImageError    a writer died half-way through copying pixels
    ├── UnsafePathError             a symlink, a foreign owner or loose permissions on our files
    ├── OutOfSharedMemoryError      the shared-memory file system is full
    └── ImageError                  a file that cannot be shown: not an image, truncated, unreadable
        ├── NotAnImageError         no image format Pillow knows (a video, a text file, ...)
        ├── ImageTooLargeError      too many pixels to decode safely (a decompression bomb)
        └── ArrayError              a NumPy array that is not an image: its dtype, shape or size
"""

from __future__ import annotations

__all__ = [
    "ArrayError",
    "CorruptSegmentError",
    "ImageError",
    "ImageTooLargeError",
    "IncompleteImageError",
    "InvalidKeyError",
    "LockTimeoutError",
    "NotAnImageError",
    "OutOfSharedMemoryError",
    "SegmentInUseError",
    "SegmentNotFoundError",
    "TkshmError",
    "UnsafePathError",
]


class TkshmError(Exception):
    """Base class of every error tkshm raises; ``str(error)`` is meant for people."""


class InvalidKeyError(TkshmError, ValueError):
    """The key cannot name a segment."""


class SegmentNotFoundError(TkshmError):
    """No segment exists under this key (or its last holder is gone)."""

    def __init__(self, key: str, message: str | None = None) -> None:
        super().__init__(
            message
            or f"Nothing is published under key {key!r}: no process holds a segment for it. "
            "Publish an image there first (ipc.publish, or tkshm put)."
        )
        self.key = key


class SegmentInUseError(TkshmError):
    """The segment a publisher must create exists and a live process holds it (Qt's example
    says "Unable to create shared memory segment.")."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class LockTimeoutError(TkshmError, TimeoutError):
    """Another process held the segment's lock for longer than we were willing to wait."""

    def __init__(self, key: str, timeout: float, message: str | None = None) -> None:
        super().__init__(
            message
            or f"Shared memory segment {key!r} is busy: another process has held its lock "
            f"for more than {timeout:g} s. Try again."
        )
        self.key = key
        self.timeout = timeout


class CorruptSegmentError(TkshmError):
    """The segment's header fails validation; nothing was read from it."""


class IncompleteImageError(CorruptSegmentError):
    """A writer stopped half-way through copying an image (it crashed or was killed)."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"The image in shared memory segment {key!r} is incomplete: the process writing "
            "it stopped half-way. Load the image again."
        )
        self.key = key


class UnsafePathError(TkshmError):
    """A path tkshm uses is a symlink, belongs to someone else, or is readable by others."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"Refusing to use {path}: {problem}.")
        self.path = path
        self.problem = problem


class OutOfSharedMemoryError(TkshmError):
    """No room for the image: the tmpfs behind the segments is full, or (Windows) the commit limit."""


class ImageError(TkshmError):
    """A file that tkshm cannot turn into an image."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class NotAnImageError(ImageError):
    """A readable file in no image format Pillow knows: ``tkshm play`` then tries it as a video."""


class ImageTooLargeError(ImageError):
    """An image with more pixels than tkshm decodes (a decompression-bomb guard)."""


class ArrayError(ImageError, ValueError):
    """A NumPy array that cannot be a frame: not an array, not uint8, not H x W x 4, 3 or
    H x W, no pixels; or an ``into`` array the frame does not fit."""
