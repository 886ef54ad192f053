"""Qt's own protocol: share an image with Qt's *Shared Memory* example itself.

tkshm's segments hold a header and raw RGBA pixels. Qt's example holds ``QDataStream <<
QImage`` (a marker, then a PNG; see :mod:`tkshm.qt.payload`) in a segment named by Qt's own
rules (:mod:`tkshm.qt.keys`) and locked with Qt's semaphore. This package speaks that
protocol, so a tkshm command or window and the real Qt program pass an image both ways::

    from tkshm import qt
    with qt.publish(image, version=5):      # Qt's example can now press "Load Image From
        ...                                 # Shared Memory"
    picture = qt.read_image(version=6)      # what Qt 6's example loaded

``version=5`` is Qt 5, and Qt 6 with a legacy key (``QSharedMemory("K")``): System V objects
on Unix. ``version=6`` is Qt 6 with a native key (``QSharedMemory(QNativeIpcKey("K"))``):
POSIX objects on Unix. On Unix it needs the extra ``tkshm[qt]`` (``sysv_ipc``, ``posix_ipc``).
On Windows both key styles name a file mapping and a semaphore, which ctypes reaches with no
extra package (:mod:`tkshm.qt.win`); only the names differ.
"""

from __future__ import annotations

import sys
from typing import Final

from PIL import Image

from .. import trace
from ..errors import CorruptSegmentError
from ..ipc import DEFAULT_TIMEOUT
from . import payload
from .backend import QtBackend
from .keys import DEFAULT_KEY, Version, check_key, legacy_name, native_posix_name, native_windows_names

__all__ = ["DEFAULT_KEY", "VERSIONS", "QtBackend", "Version", "backend", "clean", "publish", "read_image"]

VERSIONS: Final = (5, 6)


def backend(key: str = DEFAULT_KEY, version: Version = 5) -> QtBackend:
    """The handle on Qt's objects for ``key``, not yet created or attached."""
    check_key(key)
    if version not in VERSIONS:
        raise ValueError(f"Qt version {version!r}: use 5 or 6")
    if sys.platform == "win32":
        from . import win

        if version == 5:  # legacy keys: the names Qt's key files have on Unix, as object names
            names = legacy_name(key, "sharedmemory"), legacy_name(key, "systemsem")
        else:  # Qt 6's native keys: the key itself, and "_sem" for the semaphore
            names = native_windows_names(key)
        return win.WindowsNamed(key, version, *names)
    # Imported here: each needs its package from the tkshm[qt] extra, and says so if missing.
    if version == 5:
        from . import sysv

        return sysv.SystemV(key)
    from . import posix

    return posix.PosixNative(native_posix_name(key), key)


def publish(
    image: Image.Image, key: str = DEFAULT_KEY, version: Version = 5, timeout: float = DEFAULT_TIMEOUT
) -> QtBackend:
    """Publish ``image`` as Qt's example's "Load Image From File..." does, and stay attached.

    The image is encoded first (``QDataStream << QImage``: a PNG), then a segment of exactly
    that size is created and the bytes are copied in under Qt's semaphore. Close the returned
    handle (or use it as a context manager) to detach; as the last holder, that removes what
    it made, which Qt does not always do.
    """
    data = payload.encode(image)
    handle = backend(key, version)
    try:
        handle.create(len(data))
        trace.step("qt: created %s, %d bytes (a QDataStream'd PNG)", handle.objects()[0], len(data))
        with handle.lock(timeout):
            trace.step("qt: lock granted (Qt's semaphore)")
            handle.write(data)
        trace.step("qt: copied %d bytes in; unlocked; staying attached, as Qt's example does", len(data))
    except BaseException:
        handle.close()
        raise
    return handle


def read_image(key: str = DEFAULT_KEY, version: Version = 5, timeout: float = DEFAULT_TIMEOUT) -> Image.Image:
    """Read what Qt's example published, as its "Display Image From Shared Memory" does:
    attach, lock, copy out, unlock, detach; then decode, with tkshm's limits, outside the lock.

    Qt's semaphore is waited for at most ``timeout`` seconds (Qt waits for ever).
    """
    handle = backend(key, version)
    try:
        size = handle.attach()
        trace.step("qt: attached to %s, %d bytes", handle.objects()[0], size)
        if size > payload.MAX_PAYLOAD:
            raise CorruptSegmentError(
                f"{handle.where} is {size:,} bytes, more than a QDataStream'd image of the largest "
                f"size tkshm decodes ({payload.MAX_PAYLOAD:,} bytes); it was not read."
            )
        with handle.lock(timeout):
            trace.step("qt: lock granted (Qt's semaphore)")
            data = handle.read()
        removed = handle.detach()
        gone = "; we were its last holder, so it was removed" if removed else ""
        trace.step("qt: copied %d bytes out; unlocked; detached%s", len(data), gone)
    finally:
        handle.close()
    return payload.decode(data, handle.where)


def clean(key: str = DEFAULT_KEY, version: Version = 5, timeout: float = DEFAULT_TIMEOUT) -> list[str]:
    """Repair what a killed Qt program left under ``key``: an orphaned segment is removed, and
    a semaphore that stays taken for ``timeout`` seconds is released. Returns what was done."""
    handle = backend(key, version)
    try:
        done: list[str] = handle.clean(timeout)
        return done
    finally:
        handle.close()
