"""Windows: waking the readers that wait for a frame, with a named event each.

POSIX readers sleep in ``select`` on a datagram socket the writer sends to (``tkshm._wake``);
Python has no Unix datagram sockets on Windows, but Windows has *events*: kernel objects a
thread can sleep on (``WaitForSingleObject``) until another process sets them (``SetEvent``).

Each attached segment that waits makes an auto-reset event ``Local\\<name>.wake.<pid>.<entry>``
once (the first wait) and marks its entry in the holder table (``tkshm._holders``) as waiting.
After each publish the writer sets the event of every such entry, opening it by name the first
time and keeping the handle after. An auto-reset event stays set until one wait takes it, so
a publish that comes between a reader's look at the generation and its wait is not missed:
the wait returns at once. A killed reader's event goes with its last handle; setting one that
only the writer still holds open costs a system call and wakes nobody.
"""

from __future__ import annotations

import _winapi
import ctypes
import sys
from ctypes import wintypes
from typing import Final

from . import _holders

assert sys.platform == "win32"

_EVENT_MODIFY_STATE: Final = 0x0002
_WAIT_OBJECT_0: Final = 0

_kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
_kernel32.CreateEventW.argtypes = [ctypes.c_void_p, wintypes.BOOL, wintypes.BOOL, wintypes.LPCWSTR]
_kernel32.CreateEventW.restype = wintypes.HANDLE
_kernel32.OpenEventW.argtypes = [wintypes.DWORD, wintypes.BOOL, wintypes.LPCWSTR]
_kernel32.OpenEventW.restype = wintypes.HANDLE
_kernel32.SetEvent.argtypes = [wintypes.HANDLE]
_kernel32.SetEvent.restype = wintypes.BOOL


def event_name(namespace: str, name: str, pid: int, entry: int) -> str:
    return f"{namespace}{name}.wake.{pid}.{entry}"


class Waiter:
    """A reader's wake-up event, set by the writer after each publish, until :meth:`close`."""

    def __init__(self, namespace: str, name: str, holders: _holders.Holders) -> None:
        if holders.index is None:
            raise OSError("this segment is not in its holder table (it is full)")
        self._holders = holders
        self.name = event_name(namespace, name, holders.pid, holders.index)
        handle = _kernel32.CreateEventW(None, False, False, self.name)
        if not handle:
            raise ctypes.WinError(ctypes.get_last_error())
        self._handle: int | None = int(handle)
        holders.set_waiting(True)  # only now may a writer look for the event

    def fileno(self) -> None:
        """No descriptor to ``select`` on (Tk on Windows has no ``createfilehandler`` anyway)."""
        return None

    def wait(self, timeout: float | None) -> bool:
        """Sleep until the writer sets the event (True) or ``timeout`` passes (False)."""
        assert self._handle is not None
        ms = _winapi.INFINITE if timeout is None else max(0, round(timeout * 1000))
        return bool(_winapi.WaitForSingleObject(self._handle, ms) == _WAIT_OBJECT_0)

    def drain(self) -> None:
        """Take a pending wake-up, if there is one."""
        self.wait(0)

    def close(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            self._holders.set_waiting(False)
            _winapi.CloseHandle(handle)


class Notifier:
    """The writer's side: the events of the waiting readers, opened once each."""

    def __init__(self, namespace: str, name: str, holders: _holders.Holders) -> None:
        self._namespace, self._name, self._holders = namespace, name, holders
        self._opened: dict[tuple[int, int, int], int] = {}  # (entry, pid, created) -> handle

    def notify(self) -> None:
        """Set the event of every waiting reader (after a publish)."""
        waiting = self._holders.waiting()
        for token in [token for token in self._opened if token not in waiting]:
            _winapi.CloseHandle(self._opened.pop(token))  # that reader has gone or stopped waiting
        for token in waiting:
            handle = self._opened.get(token)
            if handle is None:
                entry, pid, _ = token
                opened = _kernel32.OpenEventW(
                    _EVENT_MODIFY_STATE, False, event_name(self._namespace, self._name, pid, entry)
                )
                if not opened:
                    continue  # between its flag and its event, or gone: the next publish tries again
                handle = self._opened[token] = int(opened)
            _kernel32.SetEvent(handle)

    def close(self) -> None:
        for handle in self._opened.values():
            _winapi.CloseHandle(handle)
        self._opened.clear()
