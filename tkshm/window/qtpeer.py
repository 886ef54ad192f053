"""The window's two slots in Qt's own protocol (``tkshm gui --qt 5|6``).

With ``--qt`` the window is a drop-in peer of Qt's *Shared Memory* example: **Load** publishes
as Qt's ``loadFromFile()`` does (a ``QDataStream``'d PNG in Qt's segment, under Qt's
semaphore), and **Display** reads what Qt's example loaded, as ``loadFromMemory()`` does.
The work runs on the window's worker, like the rest; the protocol itself is :mod:`tkshm.qt`.
"""

from __future__ import annotations

import os
import time

from .. import qt
from ..images import load_image
from ..ipc import CopyStats
from ..qt.keys import Version
from .picture import Picture


class QtPeer:
    """What the dialog's buttons do in Qt's protocol; methods marked *worker* run there."""

    def __init__(self, key: str, version: Version) -> None:
        self.key = key
        self.version = version
        self._published: qt.QtBackend | None = None  # held from a Load until the next, or close()
        self.objects = qt.backend(key, version).summary()  # refuses a bad key before the window opens

    def load(self, path: str) -> Picture:  # worker
        """Decode the file, then publish it as Qt does: detach from the segment we held (as
        Qt's example does first), create a new one of the payload's size, copy in, stay attached."""
        loaded = load_image(path)
        self.unpublish()
        started = time.perf_counter()
        self._published = qt.publish(loaded.image, self.key, self.version)
        stats = CopyStats(0.0, time.perf_counter() - started, loaded.image.width * loaded.image.height * 4)
        self.objects = self._published.summary()
        return Picture(loaded.image, "file", None, stats, os.path.basename(path), loaded.frame_count)

    def display(self) -> Picture:  # worker
        """Attach, lock, copy out, unlock, detach; decode the PNG Qt put there."""
        started = time.perf_counter()
        image = qt.read_image(self.key, self.version)
        stats = CopyStats(0.0, time.perf_counter() - started, image.width * image.height * 4)
        return Picture(image, "shm", None, stats)

    def unpublish(self) -> None:
        """Detach from what we published (as the last holder, that removes it)."""
        published, self._published = self._published, None
        if published is not None:
            published.close()
