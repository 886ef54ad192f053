"""What a Qt protocol backend does, and the small pieces the backends share.

A backend is one way Qt names and locks a segment: System V objects found through key files
(Qt 5, Qt 6's legacy keys) or POSIX objects named by the key (Qt 6's native keys). Each does
what ``QSharedMemory`` does -- create or attach, lock with its semaphore, copy, detach -- and
each leaves the operating system as it found it, which Qt does not always do.
"""

from __future__ import annotations

import contextlib
import mmap
from abc import ABC, abstractmethod


class QtBackend(ABC):
    """One process's handle on a Qt segment and its semaphore (``QSharedMemory``)."""

    #: "Qt 5" or "Qt 6": the protocol, for sentences.
    protocol: str

    def __init__(self, key: str) -> None:
        self.key = key

    @property
    def where(self) -> str:
        """The segment in words, for error sentences: "Qt's segment under key 'K'"."""
        return f"Qt's segment under key {self.key!r}"

    @abstractmethod
    def objects(self) -> list[str]:
        """The operating-system objects behind the key, named as ``ipcs`` or ``ls /dev/shm``
        would show them (for the trace, the window's status line and ``--help``)."""

    @abstractmethod
    def summary(self) -> str:
        """The objects in a few words, for a status line: "System V segment 3, semaphore 2"."""

    @abstractmethod
    def create(self, size: int) -> None:
        """``QSharedMemory::create``: make a segment of exactly ``size`` bytes and attach.
        An orphan (no process attached) is removed first; a held one raises SegmentInUseError."""

    @abstractmethod
    def attach(self) -> int:
        """``QSharedMemory::attach``: map the segment someone created; return its size."""

    @abstractmethod
    def write(self, data: bytes) -> None:
        """Copy ``data`` to the start of the attached segment (hold the lock)."""

    @abstractmethod
    def read(self) -> bytes:
        """Copy the whole attached segment out (hold the lock)."""

    @abstractmethod
    def lock(self, timeout: float) -> contextlib.AbstractContextManager[None]:
        """``QSharedMemory::lock``: take Qt's semaphore for the block, waiting at most
        ``timeout`` seconds (Qt waits for ever) before LockTimeoutError."""

    @abstractmethod
    def detach(self) -> bool:
        """``QSharedMemory::detach``; True when that removed the segment (we were its last holder)."""

    @abstractmethod
    def close(self) -> None:
        """Detach, and let go of the semaphore, removing it if this process made it (as Qt does)."""

    @abstractmethod
    def clean(self, timeout: float) -> list[str]:
        """Remove an orphaned segment, and release a semaphore left taken; say what was done."""

    def __enter__(self) -> QtBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MappedBackend(QtBackend):
    """A backend whose segment this process sees through an ``mmap`` of its own (POSIX
    shared memory, a Windows file mapping): copying in and out is slicing that map."""

    _map: mmap.mmap | None = None

    def write(self, data: bytes) -> None:
        assert self._map is not None
        self._map[: len(data)] = data

    def read(self) -> bytes:
        return self._map[:] if self._map is not None else b""

    def _unmap(self) -> None:
        """Unmap our view; the segment itself lives on while others hold it."""
        mapped, self._map = self._map, None
        if mapped is not None:
            mapped.close()
