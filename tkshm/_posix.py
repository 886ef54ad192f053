"""POSIX backend: a segment is a file in a private tmpfs directory, mapped with ``mmap``.

Linux keeps it in ``/dev/shm`` (tmpfs: RAM, never disk); systems without ``/dev/shm`` (macOS)
use the same code in a per-user temporary directory. Two advisory ``flock`` locks carry the
protocol (see ``tkshm.ipc``):

* the *presence* lock, shared, on the open ``.seg`` file for as long as a process is attached.
  The kernel drops it when the process exits or is killed, so "can I lock it exclusively?"
  asks "is anyone else still attached?" -- the question QSharedMemory's last ``detach`` asks;
* the *data* lock on the ``.lock`` file, taken through portalocker by ``tkshm.ipc``.

Every open is relative to a directory descriptor, with ``O_NOFOLLOW`` and ``O_CLOEXEC``, and
checked with ``fstat``: we never follow a symlink we did not create, never use a file another
user owns, and never use one that other users could read.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import secrets
import stat
import sys
import tempfile
from collections.abc import Iterator
from typing import Final

import portalocker

from . import _locking, _unmap, _wake, trace
from .errors import (
    CorruptSegmentError,
    OutOfSharedMemoryError,
    SegmentNotFoundError,
    TkshmError,
    UnsafePathError,
)
from .header import BACKUP_OFFSET, HEADER_SIZE, Header

# Never imported on Windows (tkshm.ipc chooses the backend once); this tells mypy so.
assert sys.platform != "win32"

SEGMENT_SUFFIX: Final = ".seg"
LOCK_SUFFIX: Final = ".lock"
TEMP_SUFFIX: Final = ".tmp"
SLOT_SUFFIX: Final = ".slot"
# Readers lease frame slots with locks of their own (``tkshm.frames``), so the writer never
# waits for them; and a reader can sleep until the next publish (``tkshm._wake``).
SLOT_LOCKS: Final = True
_OPEN_FLAGS: Final = os.O_NOFOLLOW | os.O_CLOEXEC
# MAP_POPULATE (Linux) builds the page tables for the whole mapping in one system call.
# A writer wants that: the first write to each 4 KiB page of a shared mapping is a page
# fault of its own (the kernel maps neighbours in advance only for reads), 32,000 faults
# for an 8K image, which cost more than copying its pixels. A reader does not: read faults
# come 16 pages at a time, cheaper than populating a mapping it may only peek at.
_POPULATE: Final = getattr(mmap, "MAP_POPULATE", 0)
# A few hundred retries cover any real interleaving of attach/detach/clean; more means a bug.
_MAX_ATTEMPTS: Final = 200
_ORPHAN_REMOVED: Final = "orphan: no process holds %s any more (killed?); removed it"


def segment_directory() -> str:
    """The private per-user directory that holds this user's segments."""
    override = os.environ.get("TKSHM_DIR")
    if override:
        return os.path.abspath(override)
    base = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    return os.path.join(base, f"tkshm-{os.geteuid()}")


def _check_owned(path: str, st: os.stat_result, kind: str) -> None:
    if st.st_uid != os.geteuid():
        raise UnsafePathError(path, f"it belongs to user id {st.st_uid}, not to you")
    if st.st_mode & 0o077:
        raise UnsafePathError(
            path,
            f"other users can open it (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"only its owner should (chmod {'700' if kind == 'directory' else '600'})",
        )


def open_directory(create: bool = True) -> tuple[str, int]:
    """Open (and create, mode 0700) the segment directory; refuse anything not private."""
    path = segment_directory()
    if create:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise TkshmError(f"Cannot create the shared memory directory {path}: {exc.strerror}.") from exc
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | _OPEN_FLAGS)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafePathError(path, "it is a symbolic link or not a directory") from exc
        raise TkshmError(f"Cannot open the shared memory directory {path}: {exc.strerror}.") from exc
    try:
        _check_owned(path, os.fstat(fd), "directory")
    except BaseException:
        os.close(fd)
        raise
    return path, fd


def _open_file(dir_path: str, dir_fd: int, name: str, flags: int) -> int:
    """Open ``name`` inside the directory without following symlinks; check it is ours."""
    path = os.path.join(dir_path, name)
    try:
        fd = os.open(name, flags | os.O_RDWR | _OPEN_FLAGS, 0o600, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePathError(path, "it is a symbolic link") from exc
        if exc.errno in (errno.ENOENT, errno.EEXIST):
            raise
        raise TkshmError(f"Cannot open {path}: {exc.strerror}.") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePathError(path, "it is not a regular file")
        _check_owned(path, st, "file")
    except BaseException:
        os.close(fd)
        raise
    return fd


def try_lock(fd: int, exclusive: bool) -> bool:
    """Take the data lock without waiting (portalocker over ``flock``); False if it is taken."""
    return _locking.try_lock(portalocker.lock, fd, exclusive)


def unlock(fd: int) -> None:
    portalocker.unlock(fd)


def _try_flock(fd: int, operation: int) -> bool:
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def reserve(fd: int, size: int) -> None:
    """Grow the file to ``size`` bytes with pages reserved now, never shrinking it.

    ``posix_fallocate`` makes a full tmpfs fail *here*, with ENOSPC, instead of with SIGBUS
    later when a page of a sparse file is first touched through the mapping.
    """
    if os.fstat(fd).st_size >= size:
        return
    try:
        if hasattr(os, "posix_fallocate"):
            os.posix_fallocate(fd, 0, size)
        else:  # macOS: no fallocate; a sparse file is the best we can do
            os.ftruncate(fd, size)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            raise OutOfSharedMemoryError(
                f"There is not enough shared memory for {size / 1e6:.1f} MB "
                f"(the file system behind {segment_directory()} is full). "
                "Close other programs that use shared memory, or load a smaller image."
            ) from exc
        raise


class PosixSegmentFile:
    """One attached segment: the open ``.seg`` file (presence lock held), its mapping, and
    the open ``.lock`` file. Built only by :meth:`open`."""

    successors = False  # the file grows in place: nothing else to follow

    def __init__(self, dir_path: str, dir_fd: int, name: str, seg_fd: int) -> None:
        self.dir_path = dir_path
        self.name = name
        self._dir_fd = dir_fd
        self._seg_fd = seg_fd
        self.lock_fd = -1
        self.map: mmap.mmap | None = None
        self.writer = False  # a process that creates or grows a segment is about to write
        self.created = False  # whether open() made a new segment rather than joining one
        self._lock_opened = False
        self._slot_fds: dict[int, int] = {}

    @property
    def path(self) -> str:
        return os.path.join(self.dir_path, self.name + SEGMENT_SUFFIX)

    @classmethod
    def open(cls, name: str, key: str, create_capacity: int | None) -> PosixSegmentFile:
        """Attach to segment ``name``; create it with ``create_capacity`` bytes if missing
        (``None``: attach only, raise :class:`SegmentNotFoundError`)."""
        dir_path, dir_fd = open_directory(create=create_capacity is not None)
        try:
            seg_fd, created = _attach_or_create(dir_path, dir_fd, name, key, create_capacity)
        except BaseException:
            os.close(dir_fd)
            raise
        self = cls(dir_path, dir_fd, name, seg_fd)
        self.created = created
        self.writer = create_capacity is not None
        try:
            self.lock_fd = _open_file(dir_path, dir_fd, name + LOCK_SUFFIX, os.O_CREAT)
            self._lock_opened = True
            self.remap()
        except BaseException:
            self.close()
            raise
        return self

    def file_size(self) -> int:
        return os.fstat(self._seg_fd).st_size

    def try_lease(self, index: int, exclusive: bool) -> bool:
        """A lease on frame slot ``index``: ``flock`` on the slot's own lock file."""
        return try_lock(self.slot_lock_fd(index), exclusive)

    def release_lease(self, index: int) -> None:
        unlock(self.slot_lock_fd(index))

    def slot_lock_fd(self, index: int) -> int:
        """The lock file of frame slot ``index`` (opened on first use, kept until detach)."""
        fd = self._slot_fds.get(index)
        if fd is None:
            fd = _open_file(self.dir_path, self._dir_fd, f"{self.name}{SLOT_SUFFIX}{index}", os.O_CREAT)
            self._slot_fds[index] = fd
        return fd

    def waiter(self) -> _wake.Waiter:
        """A wake-up socket for this segment (``OSError`` if the platform cannot make one)."""
        return _wake.Waiter(self.dir_path, self._dir_fd, self.name)

    def notify(self, generation: int) -> None:
        """Wake the readers waiting for a new frame."""
        _wake.notify(self.dir_path, self._dir_fd, self.name, generation)

    def remap(self, exclusive: bool = False) -> None:
        """Map the whole file again if it grew (call with the data lock held)."""
        size = self.file_size()
        if self.map is not None and len(self.map) == size:
            return
        if size < HEADER_SIZE:
            raise CorruptSegmentError(
                f"The shared memory segment {self.path} is too short to hold a header. "
                "Run 'tkshm clean' or remove the file, then load the image again."
            )
        if self.map is not None:
            trace.step("remap: the segment grew to %s bytes; mapping it again", f"{size:,}")
            _unmap.unmap(self.map)
            self.map = None
        flags = mmap.MAP_SHARED | (_POPULATE if self.writer else 0)
        self.map = mmap.mmap(self._seg_fd, size, flags, mmap.PROT_READ | mmap.PROT_WRITE)

    def refresh(self) -> None:
        """Map again if the file changed size: once per read (one ``fstat``), which also
        notices a file that a neighbour cut short before we touch a page past its end."""
        self.remap()

    def grow(self, size: int) -> None:
        """Make the file at least ``size`` bytes (call with the exclusive data lock held)."""
        reserve(self._seg_fd, size)
        self.writer = True
        self.remap()

    def close(self) -> bool:
        """Detach. If nobody else is attached, remove the files; return whether we did.

        Idempotent and safe on a half-built object.
        """
        removed = False
        if self.map is not None:
            _unmap.unmap(self.map)
            self.map = None
        if self.lock_fd >= 0:
            os.close(self.lock_fd)
            self.lock_fd = -1
        for fd in self._slot_fds.values():
            os.close(fd)
        self._slot_fds.clear()
        if self._seg_fd >= 0:
            # Trading our shared presence lock for an exclusive one succeeds only if no other
            # process still holds a shared one: we are the last holder, so the segment goes.
            if _try_flock(self._seg_fd, fcntl.LOCK_EX):
                # A .lock we refused to open (a planted symlink, say) is left as it is.
                _remove(self._dir_fd, self.name, with_lock=self._lock_opened)
                removed = True
            os.close(self._seg_fd)
            self._seg_fd = -1
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
            self._dir_fd = -1
        return removed


def _remove(dir_fd: int, name: str, with_lock: bool = True) -> None:
    """Unlink a segment's files; the caller holds the exclusive presence lock."""
    suffixes = (LOCK_SUFFIX, SEGMENT_SUFFIX) if with_lock else (SEGMENT_SUFFIX,)
    for entry in os.listdir(dir_fd):  # the slot locks and wake-up sockets go first
        if entry.startswith(name + SLOT_SUFFIX) or entry.startswith(name + _wake.INFIX):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry, dir_fd=dir_fd)
    for suffix in suffixes:  # .lock first: nobody may re-create it after
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name + suffix, dir_fd=dir_fd)


def _same_file(dir_fd: int, entry: str, fd: int) -> bool:
    try:
        st = os.stat(entry, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _attach_or_create(
    dir_path: str, dir_fd: int, name: str, key: str, create_capacity: int | None
) -> tuple[int, bool]:
    """Open the segment file with our presence lock held; return it and whether we created it."""
    entry = name + SEGMENT_SUFFIX
    for _ in range(_MAX_ATTEMPTS):
        try:
            fd = _open_file(dir_path, dir_fd, entry, 0)
        except FileNotFoundError:
            if create_capacity is None:
                raise SegmentNotFoundError(key) from None
            _remove_stale_temporaries(dir_path, dir_fd, name)
            fd_or_none = _create(dir_path, dir_fd, name, create_capacity)
            if fd_or_none is None:
                continue  # another process created it first: attach to theirs
            return fd_or_none, True
        if _try_flock(fd, fcntl.LOCK_EX):
            # Nobody holds a presence lock: every process that used it is gone (killed,
            # most likely). Remove the orphan and carry on as if it never existed.
            if _same_file(dir_fd, entry, fd):
                _remove(dir_fd, name)
                trace.step(_ORPHAN_REMOVED, os.path.join(dir_path, entry))
            os.close(fd)
            continue
        if _try_flock(fd, fcntl.LOCK_SH) and _same_file(dir_fd, entry, fd):
            # Others hold shared presence locks: the segment is alive. Join them.
            return fd, False
        # Someone holds the exclusive lock: a detacher or a cleaner, for a few system calls.
        # Wait it out, then look again from the start (it has probably removed the file).
        fcntl.flock(fd, fcntl.LOCK_SH)
        os.close(fd)
    raise TkshmError(f"Could not attach to shared memory segment {key!r}: it keeps changing. Try again.")


def _create(dir_path: str, dir_fd: int, name: str, capacity: int) -> int | None:
    """Create a segment atomically: build it under a temporary name, hold its presence lock,
    then ``link`` it into place, which fails if the name exists. No segment is ever visible
    without a holder. Return the descriptor, or None if another process won the race."""
    temp = f"{name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
    fd = _open_file(dir_path, dir_fd, temp, os.O_CREAT | os.O_EXCL)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        reserve(fd, HEADER_SIZE + capacity)
        empty = Header.empty(capacity, os.getpid()).pack()
        os.pwrite(fd, empty, BACKUP_OFFSET)  # both copies (tkshm.header)
        os.pwrite(fd, empty, 0)
        try:
            os.link(temp, name + SEGMENT_SUFFIX, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
        except FileExistsError:
            os.close(fd)
            return None
        except FileNotFoundError:  # a cleaner removed our temporary file: start again
            os.close(fd)
            return None
    except BaseException:
        os.close(fd)
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp, dir_fd=dir_fd)
    return fd


def list_entries(only: str | None = None) -> Iterator[tuple[str, str, int, bool, bytes | None]]:
    """Yield ``(name, path, size, in_use, header_page)`` for this user's segment files (with
    ``only``, for that segment's file alone).

    ``in_use`` is False for an orphan: a file whose presence lock nobody holds. The header
    page is read without a lock, whatever a writer is doing: the header names the newest
    complete frame until the next one is whole, and a copy caught half-rewritten has its
    backup (``tkshm.header``).
    """
    try:
        dir_path, dir_fd = open_directory(create=False)
    except FileNotFoundError:
        return
    try:
        for entry in sorted(os.listdir(dir_fd)):
            if not entry.endswith((SEGMENT_SUFFIX, TEMP_SUFFIX)):
                continue
            if only is not None and entry != only + SEGMENT_SUFFIX:
                continue
            try:
                fd = _open_file(dir_path, dir_fd, entry, 0)
            except (FileNotFoundError, TkshmError):
                continue
            name = entry[: -len(SEGMENT_SUFFIX)] if entry.endswith(SEGMENT_SUFFIX) else entry
            try:
                in_use = not _try_flock(fd, fcntl.LOCK_EX)
                size = os.fstat(fd).st_size
                page = os.pread(fd, HEADER_SIZE, 0)
            finally:
                os.close(fd)  # closing drops any lock we took
            yield name, os.path.join(dir_path, entry), size, in_use, page
    finally:
        os.close(dir_fd)


def _remove_if_orphaned(dir_path: str, dir_fd: int, entry: str) -> bool:
    """Remove a segment (or temporary) file if no process holds its presence lock."""
    try:
        fd = _open_file(dir_path, dir_fd, entry, 0)
    except (FileNotFoundError, TkshmError):
        return False
    try:
        if not (_try_flock(fd, fcntl.LOCK_EX) and _same_file(dir_fd, entry, fd)):
            return False
        if entry.endswith(SEGMENT_SUFFIX):
            _remove(dir_fd, entry[: -len(SEGMENT_SUFFIX)])
        else:
            os.unlink(entry, dir_fd=dir_fd)
        trace.step(_ORPHAN_REMOVED, os.path.join(dir_path, entry))
        return True
    finally:
        os.close(fd)


def _remove_stale_temporaries(dir_path: str, dir_fd: int, name: str) -> None:
    """Remove what creators of this segment left when killed before their ``link``."""
    for entry in os.listdir(dir_fd):
        if entry.startswith(name + ".") and entry.endswith(TEMP_SUFFIX):
            _remove_if_orphaned(dir_path, dir_fd, entry)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` is still running (a zombie, dead but not yet reaped, is not)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, as another user's process
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat_file:
            return stat_file.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True  # no /proc (macOS): kill() said it exists


def remains(name: str) -> list[str]:
    """What exists of segment ``name`` in the file system: its files, temporary ones included."""
    directory = segment_directory()
    try:
        entries = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(os.path.join(directory, e) for e in entries if e.startswith(name + "."))


def remove_orphans() -> list[str]:
    """Remove segment and temporary files that no process holds; return their paths."""
    removed: list[str] = []
    try:
        dir_path, dir_fd = open_directory(create=False)
    except FileNotFoundError:
        return removed
    try:
        for entry in sorted(os.listdir(dir_fd)):
            if entry.endswith((SEGMENT_SUFFIX, TEMP_SUFFIX)) and _remove_if_orphaned(dir_path, dir_fd, entry):
                removed.append(os.path.join(dir_path, entry))
    finally:
        os.close(dir_fd)
    return removed


SegmentFile = PosixSegmentFile
