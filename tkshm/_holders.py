"""Windows: the holders of a segment, so that a grown image outlives the process that grew it.

A named mapping lives while some process has a handle to it. When a process grows a segment it
makes a successor mapping (``tkshm._windows``), and until the others follow it -- the next time
they take the lock -- the grower's handle is the only one. A grower that exits first (a script
that publishes and ends, a killed ``tkshm play``) would take the image with it, while a window
idle in its main loop still holds the segment: on POSIX the file stays, on Windows it would not.

So every attached process writes itself into a table in the segment's directory page, and a
grower *gives* each holder a handle to the successor: ``DuplicateHandle`` puts a handle into
the other process's own handle table, without its help (it may be idle, busy or suspended).
The mapping then lives as long as any holder does, as Qt's rule says. A holder that follows
closes the handle it was given; one that detaches closes it too; Windows closes it for one
that is killed.

Two kinds of byte-range lock (``LockFileEx``) on the segment's lock file, past the range of the
data lock, keep the table honest:

* **an entry lock per holder**, held for as long as it is attached: Windows releases it when
  the holder dies, so an entry whose lock can be taken is free, whatever its bytes say;
* **the table lock**, held for a few microseconds by whoever changes the table or a handle it
  records, so that a handle is never closed twice (once by its holder, once by a grower
  replacing it).

Holder table (little-endian, in the directory page after its record):

=======  ===============  ===============================================================
offset   size             meaning
=======  ===============  ===============================================================
64       32 x ``SLOTS``   one entry per holder: pid (u32), flags (u32: 1, it waits for frames
                          with an event, ``tkshm._events``), the process's creation
                          time (u64, FILETIME), the handle a grower gave it (u64, a value in
                          *its* handle table; 0 for none) and the serial of that mapping (u64)
=======  ===============  ===============================================================
"""

from __future__ import annotations

import _winapi
import contextlib
import ctypes
import mmap
import os
import struct
import sys
from collections.abc import Iterator
from ctypes import wintypes
from typing import Final

from . import _byterange, _locking, trace

assert sys.platform == "win32"

_TABLE: Final = 64  # where the entries start in the directory page
_ENTRY: Final = struct.Struct("<IIQQQ")
_PID: Final = struct.Struct("<I")
_FLAGS: Final = struct.Struct("<I")
_FLAGS_AT: Final = 4
_GIVEN: Final = struct.Struct("<QQQ")
_GIVEN_AT: Final = 8
WAITING: Final = 0x1  # flags: the holder waits for frames with an event (tkshm._events)
SLOTS: Final = (mmap.PAGESIZE - _TABLE) // _ENTRY.size  # 126 holders of one key at once
# Where in the lock file (the high 32 bits of the byte offset; see tkshm._byterange).
_OFFSET_HIGH: Final = _byterange.HOLDERS
_TABLE_LOCK: Final = 0
_ENTRY_LOCKS: Final = 1
# The table lock is held for microseconds; a holder stopped inside it is waited for this long.
_TABLE_TIMEOUT: Final = 2.0
_PROCESS_DUP_HANDLE: Final = 0x40
_PROCESS_QUERY_LIMITED_INFORMATION: Final = 0x1000
_DUPLICATE_CLOSE_SOURCE: Final = 0x1
_DUPLICATE_SAME_ACCESS: Final = 0x2


_kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
_FILETIME = ctypes.c_ulonglong
_kernel32.GetProcessTimes.argtypes = [wintypes.HANDLE, *[ctypes.POINTER(_FILETIME)] * 4]
_kernel32.GetProcessTimes.restype = wintypes.BOOL


def _try_lock_byte(fd: int, offset: int) -> bool:
    return _byterange.try_lock(fd, _OFFSET_HIGH, offset, exclusive=True)


def _unlock_byte(fd: int, offset: int) -> None:
    _byterange.unlock(fd, _OFFSET_HIGH, offset)


def _created(process: int) -> int:
    """When ``process`` (a handle) started: with its pid, who it is (pids are reused)."""
    times = [_FILETIME() for _ in range(4)]
    if not _kernel32.GetProcessTimes(process, *(ctypes.byref(t) for t in times)):
        return 0
    return int(times[0].value)


class Holders:
    """This process's entry in one segment's holder table, and a grower's use of the table."""

    def __init__(self, directory: mmap.mmap, lock_fd: int) -> None:
        self._directory = directory
        self._fd = lock_fd
        self.pid = os.getpid()
        self._created = _created(_winapi.GetCurrentProcess())
        self.index: int | None = None  # our entry, while registered

    # -- the table, under its lock ---------------------------------------------------------
    @contextlib.contextmanager
    def _table(self) -> Iterator[bool]:
        """The table lock; yields False (and the caller does without) if a holder stopped
        inside it keeps it past the timeout."""
        locked = _locking.wait_for(lambda: _try_lock_byte(self._fd, _TABLE_LOCK), _TABLE_TIMEOUT) is not None
        if not locked:
            trace.step("holders: the table is locked by a stopped process; going on without it")
        try:
            yield locked
        finally:
            if locked:
                _unlock_byte(self._fd, _TABLE_LOCK)

    def _entry(self, index: int) -> tuple[int, int, int, int, int]:
        return _ENTRY.unpack_from(self._directory, _TABLE + index * _ENTRY.size)

    def _set(self, index: int, pid: int = 0, created: int = 0, handle: int = 0, serial: int = 0) -> None:
        """Write an entry, all but its flags (which only its holder writes)."""
        at = _TABLE + index * _ENTRY.size
        _PID.pack_into(self._directory, at, pid)
        _GIVEN.pack_into(self._directory, at + _GIVEN_AT, created, handle, serial)

    def _set_flags(self, index: int, flags: int) -> None:
        _FLAGS.pack_into(self._directory, _TABLE + index * _ENTRY.size + _FLAGS_AT, flags)

    # -- wake-ups (tkshm._events) ------------------------------------------------------------
    def set_waiting(self, on: bool) -> None:
        """Mark our entry as having a wake-up event that writers should set."""
        if self.index is not None:
            self._set_flags(self.index, WAITING if on else 0)

    def waiting(self) -> set[tuple[int, int, int]]:
        """The entries, other than ours, whose holders wait with an event: (entry, pid,
        created). Read without the lock (one copy of the table): a writer needs no more."""
        table = self._directory[_TABLE : _TABLE + SLOTS * _ENTRY.size]
        return {
            (index, pid, created)
            for index, (pid, flags, created, _, _) in enumerate(_ENTRY.iter_unpack(table))
            if flags & WAITING and pid and index != self.index
        }

    # -- a holder --------------------------------------------------------------------------
    def register(self) -> None:
        """Write this process into a free entry and hold that entry's lock while attached."""
        with self._table() as locked:
            if not locked:
                return
            for index in range(SLOTS):
                if _try_lock_byte(self._fd, _ENTRY_LOCKS + index):  # free: nobody alive holds it
                    self._set(index, self.pid, self._created)
                    self._set_flags(index, 0)
                    self.index = index
                    return
        trace.step("holders: %d processes hold this segment already; not recorded", SLOTS)

    def followed(self, serial: int) -> None:
        """We have mapped ``serial`` ourselves: a handle given to us for it (or an older one)
        is no longer needed."""
        index = self.index
        if index is None or self._entry(index)[3] == 0:
            return  # (the cheap check, without the lock: nothing given)
        with self._table() as locked:
            if locked:
                self._close_given(index, up_to=serial)

    def unregister(self) -> None:
        """Detaching: close what we were given, free our entry."""
        index, self.index = self.index, None
        if index is None:
            return
        with self._table() as locked:
            if locked:
                self._close_given(index)
                self._set(index)
                self._set_flags(index, 0)
        _unlock_byte(self._fd, _ENTRY_LOCKS + index)

    def _close_given(self, index: int, up_to: int | None = None) -> None:
        """(Table lock held.) Close the handle given to us, unless it is for a mapping newer
        than ``up_to``, which we have not followed yet."""
        pid, _, created, handle, serial = self._entry(index)
        if handle and (up_to is None or serial <= up_to):
            with contextlib.suppress(OSError):
                _winapi.CloseHandle(handle)
            self._set(index, pid, created)

    # -- a grower --------------------------------------------------------------------------
    def give(self, tagname: str, serial: int) -> int:
        """Put a handle to mapping ``tagname`` into every other live holder not holding it yet
        (closing the one it was given before, for a mapping it never followed); return how
        many were given one. Entries of processes that died are freed on the way."""
        given = 0
        with self._table() as locked:
            if not locked:
                return 0
            source: int | None = None
            try:
                for index in range(SLOTS):
                    pid, _, created, handle, had = self._entry(index)
                    if index == self.index or pid == 0 or had == serial:
                        continue
                    if _try_lock_byte(self._fd, _ENTRY_LOCKS + index):  # its holder died
                        self._set(index)
                        self._set_flags(index, 0)
                        _unlock_byte(self._fd, _ENTRY_LOCKS + index)
                        continue
                    if source is None:
                        source = _winapi.OpenFileMapping(_winapi.FILE_MAP_READ, False, tagname)
                    value = _give_one(pid, created, source, handle)
                    if value is not None:
                        self._set(index, pid, created, value, serial)
                        given += 1
            finally:
                if source is not None:
                    _winapi.CloseHandle(source)
        if given:
            trace.step("holders: gave %d other holder(s) a handle to %s, so it outlives us", given, tagname)
        return given


def _give_one(pid: int, created: int, source: int, old: int) -> int | None:
    """Duplicate ``source`` into process ``pid`` (if it is still the process that registered),
    closing its handle ``old`` there first; the new handle's value in that process, or None."""
    try:
        process = _winapi.OpenProcess(_PROCESS_DUP_HANDLE | _PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
    except OSError:
        return None  # gone (its entry lock is about to be released)
    try:
        if _created(process) != created:
            return None  # the pid belongs to another process now
        if old:
            with contextlib.suppress(OSError):
                _winapi.DuplicateHandle(process, old, 0, 0, False, _DUPLICATE_CLOSE_SOURCE)
        current = _winapi.GetCurrentProcess()
        try:
            return int(_winapi.DuplicateHandle(current, source, process, 0, False, _DUPLICATE_SAME_ACCESS))
        except OSError:
            return None
    finally:
        _winapi.CloseHandle(process)
