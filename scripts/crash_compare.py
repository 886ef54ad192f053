"""What a stuck or killed process costs the others: Qt's QSharedMemory,
multiprocessing.shared_memory and tkshm.

For Qt and tkshm, one process creates a segment and holds its lock. A second process tries to
lock it while the holder is alive but stuck, and again after the holder is killed with
SIGKILL. multiprocessing.shared_memory has no lock: there, a reader exits, then a creator is
killed, and we look at what is left. The tour (docs/tour.md, "How tkshm differs") quotes what
this prints. Needs PySide6 for the Qt part (``pip install -e '.[bench]'``); anything Qt leaves
in System V IPC is removed afterwards.

    python scripts/crash_compare.py
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

HERE = os.path.abspath(__file__)


def _child(role: str, name: str) -> None:
    if role == "qt-holder":
        from PySide6.QtCore import QSharedMemory

        memory = QSharedMemory(name)
        assert memory.create(1024) and memory.lock(), memory.errorString()
        print("ready", flush=True)
        time.sleep(60)
    elif role == "qt-other":
        from PySide6.QtCore import QSharedMemory

        memory = QSharedMemory(name)
        attached = memory.attach()
        started = time.monotonic()
        locked = attached and memory.lock()
        print(f"attach {attached}, lock {locked} after {time.monotonic() - started:.3f} s", flush=True)
    elif role == "mp-creator":
        from multiprocessing import shared_memory

        memory = shared_memory.SharedMemory(create=True, size=1024)
        print(memory.name, flush=True)
        time.sleep(60)
    elif role == "mp-reader":
        from multiprocessing import shared_memory

        memory = shared_memory.SharedMemory(name)
        memory.close()
    elif role == "tkshm-holder":
        from PIL import Image

        from tkshm import ipc

        segment = ipc.publish(Image.new("RGB", (16, 16)), key=name)
        with segment.lock():
            print("ready", flush=True)
            time.sleep(60)
    elif role == "tkshm-other":
        from tkshm import ipc

        started = time.monotonic()
        try:
            ipc.read_image(key=name, timeout=2.0)
        except ipc.TkshmError as exc:
            waited = time.monotonic() - started
            print(f"{type(exc).__name__} after {waited:.1f} s: {' '.join(str(exc).split())}", flush=True)
        else:
            print("read the image", flush=True)


def _run(role: str, name: str) -> subprocess.Popen[str]:
    # stderr is dropped: multiprocessing's resource tracker warns about what it removes.
    return subprocess.Popen(
        [sys.executable, HERE, role, name], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )


def _kill_after_ready(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    process.send_signal(signal.SIGKILL)
    process.wait()
    return line


def _ask(role: str, name: str, timeout: float = 30) -> str:
    """Run a child to the end and return what it printed, or say it was still waiting."""
    try:
        done = subprocess.run(
            [sys.executable, HERE, role, name], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return f"still waiting after {timeout:g} s, killed"
    return done.stdout.strip()


def _sysv(kind: str) -> set[str]:
    out = subprocess.run(["ipcs", kind], capture_output=True, text=True).stdout
    return {line.split()[1] for line in out.splitlines() if line.startswith("0x")}


def _stuck_then_killed(library: str, key: str, wait: float) -> None:
    """Ask for the lock while its holder is alive but stuck; then kill the holder (SIGKILL)."""
    holder = _run(f"{library}-holder", key)
    assert holder.stdout is not None
    holder.stdout.readline()  # "ready": the holder has the lock
    print(f"  holder alive and stuck holding the lock; a new process: {_ask(f'{library}-other', key, wait)}")
    holder.kill()
    holder.wait()
    print("  holder killed while holding the lock")


def qt() -> None:
    from PySide6.QtCore import qVersion

    before_m, before_s = _sysv("-m"), _sysv("-s")
    key = f"crash-compare-{os.getpid()}"
    print(f"Qt {qVersion()} (the lock is lock()):")
    _stuck_then_killed("qt", key, wait=3)
    print(f"    System V segments left behind: {len(_sysv('-m') - before_m)}")
    print(f"    a new process: {_ask('qt-other', key)} (it sees the dead holder's segment)")
    left_s = _sysv("-s") - before_s
    print(f"    after every process has exited, System V semaphores left behind: {len(left_s)}")
    for semid in left_s:
        subprocess.run(["ipcrm", "-s", semid], check=False)
    for shmid in _sysv("-m") - before_m:
        subprocess.run(["ipcrm", "-m", shmid], check=False)


def multiprocessing_() -> None:
    print(f"multiprocessing.shared_memory (Python {sys.version.split()[0]}):")
    creator = _run("mp-creator", "-")
    assert creator.stdout is not None
    name = creator.stdout.readline().strip()
    subprocess.run([sys.executable, HERE, "mp-reader", name], capture_output=True, check=True)
    alive = os.path.exists("/dev/shm/" + name.lstrip("/"))
    print(f"  a reader attached, closed and exited; the creator's segment still exists: {alive}")
    creator.kill()
    creator.wait()
    name = _kill_after_ready(_run("mp-creator", "-"))
    deadline = time.monotonic() + 10
    while os.path.exists("/dev/shm/" + name.lstrip("/")) and time.monotonic() < deadline:
        time.sleep(0.05)  # the resource tracker notices the death on its own schedule
    alive = os.path.exists("/dev/shm/" + name.lstrip("/"))
    print(f"  creator killed: its segment still exists (for processes still using it): {alive}")


def tkshm() -> None:
    from tkshm import ipc

    key = f"crash-compare-{os.getpid()}"
    print("tkshm:")
    _stuck_then_killed("tkshm", key, wait=30)  # its reader gives up by itself after 2 s
    print(f"    a new process: {_ask('tkshm-other', key)}")
    print(f"    files left in {ipc.segment_directory()}: {len(ipc.list_segments())}")


if __name__ == "__main__":
    if len(sys.argv) == 3:
        _child(sys.argv[1], sys.argv[2])
    else:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        try:
            qt()
        except ImportError:
            print("Qt: PySide6 is not installed (pip install -e '.[bench]'); skipped.")
        multiprocessing_()
        tkshm()
