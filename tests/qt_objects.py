"""What Qt 5 leaves in the kernel for a key: the System V objects behind its key files.

Shared by the tests against PySide6 (test_qt_protocol.py) and against Qt's compiled example
(test_qt_example.py): each gives every test its own Qt temporary directory (``TMPDIR``), so
the key files found there are that test's alone.
"""

from __future__ import annotations

import os

import sysv_ipc

from tkshm.qt import keys


def remove_sysv(key: str, tmpdir: str) -> list[str]:
    """Remove (and name) System V objects still at the key's key files."""
    found = []
    for kind in ("sharedmemory", "systemsem"):
        path = os.path.join(tmpdir, keys.legacy_name(key, kind))
        if not os.path.exists(path):
            continue
        number = sysv_ipc.ftok(path, keys.FTOK_ID, silence_warning=True)
        cls = sysv_ipc.SharedMemory if kind == "sharedmemory" else sysv_ipc.Semaphore
        try:
            obj = cls(number)
        except sysv_ipc.ExistentialError:
            continue
        found.append(f"{kind} {obj.id}")
        if kind == "sharedmemory":
            obj.detach()
        obj.remove()
        os.unlink(path)
    return found
