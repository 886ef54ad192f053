"""Windows backend: named, pagefile-backed file mappings (``CreateFileMapping``).

Python's ``mmap(-1, size, tagname=name)`` maps a named section of the paging file; Windows
frees it when its last handle closes -- crash included -- so presence needs no lock of its own.
Three Windows facts shape the rest:

* **A named mapping never changes size.** Opening the name again joins the section at the size
  it was created with (and a bigger view is refused). So a segment is two mappings: a one-page
  *directory* ``Local\\N`` whose record names the current *data* mapping ``Local\\N.<serial>``
  (the header page and the pixels, the same bytes as a POSIX ``.seg`` file). Growing creates a
  successor with the next serial, sized for the image, and points the directory at it; the
  others follow it the next time they take the lock. Windows frees the old one when its last
  holder has moved on. Until they follow, each holder keeps the successor alive with a handle
  the grower put into its process (:mod:`tkshm._holders`), so a grower that exits or is
  killed first takes nothing with it. Memory is committed for what is shown, not for the largest image.
* **Open or create, explicitly.** ``mmap`` alone creates a mapping it cannot find, so probing a
  name would create it. As ``multiprocessing.shared_memory`` does, we ask ``OpenFileMapping``
  (join only) or ``CreateFileMapping`` and check ``ERROR_ALREADY_EXISTS`` (create only), and
  hand the name to ``mmap`` while that handle keeps the section alive.
* **A file open without FILE_SHARE_DELETE cannot be deleted.** Every attached process holds the
  lock file ``%TEMP%\\tkshm\\N.lock`` open (Python opens files that way). Deleting it after our
  own detach succeeds only if nobody else has it open: that *is* "we were the last holder".
  A killed holder's handles are closed by Windows, so the mappings go; its lock file is left for
  the next attach, create or ``clean`` to delete.

The data lock is ``LockFileEx`` on the lock file, shared or exclusive (portalocker's
``Win32Locker``); Windows releases it when its holder dies.

Directory record (little-endian, at offset 0 of ``Local\\N``):

=======  ====  ========  ==========================================
offset   size  field     meaning
=======  ====  ========  ==========================================
0        8     magic     ``b"TKSHMDIR"``
8        4     version   1
12       4     reserved  0
16       8     serial    the current data mapping is ``Local\\N.<serial>``
24       4     crc32     of bytes 0..23
=======  ====  ========  ==========================================
"""

from __future__ import annotations

import _winapi  # the stdlib's own Win32 bindings, as multiprocessing.shared_memory uses them
import contextlib
import mmap
import os
import stat
import struct
import sys
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import replace
from typing import Final

from portalocker.portalocker import Win32Locker

from . import _byterange, _events, _holders, _locking, _mappings, _unmap, trace
from .errors import (
    CorruptSegmentError,
    LockTimeoutError,
    SegmentNotFoundError,
    TkshmError,
    UnsafePathError,
)
from .header import HEADER_SIZE, Header, State, read_header, write_header

# mypy checks this module only with --platform win32 (pyproject.toml); tkshm.ipc never
# imports it elsewhere, because it chooses the backend once.
assert sys.platform == "win32"

TEMP_SUFFIX: Final = ".tmp"  # never made here: CreateFileMapping creates a name atomically
LOCK_SUFFIX: Final = ".lock"
# A lock per frame slot, as on POSIX (a byte each, ``try_lease``): a reader never keeps a
# writer waiting. A slot added is a successor mapping, which the holders keep alive
# (``tkshm._holders``). Waiting readers are woken by a named event each (``tkshm._events``).
SLOT_LOCKS: Final = True
_NAMESPACE: Final = "Local\\"  # this logon session's objects: other users' sessions cannot see them
_RECORD: Final = struct.Struct("<8sIIQ")
_CRC: Final = struct.Struct("<I")
_DIR_MAGIC: Final = b"TKSHMDIR"
_DIR_VERSION: Final = 1
# How long opening waits for a peer that is creating or growing the segment (it holds the
# exclusive lock for a few system calls, or for a whole copy); then it is "busy".
_OPEN_TIMEOUT: Final = 5.0
# Serials tried past a successor that already exists (left by a grower killed half-way).
_MAX_SERIALS: Final = 64
_ERROR_SHARING_VIOLATION: Final = 32
_REPARSE_POINT: Final = getattr(stat, "FILE_ATTRIBUTE_REPARSE_POINT", 0x400)
_ORPHAN_REMOVED: Final = "orphan: no process holds %s any more (killed?); removed it"
_LOCKER: Final = Win32Locker()


def segment_directory() -> str:
    """Where the lock files live (``%TEMP%\\tkshm``); the mappings themselves have no path."""
    override = os.environ.get("TKSHM_DIR")
    return os.path.abspath(override) if override else os.path.join(tempfile.gettempdir(), "tkshm")


def try_lock(fd: int, exclusive: bool) -> bool:
    """Take the data lock without waiting (``LockFileEx`` through portalocker's Win32Locker,
    for both kinds: one API over one byte range); False if another process has it."""
    return _locking.try_lock(_LOCKER.lock, fd, exclusive)


def unlock(fd: int) -> None:
    _LOCKER.unlock(fd)


def _data_tag(name: str, serial: int) -> str:
    return f"{_NAMESPACE}{name}.{serial}"


def _read_serial(directory: mmap.mmap) -> int | None:
    """The serial the directory names, or None if its record is not (yet, or any more) valid."""
    raw = directory[: _RECORD.size + _CRC.size]
    magic, version, _, serial = _RECORD.unpack_from(raw)
    (crc,) = _CRC.unpack_from(raw, _RECORD.size)
    if magic != _DIR_MAGIC or version != _DIR_VERSION or crc != zlib.crc32(raw[: _RECORD.size]):
        return None
    return int(serial) if serial > 0 else None


def _write_serial(directory: mmap.mmap, serial: int) -> None:
    fields = _RECORD.pack(_DIR_MAGIC, _DIR_VERSION, 0, serial)
    directory[: _RECORD.size + _CRC.size] = fields + _CRC.pack(zlib.crc32(fields))


# -- the lock file ----------------------------------------------------------------------
def _refuse_reparse_point(path: str) -> None:
    """Refuse a symbolic link or junction where we expect our own folder or file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode) or getattr(st, "st_file_attributes", 0) & _REPARSE_POINT:
        raise UnsafePathError(path, "it is a symbolic link or junction")


def _lock_path(name: str) -> str:
    return os.path.join(segment_directory(), name + LOCK_SUFFIX)


def _delete_if_unused(path: str) -> bool:
    """Delete a lock file that no process has open (Windows refuses while one does)."""
    try:
        os.remove(path)
    except FileNotFoundError:
        return False
    except PermissionError as exc:
        if getattr(exc, "winerror", None) in (_ERROR_SHARING_VIOLATION, 5):
            return False
        raise
    return True


class WindowsSegmentFile:
    """One attached segment: the open lock file, the directory mapping and the current data
    mapping. Built only by :meth:`open`."""

    successors = True  # a mapping cannot grow: growing makes a successor (module docstring)

    def __init__(self, name: str, key: str) -> None:
        self.name = name
        self.key = key
        self.path = _NAMESPACE + name
        self.lock_fd = -1
        self.map: mmap.mmap | None = None
        self.created = False
        self._directory: mmap.mmap | None = None
        self._holders: _holders.Holders | None = None  # our entry in the directory's holder table
        self._notifier: _events.Notifier | None = None  # the waiting readers' events, once we publish
        self._serial = 0
        self._lock_file = ""

    @classmethod
    def open(cls, name: str, key: str, create_capacity: int | None) -> WindowsSegmentFile:
        """Attach to segment ``name``; create it with ``create_capacity`` bytes if missing
        (``None``: attach only, raise :class:`SegmentNotFoundError`)."""
        self = cls(name, key)
        try:
            self._open_lock_file(create=create_capacity is not None)
            if create_capacity is None:
                self._attach()
            else:
                self._attach_or_create(create_capacity)
        except BaseException:
            self.close()
            raise
        return self

    def _open_lock_file(self, create: bool) -> None:
        folder = segment_directory()
        _refuse_reparse_point(folder)
        if create:
            os.makedirs(folder, exist_ok=True)
        path = _lock_path(self.name)
        _refuse_reparse_point(path)
        try:
            self.lock_fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o600)
        except FileNotFoundError:
            raise SegmentNotFoundError(self.key) from None
        self._lock_file = path

    def _join(self) -> bool:
        """Map the data mapping that the directory names, without taking the lock (as on POSIX,
        attaching never waits for a writer). False if nothing readable is published."""
        assert self._directory is not None
        directory = self._directory

        def try_once() -> bool:
            serial = _read_serial(directory)
            if serial is None:  # a creator is filling in the record this very moment
                return False
            data = _mappings.open_mapping(_data_tag(self.name, serial))
            if data is None:
                # Either a grower moved on and its old mapping went (look again), or the grower
                # that made this one left before anyone followed it (nothing to find).
                return _read_serial(directory) == serial
            self.map, self._serial = data, serial
            return True

        # A record still invalid after the timeout means its creator was killed half-way.
        return _locking.wait_for(try_once, _OPEN_TIMEOUT) is not None and self.map is not None

    def _register(self) -> None:
        """Enter the holder table before joining: a grower from now on gives us its mapping."""
        assert self._directory is not None
        self._holders = _holders.Holders(self._directory, self.lock_fd)
        self._holders.register()

    def _attach(self) -> None:
        self._directory = _mappings.open_mapping(self.path)
        if self._directory is not None:
            self._register()
        if self._directory is None or not self._join():
            raise SegmentNotFoundError(self.key)  # close() deletes a lock file left by a crash

    def _attach_or_create(self, capacity: int) -> None:
        for _ in range(_MAX_SERIALS):
            self._directory = _mappings.create_mapping(self.path, _mappings.PAGE)
            if self._directory is not None:
                self.created = True
                self._register()
                self._new_data(capacity, after=0)
                return
            self._directory = _mappings.open_mapping(self.path)
            if self._directory is not None:
                self._register()
                break
            # The last holder left between the two calls: create it afresh.
        else:
            raise TkshmError(
                f"Could not attach to shared memory segment {self.key!r}: it keeps changing. Try again."
            )
        if self._join():
            return
        # Nothing readable: start a data mapping again, under the lock, since others are attached.
        if _locking.wait_for(lambda: try_lock(self.lock_fd, True), _OPEN_TIMEOUT) is None:
            raise LockTimeoutError(self.key, _OPEN_TIMEOUT)
        try:
            self._new_data(capacity, after=_read_serial(self._directory) or 0)
        finally:
            unlock(self.lock_fd)

    def _new_data(self, capacity: int, after: int, keep: mmap.mmap | None = None) -> None:
        """Create the next data mapping and make the directory name it (exclusive lock held):
        empty, or holding a copy of ``keep`` (the frames a growing segment must not lose). The
        previous one is ours to close; Windows frees it after the others."""
        assert self._directory is not None
        size = _mappings.page_round(HEADER_SIZE + capacity)
        for serial in range(after + 1, after + 1 + _MAX_SERIALS):
            data = _mappings.create_mapping(_data_tag(self.name, serial), size)
            if data is not None:
                break
        else:
            raise TkshmError(f"Could not create a mapping for shared memory segment {self.key!r}. Try again.")
        if keep is None:
            write_header(data, Header.empty(size - HEADER_SIZE, os.getpid()))
        else:
            with memoryview(keep) as kept:
                data[: len(keep)] = kept  # one copy: the newest frame lives on in the successor
        tag = _data_tag(self.name, serial)
        if self._holders is not None:  # the others hold it before the directory names it,
            self._holders.give(tag, serial)  # so that a kill from here on loses nothing
        _write_serial(self._directory, serial)  # only now can others find it
        if keep is not None:
            _mark_moved(keep)  # (after: a reader that looks again finds the successor named)
        if self._holders is not None:
            self._holders.give(tag, serial)  # whoever joined meanwhile
            self._holders.followed(serial)  # a mapping we were given before is not needed now
        old, self.map, self._serial = self.map, data, serial
        if old is not None:
            _unmap.unmap(old)

    def remap(self, exclusive: bool = False) -> None:
        """Follow the directory to a successor mapping another process made (lock held)."""
        assert self._directory is not None and self.map is not None
        serial = _read_serial(self._directory)
        if serial == self._serial:
            return
        data = _mappings.open_mapping(_data_tag(self.name, serial)) if serial else None
        if data is None:
            if not exclusive:
                raise SegmentNotFoundError(self.key)
            trace.step("remap: the mapping the directory names is gone; starting a new one")
            self._new_data(len(self.map) - HEADER_SIZE, after=max(serial or 0, self._serial))
            return
        trace.step(
            "remap: the segment moved to %s (%s bytes); mapping it",
            _data_tag(self.name, serial or 0),
            f"{len(data):,}",
        )
        old, self.map, self._serial = self.map, data, serial or 0
        _unmap.unmap(old)
        if self._holders is not None:
            self._holders.followed(self._serial)  # a handle a grower gave us is not needed now

    def grow(self, size: int) -> None:
        """Make a successor mapping of at least ``size`` bytes (exclusive lock held)."""
        assert self.map is not None
        self._new_data(size - HEADER_SIZE, after=self._serial, keep=self.map)
        trace.step(
            "grow: new mapping %s of %s bytes; the directory names it, the others follow",
            _data_tag(self.name, self._serial), f"{len(self.map):,}",
        )  # fmt: skip

    def refresh(self) -> None:
        """Follow the directory to a successor another process made (a memory read when
        nothing has changed); SegmentNotFoundError if it has gone."""
        self.remap()

    def try_lease(self, index: int, exclusive: bool) -> bool:
        """A lease on frame slot ``index``: one byte of the lock file, past the data lock's
        range (``tkshm._byterange``), as each slot has a lock file of its own on POSIX."""
        return _byterange.try_lock(self.lock_fd, _byterange.SLOTS, index, exclusive)

    def release_lease(self, index: int) -> None:
        _byterange.unlock(self.lock_fd, _byterange.SLOTS, index)

    def waiter(self) -> _events.Waiter:
        """A wake-up event for this segment (``OSError`` if it cannot have one)."""
        if self._holders is None:
            raise OSError("not in the holder table")
        return _events.Waiter(_NAMESPACE, self.name, self._holders)

    def notify(self, generation: int) -> None:
        """Wake the readers waiting for a new frame: set their events."""
        if self._holders is None:
            return
        if self._notifier is None:
            self._notifier = _events.Notifier(_NAMESPACE, self.name, self._holders)
        self._notifier.notify()

    def close(self) -> bool:
        """Detach; return True if we were the last holder (and so deleted the lock file).

        Idempotent and safe on a half-built object.
        """
        notifier, self._notifier = self._notifier, None
        if notifier is not None:
            notifier.close()
        holders, self._holders = self._holders, None
        if holders is not None:
            holders.unregister()
        for mapping in (self.map, self._directory):
            if mapping is not None:
                _unmap.unmap(mapping)
        self.map = self._directory = None
        if self.lock_fd >= 0:
            os.close(self.lock_fd)
            self.lock_fd = -1
        path, self._lock_file = self._lock_file, ""
        attached, self._serial = self._serial != 0, 0
        if not path or not _delete_if_unused(path):
            return False
        if not attached and not self.created:  # we found no segment, only a crash's lock file
            trace.step(_ORPHAN_REMOVED, path)
        return attached


SegmentFile = WindowsSegmentFile


def _mark_moved(old: mmap.mmap) -> None:
    """Anyone polling the old mapping's generation must notice that something changed: mark
    it WRITING with the next generation, which the successor is about to carry."""
    with contextlib.suppress(CorruptSegmentError):
        header = read_header(old, len(old))
        write_header(old, replace(header, state=State.WRITING, generation=header.generation + 1))


def _lock_files() -> Iterator[tuple[str, str]]:
    folder = segment_directory()
    try:
        entries = sorted(os.listdir(folder))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.endswith(LOCK_SUFFIX):
            yield entry[: -len(LOCK_SUFFIX)], os.path.join(folder, entry)


def _header_page(name: str) -> tuple[int, bytes | None] | None:
    """The current data mapping's size and header page, read without the lock (so that a
    listing never holds a lock file open, which would make a detacher think it is not last).
    None if the segment is gone; a None page if the header was caught half-written."""
    directory = _mappings.open_mapping(_NAMESPACE + name)
    if directory is None:
        return None
    try:
        serial = _read_serial(directory)
        data = _mappings.open_mapping(_data_tag(name, serial)) if serial else None
    finally:
        directory.close()
    if data is None:
        return 0, None
    try:
        page = data[:HEADER_SIZE]
        try:
            read_header(page, len(data))
        except CorruptSegmentError:
            return len(data), None
        return len(data), page
    finally:
        data.close()


def list_entries(only: str | None = None) -> Iterator[tuple[str, str, int, bool, bytes | None]]:
    """Windows cannot enumerate named mappings; we look up those our lock files name (with
    ``only``, that segment's alone).

    A lock file whose mapping is gone is an orphan (its holders were killed): listed with
    ``in_use`` False and no header page.
    """
    for name, path in _lock_files():
        if only is not None and name != only:
            continue
        found = _header_page(name)
        if found is None:
            yield name, path, 0, False, None
        else:
            size, page = found
            yield name, _NAMESPACE + name, size, True, page


_PROCESS_QUERY_LIMITED_INFORMATION: Final = 0x1000
_STILL_ACTIVE: Final = 259


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` is still running (it has no exit code yet)."""
    if pid <= 0:
        return False
    try:
        handle = _winapi.OpenProcess(_PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
    except OSError:
        return False  # no such process (or it has gone and nobody holds its handle)
    try:
        return bool(_winapi.GetExitCodeProcess(handle) == _STILL_ACTIVE)
    finally:
        _winapi.CloseHandle(handle)


def remains(name: str) -> list[str]:
    """What Windows still holds of segment ``name``: its lock file and its mappings."""
    left = [path for path in [_lock_path(name)] if os.path.exists(path)]
    directory = _mappings.open_mapping(_NAMESPACE + name)
    if directory is not None:
        try:
            serial = _read_serial(directory)
        finally:
            directory.close()
        # Our probe held the directory open for a moment; ask again now that it is closed.
        if _mappings.exists(_NAMESPACE + name):
            left.append(_NAMESPACE + name)
        if serial and _mappings.exists(_data_tag(name, serial)):
            left.append(_data_tag(name, serial))
    return left


def remove_orphans() -> list[str]:
    """Delete lock files whose mappings are gone and which no process has open."""
    removed = []
    for name, path in _lock_files():
        if not _mappings.exists(_NAMESPACE + name) and _delete_if_unused(path):
            trace.step(_ORPHAN_REMOVED, path)
            removed.append(path)
    return removed
