"""The Qt side of the Qt protocol tests: PySide6 doing what Qt's example's two slots do.

    python qt_peer.py load KEY STYLE IMAGE       create, lock, copy in, unlock; print READY;
                                                 stay attached until standard input ends
    python qt_peer.py display KEY STYLE OUT      attach, lock, copy out, unlock, detach; save OUT
    python qt_peer.py hold KEY STYLE SECONDS     attach, lock; print LOCKED; hold it SECONDS;
                                                 unlock, print UNLOCKED
    python qt_peer.py lock-and-wait KEY STYLE    attach, lock; print LOCKED; wait to be killed
    python qt_peer.py names KEY STYLE            create, lock; print NAMES and Qt's nativeKey()
                                                 (as a Python literal); unlock when input ends

STYLE is ``legacy`` (``QSharedMemory("K")``, Qt 5's way: System V on Unix) or ``native``
(``QSharedMemory(QNativeIpcKey("K"))``: POSIX on Unix); on Windows both are a named file
mapping and semaphore. Each line of Qt's example that matters is here, in its order
(dialog.cpp's loadFromFile and loadFromMemory).

The test lets a waiting peer go by closing its standard input: that works alike on every
platform, where a signal other than a kill cannot be sent to a Windows process.
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# PySide6's shiboken imports numpy if it can. The peer uses none of it, and a numpy that cannot
# load (numpy 2.4's DLLs call a C runtime function Wine 8.0 lacks) would take the peer down too.
sys.modules.setdefault("numpy", None)  # type: ignore[arg-type]

from PySide6.QtCore import QBuffer, QByteArray, QDataStream, QIODevice, QNativeIpcKey, QSharedMemory  # noqa: E402
from PySide6.QtGui import QGuiApplication, QImage  # noqa: E402


def memory(key: str, style: str) -> QSharedMemory:
    return QSharedMemory(key) if style == "legacy" else QSharedMemory(QNativeIpcKey(key))


def load(shared: QSharedMemory, path: str) -> None:
    image = QImage()
    if not image.load(path):
        sys.exit(f"qt_peer: cannot load {path}")
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.ReadWrite)
    out = QDataStream(buffer)
    out << image
    size = int(buffer.size())
    if not shared.create(size):
        print(f"CREATE-FAILED {shared.errorString()}", flush=True)
        sys.exit(3)
    shared.lock()
    shared.data()[:size] = bytes(buffer.data())  # type: ignore[index]
    shared.unlock()
    print("READY", flush=True)
    until_told()  # attached until the test lets go
    shared.detach()


def display(shared: QSharedMemory, out_path: str) -> None:
    if not shared.attach():
        print(f"ATTACH-FAILED {shared.errorString()}", flush=True)
        sys.exit(3)
    buffer = QBuffer()
    stream = QDataStream(buffer)
    image = QImage()
    shared.lock()
    buffer.setData(QByteArray(bytes(shared.constData())[: shared.size()]))  # type: ignore[index]
    buffer.open(QIODevice.OpenModeFlag.ReadOnly)
    stream >> image
    shared.unlock()
    shared.detach()
    if image.isNull():
        print("NULL-IMAGE", flush=True)
        sys.exit(4)
    image.save(out_path, "PNG")
    print(f"SAVED {image.width()}x{image.height()}", flush=True)


def hold(shared: QSharedMemory, seconds: float | None) -> None:
    if not shared.attach():
        print(f"ATTACH-FAILED {shared.errorString()}", flush=True)
        sys.exit(3)
    shared.lock()
    print("LOCKED", flush=True)
    if seconds is None:
        until_told()  # a kill comes first: the lock is never given back
        return
    time.sleep(seconds)  # the lock held for a measured time: what the test checks
    shared.unlock()
    print("UNLOCKED", flush=True)
    shared.detach()


def names(shared: QSharedMemory) -> None:
    if not shared.create(1):
        print(f"CREATE-FAILED {shared.errorString()}", flush=True)
        sys.exit(3)
    shared.lock()
    print(f"NAMES {shared.nativeKey()!a}", flush=True)  # ascii: any key survives the pipe
    until_told()
    shared.unlock()
    shared.detach()


def until_told() -> None:
    """Wait until the test closes our standard input (or dies, which closes it too)."""
    sys.stdin.read()


def main() -> None:
    command, key, style, *rest = sys.argv[1:]
    app = QGuiApplication([])  # QImage's PNG plug-in needs an application object  # noqa: F841
    shared = memory(key, style)
    if command == "load":
        load(shared, rest[0])
    elif command == "display":
        display(shared, rest[0])
    elif command == "hold":
        hold(shared, float(rest[0]))
    elif command == "lock-and-wait":
        hold(shared, None)
    elif command == "names":
        names(shared)
    else:
        sys.exit(f"qt_peer: unknown command {command}")


if __name__ == "__main__":
    main()
