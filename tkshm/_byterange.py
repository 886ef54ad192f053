"""Windows: locks on single bytes of a segment's lock file, beside its data lock.

``LockFileEx`` locks a byte range of a file, shared or exclusive, per open handle, and Windows
releases it when its holder dies -- the same promise as the data lock. The data lock
(portalocker's ``Win32Locker``) covers the bytes below ``0xFFFF0000 << 32``; a range may lie
past the end of the file, so the locks here live beyond it, one byte each, in areas named by
the high 32 bits of their offset: the frame slots' leases (``SLOTS``) and the holder table
(``HOLDERS``, :mod:`tkshm._holders`). On POSIX each of these is a file of its own with ``flock``.
"""

from __future__ import annotations

import ctypes
import msvcrt
import sys
from ctypes import wintypes
from typing import Final

assert sys.platform == "win32"

SLOTS: Final = 0xFFFF4000
HOLDERS: Final = 0xFFFF8000
_LOCKFILE_FAIL_IMMEDIATELY: Final = 0x1
_LOCKFILE_EXCLUSIVE_LOCK: Final = 0x2


class _Overlapped(ctypes.Structure):
    _fields_ = [
        ("Internal", ctypes.c_void_p),
        ("InternalHigh", ctypes.c_void_p),
        ("Offset", wintypes.DWORD),
        ("OffsetHigh", wintypes.DWORD),
        ("hEvent", wintypes.HANDLE),
    ]


_kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
_kernel32.LockFileEx.argtypes = [
    wintypes.HANDLE, wintypes.DWORD, wintypes.DWORD, wintypes.DWORD, wintypes.DWORD,
    ctypes.POINTER(_Overlapped),
]  # fmt: skip
_kernel32.LockFileEx.restype = wintypes.BOOL
_kernel32.UnlockFileEx.argtypes = [
    wintypes.HANDLE, wintypes.DWORD, wintypes.DWORD, wintypes.DWORD, ctypes.POINTER(_Overlapped),
]  # fmt: skip
_kernel32.UnlockFileEx.restype = wintypes.BOOL


def try_lock(fd: int, area: int, offset: int, exclusive: bool) -> bool:
    """Lock byte ``offset`` of ``area`` in file ``fd``, never waiting; False if another
    handle holds it the other way (or at all, for ``exclusive``)."""
    overlapped = _Overlapped(Offset=offset, OffsetHigh=area)
    flags = _LOCKFILE_FAIL_IMMEDIATELY | (_LOCKFILE_EXCLUSIVE_LOCK if exclusive else 0)
    return bool(_kernel32.LockFileEx(msvcrt.get_osfhandle(fd), flags, 0, 1, 0, ctypes.byref(overlapped)))


def unlock(fd: int, area: int, offset: int) -> None:
    overlapped = _Overlapped(Offset=offset, OffsetHigh=area)
    _kernel32.UnlockFileEx(msvcrt.get_osfhandle(fd), 0, 1, 0, ctypes.byref(overlapped))
