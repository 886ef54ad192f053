"""Named, pagefile-backed file mappings on Windows (``CreateFileMapping``): create one, or join one.

A name in ``CreateFileMapping`` is a kernel object's name. Asking for it creates the mapping
or, if the name exists, silently opens the existing one: so a creator checks
``ERROR_ALREADY_EXISTS`` and a joiner asks ``OpenFileMapping``, which never creates (as
``multiprocessing.shared_memory`` does). The kernel counts the handles: the mapping goes when
the last process holding one closes it or dies. tkshm's own segments and Qt's both use this.
"""

from __future__ import annotations

import _winapi  # the stdlib's own Win32 bindings, as multiprocessing.shared_memory uses them
import mmap
import sys
from typing import Final

from .errors import OutOfSharedMemoryError

assert sys.platform == "win32"

PAGE: Final = 4096
_ERROR_FILE_NOT_FOUND: Final = 2
_ERROR_NOT_ENOUGH_MEMORY: Final = (8, 1455)  # ERROR_NOT_ENOUGH_MEMORY, ERROR_COMMITMENT_LIMIT


def page_round(size: int) -> int:
    """Windows hands out whole pages; a joiner sees the section's page-rounded size, so a
    creator that asks for exactly that agrees with everyone on the capacity."""
    return -(-size // PAGE) * PAGE


def create_mapping(tagname: str, size: int) -> mmap.mmap | None:
    """A new pagefile-backed mapping named ``tagname``, or None if the name is taken."""
    try:
        handle = _winapi.CreateFileMapping(
            _winapi.INVALID_HANDLE_VALUE, _winapi.NULL, _winapi.PAGE_READWRITE,
            size >> 32, size & 0xFFFFFFFF, tagname,
        )  # fmt: skip
    except OSError as exc:
        if exc.winerror in _ERROR_NOT_ENOUGH_MEMORY:
            raise OutOfSharedMemoryError(
                f"There is not enough memory for {size / 1e6:.1f} MB of shared memory. "
                "Close other programs, or load a smaller image."
            ) from exc
        raise
    try:
        if _winapi.GetLastError() == _winapi.ERROR_ALREADY_EXISTS:
            return None
        # mmap opens the same name again; our handle keeps the section alive meanwhile.
        return mmap.mmap(-1, size, tagname=tagname)
    finally:
        _winapi.CloseHandle(handle)


def open_mapping(tagname: str) -> mmap.mmap | None:
    """Join the existing mapping named ``tagname`` at its own size, or None if there is none."""
    try:
        handle = _winapi.OpenFileMapping(_winapi.FILE_MAP_READ, False, tagname)
    except OSError as exc:
        if exc.winerror == _ERROR_FILE_NOT_FOUND:
            return None
        raise
    try:
        view = _winapi.MapViewOfFile(handle, _winapi.FILE_MAP_READ, 0, 0, 0)
        try:
            size = _winapi.VirtualQuerySize(view)
        finally:
            _winapi.UnmapViewOfFile(view)
        return mmap.mmap(-1, size, tagname=tagname)
    finally:
        _winapi.CloseHandle(handle)


def exists(tagname: str) -> bool:
    """Whether some process still holds a mapping named ``tagname`` (only then does it exist)."""
    try:
        handle = _winapi.OpenFileMapping(_winapi.FILE_MAP_READ, False, tagname)
    except OSError:
        return False
    _winapi.CloseHandle(handle)
    return True
