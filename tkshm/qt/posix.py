"""Qt 6's native keys on Unix: a POSIX shared memory object and a POSIX named semaphore.

``QSharedMemory(QNativeIpcKey("K"))`` (what Qt 6's C++ example uses) opens ``/K`` with
``shm_open`` (the file ``/dev/shm/K`` on Linux) and the semaphore ``/K`` with ``sem_open``
(``/dev/shm/sem.K``), through ``posix_ipc`` here. Two differences from System V matter:

* POSIX shared memory keeps no count of who has it mapped, so Qt cannot tell when the last
  holder detaches, and on Linux it leaves ``/dev/shm/K`` behind on every exit. tkshm removes
  what it made when it detaches, and reads ``/proc`` (as ``fuser`` does) to tell an orphan
  from a segment still in use.
* A POSIX semaphore has no ``SEM_UNDO``: a process killed while it holds the lock leaves the
  semaphore at 0, and every later ``lock()`` in Qt waits for ever. tkshm waits at most its
  timeout and says so; ``tkshm clean --qt 6`` gives the semaphore back.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import sys
from collections.abc import Iterator
from typing import Any

from ..errors import LockTimeoutError, SegmentInUseError, SegmentNotFoundError, TkshmError, UnsafePathError
from . import unix
from .backend import MappedBackend

assert sys.platform != "win32", "Qt's Unix objects (System V, POSIX); Windows has neither"

try:
    import posix_ipc
except ImportError as exc:  # pragma: no cover - the extra is installed wherever tests run
    raise TkshmError(
        "Speaking Qt 6's protocol needs the posix_ipc package: pip install 'tkshm[qt]'."
    ) from exc

_SHM_DIR = "/dev/shm"


class PosixNative(MappedBackend):
    """A ``QSharedMemory`` with a Qt 6 native key: ``/K`` twice."""

    protocol = "Qt 6"

    def __init__(self, name: str, key: str) -> None:
        super().__init__(key)
        self.name = name  # "/K"
        self.memory_path = _SHM_DIR + name
        self.semaphore_path = f"{_SHM_DIR}/sem.{name[1:]}"
        self._made = False
        self._semaphore: Any = None  # posix_ipc.Semaphore
        self._made_semaphore = False

    def objects(self) -> list[str]:
        return [f"POSIX shared memory {self.name} ({self.memory_path})",
                f"POSIX semaphore {self.name} ({self.semaphore_path})"]  # fmt: skip

    def summary(self) -> str:
        return f"POSIX {self.memory_path} and {self.semaphore_path}"

    # -- the segment ---------------------------------------------------------------------------
    def create(self, size: int) -> None:
        try:
            memory = posix_ipc.SharedMemory(self.name, posix_ipc.O_CREX, mode=0o600, size=size)
        except posix_ipc.ExistentialError:
            holders = unix.mappers(self.memory_path) if unix.has_proc() else None
            if holders is None or holders:
                who = f"process {', '.join(map(str, holders))}" if holders else "another process"
                raise SegmentInUseError(
                    self.key,
                    f"Unable to create shared memory segment: {self.memory_path} exists and "
                    f"{who} has it mapped. Qt's example unmaps it when it loads another image or quits.",
                ) from None
            self._check_owner(self.memory_path)
            with contextlib.suppress(posix_ipc.ExistentialError):  # an orphan: Qt 6 leaves them
                posix_ipc.unlink_shared_memory(self.name)
            memory = posix_ipc.SharedMemory(self.name, posix_ipc.O_CREX, mode=0o600, size=size)
        self._made = True
        self._map_fd(memory, size)

    def attach(self) -> int:
        try:
            memory = posix_ipc.SharedMemory(self.name)
        except posix_ipc.ExistentialError:
            raise SegmentNotFoundError(
                self.key,
                f"Nothing is published under Qt's key {self.key!r}: there is no {self.memory_path}. "
                "Load an image in Qt 6's example, or publish one with tkshm put --qt 6.",
            ) from None
        info = os.fstat(memory.fd)
        if info.st_uid != os.getuid():
            memory.close_fd()
            raise UnsafePathError(self.memory_path, f"it belongs to user {info.st_uid}, not to you")
        self._map_fd(memory, info.st_size)
        return info.st_size

    def _map_fd(self, memory: Any, size: int) -> None:
        try:
            self._map = mmap.mmap(memory.fd, size) if size else None
        finally:
            memory.close_fd()  # the mapping keeps the object; the descriptor is not needed

    def _check_owner(self, path: str) -> None:
        info = os.lstat(path)
        if info.st_uid != os.getuid():
            raise UnsafePathError(path, f"it belongs to user {info.st_uid}, not to you")

    def detach(self) -> bool:
        self._unmap()
        if not self._made:
            return False
        self._made = False
        # We made it, and we are done with it: unlink the name (a process that still has it
        # mapped keeps its pages until it unmaps them). Qt 6 leaves it in /dev/shm.
        with contextlib.suppress(posix_ipc.ExistentialError):
            posix_ipc.unlink_shared_memory(self.name)
            return True
        return False

    # -- the lock ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, timeout: float) -> Iterator[None]:
        semaphore = self._semaphore_open()
        try:
            semaphore.acquire(timeout)  # sem_timedwait
        except posix_ipc.BusyError:
            raise LockTimeoutError(
                self.key, timeout,
                f"Qt's semaphore {self.name} stayed taken for more than {timeout:g} s. A Qt 6 program "
                "killed while it held the lock leaves it taken for ever (a POSIX semaphore has no "
                f"undo); if none is copying now, tkshm clean --qt 6 --key {self.key} releases it.",
            ) from None  # fmt: skip
        try:
            yield
        finally:
            semaphore.release()

    def _semaphore_open(self) -> Any:
        if self._semaphore is None:
            try:
                self._semaphore = posix_ipc.Semaphore(
                    self.name, posix_ipc.O_CREX, mode=0o600, initial_value=1
                )
                self._made_semaphore = True
            except posix_ipc.ExistentialError:
                self._check_owner(self.semaphore_path)
                self._semaphore = posix_ipc.Semaphore(self.name)
        return self._semaphore

    def close(self) -> None:
        self.detach()
        semaphore, self._semaphore = self._semaphore, None
        if semaphore is not None:
            if self._made_semaphore:  # as Qt: the process that made the semaphore unlinks it
                with contextlib.suppress(posix_ipc.ExistentialError):
                    semaphore.unlink()
            semaphore.close()
        self._made_semaphore = False

    def clean(self, timeout: float) -> list[str]:
        done = []
        if os.path.lexists(self.memory_path) and unix.has_proc() and not unix.mappers(self.memory_path):
            self._check_owner(self.memory_path)
            with contextlib.suppress(posix_ipc.ExistentialError):
                posix_ipc.unlink_shared_memory(self.name)
                done.append(f"Removed {self.memory_path} (no process had it mapped)")
        if os.path.lexists(self.semaphore_path):
            self._check_owner(self.semaphore_path)
            semaphore = posix_ipc.Semaphore(self.name)
            try:
                semaphore.acquire(timeout)
            except posix_ipc.BusyError:
                done.append(
                    f"Released Qt's semaphore {self.name}: it had been taken for more than {timeout:g} s "
                    "(a holder killed inside lock()?)"
                )
            semaphore.release()
            if not os.path.lexists(self.memory_path) and not unix.mappers(self.semaphore_path):
                semaphore.unlink()  # no segment to lock, nobody has it open: a killed creator's
                done.append(
                    f"Removed Qt's semaphore {self.name} ({self.semaphore_path}), which no segment uses"
                )
            semaphore.close()
        return done
