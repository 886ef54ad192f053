"""Windows backend: a named, pagefile-backed file mapping (``CreateFileMapping``).

Python's ``mmap(-1, size, tagname=...)`` creates the mapping or opens the existing one of
that name; Windows frees it when the last handle closes, crash included, so presence needs
no lock of its own. The data lock is a portalocker lock on a file in the user's temp folder.

A named mapping cannot grow, so it is created at once with room for an 8K image (pages are
committed lazily by Windows, not touched); a bigger image needs every other holder to detach
first. This path is reviewed but untested by this project's CI on Linux.
"""

from __future__ import annotations

import mmap
import os
import tempfile
from collections.abc import Iterator
from typing import Final

from .errors import SegmentNotFoundError, SegmentTooSmallError
from .header import HEADER_SIZE, MAGIC, Header

TEMP_SUFFIX: Final = ".tmp"  # unused here: mappings are created atomically by Windows

# 7680 x 4320 RGBA: any image up to 8K fits without re-creating the mapping.
DEFAULT_CAPACITY: Final = 7680 * 4320 * 4
_CAPACITY: Final = slice(48, 56)  # the header's capacity field


def segment_directory() -> str:
    """Where the lock files live; the mappings themselves have no path."""
    return os.environ.get("TKSHM_DIR") or os.path.join(tempfile.gettempdir(), "tkshm")


class WindowsSegmentFile:
    """One attached named mapping plus its open lock file."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.path = "Local\\" + name
        self.lock_fd = -1
        self.map: mmap.mmap | None = None
        self.created = False

    @classmethod
    def open(cls, name: str, key: str, create_capacity: int | None) -> WindowsSegmentFile:
        self = cls(name)
        try:
            os.makedirs(segment_directory(), exist_ok=True)
            lock_path = os.path.join(segment_directory(), name + ".lock")
            self.lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            # Opening by name either joins the existing mapping or creates a zero-filled one;
            # the magic number tells which. A joined mapping's real size is in its header.
            probe = mmap.mmap(-1, HEADER_SIZE, tagname=self.path)  # type: ignore[call-arg]  # Windows-only argument
            try:
                exists = probe[: len(MAGIC)] == MAGIC
                capacity = int.from_bytes(probe[_CAPACITY], "little")
                if not exists:
                    if create_capacity is None:
                        raise SegmentNotFoundError(key)
                    capacity = max(create_capacity, DEFAULT_CAPACITY)
                self.map = mmap.mmap(-1, HEADER_SIZE + capacity, tagname=self.path)  # type: ignore[call-arg]  # Windows-only argument
            finally:
                probe.close()
            self.created = not exists
            if not exists:
                record = Header.empty(capacity, os.getpid()).pack()
                self.map[: len(record)] = record
        except BaseException:
            self.close()
            raise
        return self

    def remap(self) -> None:
        """Named mappings never change size, so there is nothing to re-map."""

    def grow(self, size: int) -> None:
        raise SegmentTooSmallError(
            f"The image needs {size / 1e6:.1f} MB, more than this shared memory segment holds "
            "on Windows. Close the other windows that show it, then load the image again."
        )

    def close(self) -> bool:
        if self.map is not None:
            self.map.close()
            self.map = None
        if self.lock_fd >= 0:
            os.close(self.lock_fd)
            self.lock_fd = -1
        return False  # Windows frees the mapping itself when the last handle closes


SegmentFile = WindowsSegmentFile


def list_entries() -> Iterator[tuple[str, str, int, bool, bytes | None]]:
    """Windows cannot enumerate named mappings; we look up those our lock files name."""
    folder = segment_directory()
    if not os.path.isdir(folder):
        return
    for entry in sorted(os.listdir(folder)):
        if not entry.endswith(".lock"):
            continue
        name = entry[: -len(".lock")]
        probe = mmap.mmap(-1, HEADER_SIZE, tagname="Local\\" + name)  # type: ignore[call-arg]
        try:
            page = bytes(probe[:HEADER_SIZE])
        finally:
            probe.close()
        if page.startswith(MAGIC):
            size = HEADER_SIZE + int.from_bytes(page[_CAPACITY], "little")
            yield name, "Local\\" + name, size, True, page


def remove_orphans() -> list[str]:
    """Windows removes orphaned mappings by itself; nothing is ever left to clean."""
    return []
