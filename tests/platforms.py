r"""What the tests can check on this operating system, said once.

tkshm makes the same promises on POSIX and on Windows, but some of the ways these tests prove
them are POSIX facts: file modes (0600/0700), ``O_NOFOLLOW`` and symbolic links, user ids,
FIFOs, signals other than a kill (SIGINT, SIGTERM, SIGBUS), ``/proc``, a tmpfs that can
be filled, and a segment that is a file one can read, truncate or overwrite from outside. Such
a test is marked ``@posix_only("why")`` and is skipped on Windows with that reason. Where the
promise holds on Windows too, the test proves it there with Windows' own means:

* a crash is ``Popen.kill()``: SIGKILL on POSIX, ``TerminateProcess`` on Windows;
* a process stopped where it is (holding a lock, half-way through a copy) is :func:`suspend`:
  SIGSTOP on POSIX, ``NtSuspendProcess`` on Windows;
* what the operating system still holds for a key is ``ipc.remains(key)``: the ``.lock`` and
  ``.seg`` files on POSIX; on Windows the lock file in ``%TEMP%\tkshm`` (or ``TKSHM_DIR``) and
  the named mappings ``Local\<name>`` and ``Local\<name>.<serial>``. It is empty once the last
  holder has detached;
* a killed Windows holder takes its mappings with it, but leaves its lock file, which the next
  attach, create or ``clean`` removes;
* a command a test starts with pipes has no console of its own, so Windows cannot send it
  Ctrl+C (and under Wine Ctrl+Break fails); such a command is ended with ``TerminateProcess``
  there (see ``commands.Running.stop``). test_windows_habits.py gives ``put`` a console of its
  own to test Ctrl+C.

Tests ask this module, not ``sys.platform`` (test_windows_habits.py, about Windows alone, has
its own check).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Final

import pytest

from tkshm import ipc
from tkshm.header import BACKUP_OFFSET, HEADER_SIZE

WINDOWS: Final = sys.platform == "win32"
# The exit status of a process ended by Popen.kill(): -SIGKILL on POSIX; on Windows the code
# Python passes to TerminateProcess.
KILLED: Final = 1 if WINDOWS else -9
# The exit status of a ``tkshm put`` ended by commands.Running.stop(): on POSIX it catches the
# signal and detaches (0); on Windows it is terminated (see above).
STOPPED: Final = KILLED if WINDOWS else 0


def capacity_for(nbytes: int) -> int:
    """The capacity a segment made (or grown) for ``nbytes`` of pixels gets: exactly that on
    POSIX, where the file is cut to size; whole pages on Windows, where a process that joins a
    mapping sees its page-rounded size, so the creator asks for that."""
    if not WINDOWS:
        return nbytes
    page = 4096
    return -(-(HEADER_SIZE + nbytes) // page) * page - HEADER_SIZE


def suspend(pid: int) -> None:
    """Stop process ``pid`` where it is, holding what it holds: SIGSTOP on POSIX, on Windows
    ``NtSuspendProcess`` (every thread of it suspended; Wine has it too)."""
    if WINDOWS:
        _nt_process_call("NtSuspendProcess", pid)
    else:
        os.kill(pid, signal.SIGSTOP)


def resume(pid: int) -> None:
    """Let a :func:`suspend`-ed process go on."""
    if WINDOWS:
        _nt_process_call("NtResumeProcess", pid)
    else:
        os.kill(pid, signal.SIGCONT)


def _nt_process_call(name: str, pid: int) -> None:
    import ctypes

    process_suspend_resume = 0x0800
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    ntdll = ctypes.WinDLL("ntdll")  # type: ignore[attr-defined]
    kernel32.OpenProcess.restype = ctypes.c_void_p
    handle = kernel32.OpenProcess(process_suspend_resume, False, pid)
    assert handle, f"OpenProcess({pid}) failed: {ctypes.get_last_error()}"  # type: ignore[attr-defined]
    try:
        status = getattr(ntdll, name)(ctypes.c_void_p(handle))
        assert status == 0, f"{name}({pid}) returned NTSTATUS {status:#x}"
    finally:
        kernel32.CloseHandle(ctypes.c_void_p(handle))


def posix_only(why: str) -> pytest.MarkDecorator:
    """Skip on Windows, saying why the check does not apply there."""
    return pytest.mark.skipif(WINDOWS, reason=f"POSIX only: {why}")


def windows_only(why: str) -> pytest.MarkDecorator:
    """Skip on POSIX: the Windows counterpart of a POSIX-only check."""
    return pytest.mark.skipif(not WINDOWS, reason=f"Windows only: {why}")


def lock_file(key: str) -> str:
    """The lock file of ``key`` (both platforms keep one in the segment directory)."""
    return os.path.join(ipc.segment_directory(), ipc.native_name(key) + ".lock")


def segment_path(key: str) -> str:
    """What ``Segment.path`` is for ``key``: a file on POSIX, a mapping name on Windows."""
    name = ipc.native_name(key)
    return "Local\\" + name if WINDOWS else os.path.join(ipc.segment_directory(), name + ".seg")


def directory_entries(key: str) -> list[str]:
    """What the segment directory holds for ``key`` while it is in use (names, sorted)."""
    name = ipc.native_name(key)
    # POSIX: a still uses one frame slot, so one slot lock file (tkshm.frames)
    return [name + ".lock"] if WINDOWS else [name + ".lock", name + ".seg", name + ".slot0"]


def orphan_path(key: str) -> str:
    """What ``clean`` removes, and ``list`` shows, for ``key`` after its last holder was
    killed: the segment file on POSIX; the lock file on Windows (the mappings are gone)."""
    return lock_file(key) if WINDOWS else segment_path(key)


def assert_held(key: str) -> None:
    """The operating system holds a live segment for ``key``: its lock file and segment file
    (POSIX), or its lock file, directory mapping and data mapping (Windows)."""
    left = ipc.remains(key)
    if WINDOWS:
        mapping = segment_path(key)
        assert lock_file(key) in left and mapping in left, left
        assert any(entry.startswith(mapping + ".") for entry in left), f"no data mapping in {left}"
    else:
        # and the lock files of the frame slots in use (one for a still; tkshm.frames)
        slots = [entry for entry in left if entry.startswith(segment_path(key)[: -len(".seg")] + ".slot")]
        assert left == [lock_file(key), segment_path(key), *slots] and slots, left


def overwrite_header(segment: ipc.Segment, raw: bytes) -> None:
    """Write ``raw`` over the header -- both copies, main and backup -- ignoring the lock, as
    a hostile neighbour (same user) would: through the file on POSIX, through a view of the
    mapping on Windows."""
    for offset in (0, BACKUP_OFFSET):
        if WINDOWS:
            segment._mapping()[offset : offset + len(raw)] = raw
            continue
        fd = os.open(segment.path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.pwrite(fd, raw, offset)
        finally:
            os.close(fd)


def remove_orphans(env: dict[str, str]) -> None:
    """``ipc.clean()`` in the segment directory that ``env`` names: after a command was
    terminated on Windows, its left-over lock file goes, as the next attach would remove it."""
    before = os.environ.get("TKSHM_DIR")
    wanted = env.get("TKSHM_DIR")
    try:
        if wanted:
            os.environ["TKSHM_DIR"] = wanted
        else:
            os.environ.pop("TKSHM_DIR", None)
        ipc.clean()
    finally:
        if before is None:
            os.environ.pop("TKSHM_DIR", None)
        else:
            os.environ["TKSHM_DIR"] = before
