"""What Qt's two Unix backends share: key files in a directory everyone writes to, and
who has a segment mapped."""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from collections.abc import Iterator
from typing import Final

from ..errors import UnsafePathError

assert sys.platform != "win32", "Qt's Unix objects (System V, POSIX); Windows has neither"

_KEY_FILE_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def make_key_file(path: str) -> bool:
    """Create the empty file ``ftok`` needs, private to us; True if we made it.

    It lives in a directory everyone can write to (``/tmp``), so a file already there is used
    only if it is a regular file of ours: a planted symlink or someone else's file would hand
    our segment's number to its owner. ``O_NOFOLLOW | O_EXCL`` makes the check and the
    creation one step.
    """
    try:
        os.close(os.open(path, _KEY_FILE_FLAGS, 0o600))
        return True
    except FileExistsError:
        check_key_file(path)
        return False


def check_key_file(path: str) -> bool:
    """True if ``path`` exists and is a regular file of ours; False if it does not exist;
    UnsafePathError if it is anything else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePathError(path, "it is a symbolic link, and Qt's key files are plain files")
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePathError(path, "it is not a plain file")
    if st.st_uid != os.getuid():
        raise UnsafePathError(path, f"it belongs to user {st.st_uid}, not to you")
    return True


def remove_file(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def mappers(path: str) -> list[int]:
    """The processes (of ours: /proc shows us only theirs) that have ``path`` mapped or open.

    POSIX shared memory keeps no count of its users, as System V's ``shm_nattch`` does; Linux's
    ``/proc/PID/maps`` and ``/proc/PID/fd`` say it instead, as ``fuser`` reads them. None
    where there is no /proc: then a segment is never taken for an orphan.
    """
    found: list[int] = []
    for pid in _pids():
        if pid == os.getpid():
            continue
        if _maps(pid, path) or _has_open(pid, path):
            found.append(pid)
    return found


def has_proc() -> bool:
    return os.path.isdir("/proc/self/fd")


def _pids() -> Iterator[int]:
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                yield int(entry)


def _maps(pid: int, path: str) -> bool:
    try:
        with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as maps:
            return any(line.rstrip("\n").endswith(" " + path) for line in maps)
    except OSError:  # gone, or not ours
        return False


def _has_open(pid: int, path: str) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}") == path:
                return True
    return False
