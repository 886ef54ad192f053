"""Wake-ups after each publish (POSIX): one datagram socket per waiting reader.

A reader that waits for the next frame should sleep in the kernel, not poll a timer: polling
every few milliseconds costs CPU and adds half a period of latency. ``inotify`` cannot help
(writes through ``mmap`` are not file events), but a Unix-domain *datagram* socket can: the
waiting reader binds one in the segment's private directory (``<name>.wake.<random>``) and
sleeps in ``select``; after making the header name a new frame, the writer sends a few bytes
to every such socket. ``sendto`` never blocks (a reader whose queue is full is awake anyway),
and a socket whose reader was killed refuses the datagram, so the writer removes it.

Paths of Unix sockets are limited to about 100 bytes. The directory's descriptor makes them
short on Linux (``/proc/self/fd/<dir>/<entry>`` names the same file); elsewhere the full path
is used, and a directory too deep for it leaves the reader polling (:class:`Waiter` raises
``OSError`` and ``tkshm.ipc`` falls back).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import select
import socket
import stat
import struct
import sys
import time
from typing import Final

assert sys.platform != "win32"

INFIX: Final = ".wake."
_GENERATION: Final = struct.Struct("<Q")
_PROC_FD: Final = "/proc/self/fd"
# A directory's mtime comes from a coarse clock (one tick: 1 to 10 ms): two changes in one
# tick leave one mtime. A listing is trusted only once the directory has been still this long.
_SETTLED_NS: Final = 50_000_000
# One unbound socket sends every wake-up of this process (sendto is safe across threads).
_sender: socket.socket | None = None
# The wake-up sockets of each segment, as last listed: (directory, name) -> (the directory's
# inode, mtime and size then, whether that listing can be trusted, the sockets' entries).
_listed: dict[tuple[int, int, str], tuple[tuple[int, int], bool, list[str]]] = {}


def _address(dir_path: str, dir_fd: int, entry: str) -> str:
    if os.path.isdir(_PROC_FD):
        return f"{_PROC_FD}/{dir_fd}/{entry}"
    return os.path.join(dir_path, entry)


class Waiter:
    """A reader's wake-up socket, bound in the segment directory until :meth:`close`."""

    def __init__(self, dir_path: str, dir_fd: int, name: str) -> None:
        self._dir_fd = dir_fd
        self.entry = f"{name}{INFIX}{secrets.token_hex(6)}"
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self._socket.setblocking(False)
            self._socket.bind(_address(dir_path, dir_fd, self.entry))
            os.chmod(self.entry, 0o600, dir_fd=dir_fd)  # bind() follows the umask; keep it ours
        except BaseException:
            self._socket.close()
            raise

    def fileno(self) -> int:
        return self._socket.fileno()

    def wait(self, timeout: float | None) -> bool:
        """Sleep until a wake-up comes (True) or ``timeout`` passes (False)."""
        return bool(select.select([self._socket], [], [], timeout)[0])

    def drain(self) -> None:
        """Read every pending wake-up: after it, the socket is readable only on the next one."""
        with contextlib.suppress(BlockingIOError):
            while True:
                self._socket.recv(64)

    def close(self) -> None:
        if self._socket.fileno() >= 0:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.entry, dir_fd=self._dir_fd)
            self._socket.close()


def _sockets(dir_fd: int, name: str) -> list[str]:
    """The wake-up sockets of segment ``name``: listed again only when the directory changed.

    A publish should not read the whole directory: one ``fstat`` of it says whether anything
    was added or removed since the last listing (its mtime and size change), once that
    listing is older than a tick of the clock that stamps it."""
    dir_st = os.fstat(dir_fd)
    stamp = (dir_st.st_mtime_ns, dir_st.st_size)
    key = (dir_st.st_dev, dir_st.st_ino, name)
    cached = _listed.get(key)
    if cached is not None and cached[0] == stamp and cached[1]:
        return cached[2]
    settled = time.time_ns() - dir_st.st_mtime_ns > _SETTLED_NS
    prefix = name + INFIX
    found = []
    for entry in os.listdir(dir_fd):
        if not entry.startswith(prefix):
            continue
        try:
            st = os.stat(entry, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISSOCK(st.st_mode) and st.st_uid == os.geteuid():
            found.append(entry)  # never one not ours (a planted symlink, say): no sending through it
    _listed[key] = (stamp, settled, found)
    return found


def notify(dir_path: str, dir_fd: int, name: str, generation: int) -> None:
    """Wake every reader waiting on segment ``name``; remove sockets whose reader is gone."""
    global _sender
    message = _GENERATION.pack(generation)
    for entry in _sockets(dir_fd, name):
        if _sender is None:
            _sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            _sender.setblocking(False)
        try:
            _sender.sendto(message, _address(dir_path, dir_fd, entry))
        except BlockingIOError:
            pass  # its queue is full: that reader has wake-ups pending already
        except OSError as exc:
            if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):  # its reader was killed
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry, dir_fd=dir_fd)


def remove_all(dir_fd: int, name: str) -> None:
    """Remove every wake-up socket of segment ``name`` (its last holder is leaving)."""
    prefix = name + INFIX
    for entry in os.listdir(dir_fd):
        if entry.startswith(prefix):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry, dir_fd=dir_fd)
