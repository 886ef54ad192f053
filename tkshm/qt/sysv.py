"""Qt 5's shared memory on Unix (and Qt 6's legacy keys): System V, through ``sysv_ipc``.

``QSharedMemory("QSharedMemoryExample")`` makes two empty key files in Qt's temporary
directory (see :mod:`tkshm.qt.keys`) and asks ``ftok(file, 'Q')`` for two IPC keys:

* a System V segment, ``shmget(key, size, 0600 | IPC_CREAT | IPC_EXCL)`` of exactly the
  payload's size. The kernel counts its attachments (``shm_nattch``): a process that detaches
  and finds the count at 0 removes the segment (``IPC_RMID``) and its key file. A killed
  holder is detached by the kernel but never removes it: the orphan stays, with nattch 0.
* a System V semaphore of value 1, the lock. Every ``semop`` carries ``SEM_UNDO``, so a
  process killed while it holds the lock gives it back as it dies.

``ipcs -m`` and ``ipcs -s`` list both (their key column is the ``ftok`` number).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import sys
import time
from collections.abc import Iterator
from typing import Any, Final

from ..errors import LockTimeoutError, SegmentInUseError, SegmentNotFoundError, TkshmError, UnsafePathError
from . import unix
from .backend import QtBackend
from .keys import FTOK_ID, legacy_key_file

assert sys.platform != "win32", "Qt's Unix objects (System V, POSIX); Windows has neither"

try:
    import sysv_ipc
except ImportError as exc:  # pragma: no cover - the extra is installed wherever tests run
    raise TkshmError("Speaking Qt 5's protocol needs the sysv_ipc package: pip install 'tkshm[qt]'.") from exc

_SEM_UNDO: Final = 0x1000  # <sys/sem.h>: the kernel undoes the operation if we die


class SystemV(QtBackend):
    """A ``QSharedMemory`` with a legacy key: a System V segment and semaphore."""

    protocol = "Qt 5"

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.memory_file = legacy_key_file(key, "sharedmemory")
        self.semaphore_file = legacy_key_file(key, "systemsem")
        self._memory: Any = None  # sysv_ipc.SharedMemory, attached
        self._semaphore: Any = None  # sysv_ipc.Semaphore
        self._made_semaphore = False
        self._made_semaphore_file = False

    def objects(self) -> list[str]:
        names = []
        for what, path in (("segment", self.memory_file), ("semaphore", self.semaphore_file)):
            number = _ftok(path) if os.path.exists(path) else None
            known = f" (ipcs key {number:#010x})" if number is not None else ""
            names.append(f"System V {what} of {path}{known}")
        return names

    def summary(self) -> str:
        ids = []
        for what, handle in (("segment", self._memory), ("semaphore", self._semaphore)):
            if handle is not None:
                ids.append(f"{what} {handle.id}")
        named = f" ({', '.join(ids)} in ipcs)" if ids else ""
        return f"System V objects of {os.path.join(os.path.dirname(self.memory_file), 'qipc_*')}{named}"

    # -- the segment ---------------------------------------------------------------------------
    def create(self, size: int) -> None:
        unix.make_key_file(self.memory_file)
        number = _ftok(self.memory_file)
        try:
            self._memory = sysv_ipc.SharedMemory(number, sysv_ipc.IPC_CREX, mode=0o600, size=size)
            return
        except sysv_ipc.ExistentialError:
            pass
        # There is one already. Qt 6 removes it if nobody is attached: its creator was killed
        # (a clean exit would have removed it). Qt 5 gives up here, for ever.
        old = self._open(number)
        others = old.number_attached - 1  # we attached to look
        creator = old.creator_pid
        old.detach()
        if others > 0:
            raise SegmentInUseError(
                self.key,
                f"Unable to create shared memory segment: {self.where} is held by "
                f"{_processes(others)} (process {creator} created it). It is removed when its last "
                "holder detaches; Qt's example detaches when it loads another image or quits.",
            )
        with contextlib.suppress(sysv_ipc.ExistentialError):
            old.remove()
        self._memory = sysv_ipc.SharedMemory(number, sysv_ipc.IPC_CREX, mode=0o600, size=size)

    def attach(self) -> int:
        if not unix.check_key_file(self.memory_file):
            raise self._not_found()
        try:
            self._memory = self._open(_ftok(self.memory_file))
        except sysv_ipc.ExistentialError:
            raise self._not_found() from None
        return int(self._memory.size)

    def _open(self, number: int) -> Any:
        memory = sysv_ipc.SharedMemory(number)
        if memory.uid != os.getuid():
            memory.detach()
            raise UnsafePathError(
                f"System V segment {memory.id}", f"it belongs to user {memory.uid}, not to you"
            )
        return memory

    def _not_found(self) -> SegmentNotFoundError:
        return SegmentNotFoundError(
            self.key,
            f"Nothing is published under Qt's key {self.key!r}: there is no System V segment for "
            f"{self.memory_file}. Load an image in Qt's example, or publish one with tkshm put --qt 5.",
        )

    def write(self, data: bytes) -> None:
        memoryview(self._memory)[: len(data)] = data

    def read(self) -> bytes:
        return bytes(memoryview(self._memory))

    def detach(self) -> bool:
        memory, self._memory = self._memory, None
        if memory is None:
            return False
        with contextlib.suppress(sysv_ipc.NotAttachedError):
            memory.detach()
        try:
            if memory.number_attached:
                return False
            memory.remove()  # as Qt's detach: the last one out removes it, and its key file
        except sysv_ipc.ExistentialError:  # someone else just did
            return False
        unix.remove_file(self.memory_file)
        return True

    # -- the lock ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, timeout: float) -> Iterator[None]:
        semaphore = self._semaphore_open()
        self._acquire(semaphore, timeout)
        try:
            yield
        finally:
            with contextlib.suppress(sysv_ipc.ExistentialError):
                semaphore.release()

    def _semaphore_open(self) -> Any:
        if self._semaphore is None:
            self._made_semaphore_file = unix.make_key_file(self.semaphore_file)
            number = _ftok(self.semaphore_file)
            try:  # as QSystemSemaphore: the creator sets the value to 1, the others just open it
                self._semaphore = sysv_ipc.Semaphore(number, sysv_ipc.IPC_CREX, mode=0o600, initial_value=1)
                self._made_semaphore = True
            except sysv_ipc.ExistentialError:
                self._semaphore = sysv_ipc.Semaphore(number)
            if self._semaphore.uid != os.getuid():
                raise UnsafePathError(
                    f"System V semaphore {self._semaphore.id}",
                    f"it belongs to user {self._semaphore.uid}, not to you",
                )
            self._semaphore.undo = True  # SEM_UNDO on release too, as Qt's
        return self._semaphore

    def _acquire(self, semaphore: Any, timeout: float) -> None:
        end = time.monotonic() + timeout
        while True:
            try:
                if _timed_wait(semaphore.id, max(0.0, end - time.monotonic())):
                    return
                raise LockTimeoutError(
                    self.key, timeout,
                    f"Qt's semaphore for key {self.key!r} stayed taken for more than {timeout:g} s: "
                    "another process holds the lock. Try again.",
                )  # fmt: skip
            except _Removed:
                # Its creator exited and removed it (Qt does that too): open a new one, as
                # QSystemSemaphore does when semop says EIDRM.
                self._forget_semaphore()
                semaphore = self._semaphore_open()

    def _forget_semaphore(self) -> None:
        self._semaphore = None
        self._made_semaphore = self._made_semaphore_file = False

    def close(self) -> None:
        self.detach()
        semaphore = self._semaphore
        if semaphore is not None and self._made_semaphore:
            with contextlib.suppress(sysv_ipc.ExistentialError):
                semaphore.remove()  # as Qt: the process that made the semaphore removes it
            if self._made_semaphore_file:
                unix.remove_file(self.semaphore_file)
        self._forget_semaphore()

    def clean(self, timeout: float) -> list[str]:
        done = []
        if unix.check_key_file(self.memory_file):
            try:
                memory = self._open(_ftok(self.memory_file))
            except sysv_ipc.ExistentialError:
                unix.remove_file(self.memory_file)
                done.append(f"Removed {self.memory_file} (a key file with no segment)")
            else:
                others = memory.number_attached - 1
                number = memory.id
                memory.detach()
                if others == 0:
                    with contextlib.suppress(sysv_ipc.ExistentialError):
                        memory.remove()
                    unix.remove_file(self.memory_file)
                    done.append(f"Removed the orphaned System V segment {number} and {self.memory_file}")
        if unix.check_key_file(self.semaphore_file):
            try:
                semaphore = sysv_ipc.Semaphore(_ftok(self.semaphore_file))
            except sysv_ipc.ExistentialError:
                unix.remove_file(self.semaphore_file)
                return [*done, f"Removed {self.semaphore_file} (a key file with no semaphore)"]
            if _timed_wait(semaphore.id, timeout, undo=False):
                semaphore.release()
            else:
                semaphore.value = 1
                done.append(
                    f"Released Qt's System V semaphore {semaphore.id}: it had been taken for more "
                    f"than {timeout:g} s"
                )
            if not os.path.exists(self.memory_file):  # no segment to lock: a killed creator's
                with contextlib.suppress(sysv_ipc.ExistentialError):
                    semaphore.remove()
                unix.remove_file(self.semaphore_file)
                done.append(f"Removed Qt's System V semaphore {semaphore.id}, which no segment uses")
        return done


def _processes(count: int) -> str:
    return "1 process" if count == 1 else f"{count} processes"


def _ftok(path: str) -> int:
    return int(sysv_ipc.ftok(path, FTOK_ID, silence_warning=True))


class _Removed(Exception):
    """The semaphore was removed while we waited for it."""


class _Sembuf(ctypes.Structure):
    _fields_ = [("sem_num", ctypes.c_ushort), ("sem_op", ctypes.c_short), ("sem_flg", ctypes.c_short)]


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


_libc: Final = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def _timed_wait(semaphore_id: int, timeout: float, undo: bool = True) -> bool:
    """Take the semaphore (subtract 1) within ``timeout`` seconds: ``semtimedop``.

    Called through ctypes: sysv_ipc's Linux wheels are built without ``semtimedop``
    (``sysv_ipc.SEMAPHORE_TIMEOUT_SUPPORTED`` is False; sysv_ipc issue #69), and a
    positive timeout then waits for ever. A signal (EINTR) waits again for the time left.
    """
    end = time.monotonic() + timeout
    operation = _Sembuf(0, -1, _SEM_UNDO if undo else 0)
    while True:
        left = max(0.0, end - time.monotonic())
        spec = _Timespec(int(left), int((left % 1) * 1e9))
        if _libc.semtimedop(semaphore_id, ctypes.byref(operation), 1, ctypes.byref(spec)) == 0:
            return True
        code = ctypes.get_errno()
        if code == errno.EAGAIN:
            return False
        if code in (errno.EIDRM, errno.EINVAL):
            raise _Removed()
        if code != errno.EINTR:
            raise OSError(code, os.strerror(code))
