"""Qt's shared memory on Windows: a named file mapping and a named semaphore.

Windows names kernel objects directly, in this logon session's namespace (a name without a
``Local\\`` or ``Global\\`` prefix is the session's), so Qt needs no key files here:

============  =======================================  =========================================
Qt's key      the mapping (``CreateFileMapping``)      the semaphore (``CreateSemaphore``)
============  =======================================  =========================================
legacy ``K``  ``qipc_sharedmemory_`` letters SHA-1     ``qipc_systemsem_`` letters SHA-1
native ``K``  ``K``                                    ``K_sem``
============  =======================================  =========================================

(``keys.legacy_name`` and ``keys.native_windows_names`` make the names.) Two facts of Windows
decide what a crash leaves:

* The kernel counts the handles to each object and destroys it with the last one, whether
  its holder closed it or was killed. A mapping never outlives its last holder: Windows has no
  orphans, and nothing for ``clean`` to remove.
* A semaphore is a counter, not an owned lock: unlike a mutex, it is not given back when the
  process that took it dies. A Qt program killed inside ``lock()`` leaves the count at 0 for
  as long as any other process has the semaphore open, and Qt's next ``lock()`` (its
  ``attach()`` and ``detach()`` lock too) waits for ever. tkshm waits at most its timeout and
  says so; ``tkshm clean --qt`` gives the count back.
"""

from __future__ import annotations

import _winapi  # the stdlib's own Win32 bindings (waits, handles)
import contextlib
import ctypes
import sys
from collections.abc import Iterator
from ctypes import wintypes
from typing import Final

from .. import _mappings
from ..errors import LockTimeoutError, SegmentInUseError, SegmentNotFoundError, TkshmError
from .backend import MappedBackend

assert sys.platform == "win32", "Qt's Windows objects: named file mappings and semaphores"

_WAIT_OBJECT_0: Final = 0
_WAIT_TIMEOUT: Final = 0x102
_LONGEST_WAIT_MS: Final = 0xFFFFFFFE  # INFINITE (0xFFFFFFFF) would be Qt's wait for ever
_MAXLONG: Final = 0x7FFFFFFF  # the most the count may reach: what Qt asks for
_SEMAPHORE_RIGHTS: Final = 0x00100000 | 0x0002  # SYNCHRONIZE (to wait) | SEMAPHORE_MODIFY_STATE
_ERROR_FILE_NOT_FOUND: Final = 2
_ERROR_INVALID_HANDLE: Final = 6  # the name is taken by an object of another kind

_kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
_kernel32.CreateSemaphoreW.argtypes = [ctypes.c_void_p, wintypes.LONG, wintypes.LONG, wintypes.LPCWSTR]
_kernel32.CreateSemaphoreW.restype = wintypes.HANDLE
_kernel32.OpenSemaphoreW.argtypes = [wintypes.DWORD, wintypes.BOOL, wintypes.LPCWSTR]
_kernel32.OpenSemaphoreW.restype = wintypes.HANDLE
_kernel32.ReleaseSemaphore.argtypes = [wintypes.HANDLE, wintypes.LONG, ctypes.c_void_p]
_kernel32.ReleaseSemaphore.restype = wintypes.BOOL


class WindowsNamed(MappedBackend):
    """A ``QSharedMemory`` on Windows: ``mapping_name`` and ``semaphore_name`` as Qt derives them."""

    def __init__(self, key: str, version: int, mapping_name: str, semaphore_name: str) -> None:
        super().__init__(key)
        self.protocol = f"Qt {version}"
        self.mapping_name = mapping_name
        self.semaphore_name = semaphore_name
        self._semaphore: int | None = None

    def objects(self) -> list[str]:
        return [f"file mapping {self.mapping_name}", f"semaphore {self.semaphore_name}"]

    def summary(self) -> str:
        return f"file mapping {self.mapping_name} and semaphore {self.semaphore_name}"

    # -- the segment ---------------------------------------------------------------------------
    def create(self, size: int) -> None:
        try:
            mapped = _mappings.create_mapping(self.mapping_name, size)
        except OSError as exc:
            raise self._refused("file mapping", self.mapping_name, exc) from None
        if mapped is None:  # the name exists, so a live process holds it: there are no orphans
            raise SegmentInUseError(
                self.key,
                f"Unable to create shared memory segment: {self.where} is held by another process "
                f"(the file mapping {self.mapping_name} exists). Windows removes it when its last "
                "holder closes it; Qt's example does when it loads another image or quits.",
            )
        self._map = mapped

    def attach(self) -> int:
        try:
            mapped = _mappings.open_mapping(self.mapping_name)
        except OSError as exc:
            raise self._refused("file mapping", self.mapping_name, exc) from None
        if mapped is None:
            raise SegmentNotFoundError(
                self.key,
                f"Nothing is published under Qt's key {self.key!r}: there is no file mapping "
                f"{self.mapping_name}. Load an image in Qt's example, or publish one with "
                f"tkshm put --qt {self._version}.",
            )
        self._map = mapped
        return len(mapped)  # whole pages: the size Qt's own reader sees (VirtualQuery)

    def detach(self) -> bool:
        self._unmap()  # Windows destroys the mapping with its last handle, not we
        return False

    # -- the lock ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, timeout: float) -> Iterator[None]:
        semaphore = self._semaphore_open()
        if not _wait(semaphore, timeout):
            raise LockTimeoutError(
                self.key, timeout,
                f"Qt's semaphore {self.semaphore_name} stayed taken for more than {timeout:g} s. A Qt "
                "program killed while it held the lock leaves it taken for as long as another process "
                "has it open (a Windows semaphore is not given back by a process that dies); if none "
                f"is copying now, tkshm clean --qt {self._version} --key {self.key} releases it.",
            )  # fmt: skip
        try:
            yield
        finally:
            _kernel32.ReleaseSemaphore(semaphore, 1, None)

    def _semaphore_open(self) -> int:
        if self._semaphore is None:
            # As QSystemSemaphore: create it with a count of 1, or open the one that exists
            # (its count is then whatever its holders left).
            handle = _kernel32.CreateSemaphoreW(None, 1, _MAXLONG, self.semaphore_name)
            if not handle:
                error = ctypes.WinError(ctypes.get_last_error())
                raise self._refused("semaphore", self.semaphore_name, error)
            self._semaphore = int(handle)
        return self._semaphore

    def close(self) -> None:
        self.detach()
        semaphore, self._semaphore = self._semaphore, None
        if semaphore is not None:
            _winapi.CloseHandle(semaphore)  # as Qt: the last handle closed destroys it

    def clean(self, timeout: float) -> list[str]:
        # A killed holder's mapping went with its handles; only a semaphore left at 0 can
        # remain, and only while some process has it open (a new one would start at 1).
        handle = _kernel32.OpenSemaphoreW(_SEMAPHORE_RIGHTS, False, self.semaphore_name)
        if not handle:
            code = ctypes.get_last_error()
            if code == _ERROR_FILE_NOT_FOUND:
                return []
            raise self._refused("semaphore", self.semaphore_name, ctypes.WinError(code))
        try:
            if _wait(int(handle), timeout):
                _kernel32.ReleaseSemaphore(handle, 1, None)
                return []
            _kernel32.ReleaseSemaphore(handle, 1, None)
        finally:
            _winapi.CloseHandle(int(handle))
        return [
            f"Released Qt's semaphore {self.semaphore_name}: it had been taken for more than "
            f"{timeout:g} s (a holder killed inside lock()?)"
        ]

    @property
    def _version(self) -> str:
        return self.protocol.removeprefix("Qt ")

    def _refused(self, what: str, name: str, exc: OSError) -> TkshmError:
        if exc.winerror == _ERROR_INVALID_HANDLE:
            return TkshmError(
                f"Windows will not use the name {name} for Qt's {what}: another kind of object has it."
            )
        reason = (exc.strerror or str(exc)).rstrip(". ")
        return TkshmError(f"Windows refused Qt's {what} {name}: {reason}.")


def semaphore_exists(name: str) -> bool:
    """Whether some process still has the semaphore ``name`` open (so it exists)."""
    handle = _kernel32.OpenSemaphoreW(_SEMAPHORE_RIGHTS, False, name)
    if not handle:
        return False
    _winapi.CloseHandle(int(handle))
    return True


def _wait(handle: int, timeout: float) -> bool:
    """Take one count of the semaphore within ``timeout`` seconds: ``WaitForSingleObject``."""
    milliseconds = min(_LONGEST_WAIT_MS, max(0, int(timeout * 1000)))
    result = _winapi.WaitForSingleObject(handle, milliseconds)
    if result == _WAIT_OBJECT_0:
        return True
    if result == _WAIT_TIMEOUT:
        return False
    raise OSError(f"WaitForSingleObject on a semaphore returned {result:#x}")  # WAIT_FAILED raises
