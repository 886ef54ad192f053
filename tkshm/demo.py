"""``tkshm demo``: the whole lesson on one screen, for a classroom.

Two windows -- two separate processes, as two copies of the Qt example would be -- open side
by side on a fresh key, each with its trace pane open and its Load dialog pointing at a sample
image, and both print their trace to this terminal. A teacher presses Load in one and Display
in the other and the class watches the key become a name, the segment being created and
attached, the lock taken and released, and the last detach remove the segment.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from types import FrameType
from typing import Final

from . import asset
from .app import MIN_WINDOW

# Room between and around the windows, and how big each may be (a 1280x800 projector fits two).
GAP: Final = 24
MAX_WINDOW: Final = (640, 860)
# After Ctrl+C the windows detach and close within a moment; one that has not after this
# long is stuck, and is killed (the segment is then removed by the next attach or clean).
CLOSE_TIMEOUT: Final = 10.0
# The first picture to load: small, so the second sample (1920x1200) makes the segment grow.
FIRST_SAMPLE: Final = "sunset.jpg"


def sample_directory() -> str:
    """The sample pictures shipped in ``tkshm.assets`` (``assets/samples`` in the source)."""
    return asset("samples")


def side_by_side(screen: tuple[int, int]) -> tuple[str, str]:
    """Tk geometries (``WxH+X+Y``) for two windows next to each other, centred on the screen.

    Never smaller than the window's minimum size: on a screen too narrow for two of those,
    the right window overlaps the left one rather than leaving the screen.
    """
    width = max(MIN_WINDOW[0], min(MAX_WINDOW[0], (screen[0] - 3 * GAP) // 2))
    height = max(MIN_WINDOW[1], min(MAX_WINDOW[1], screen[1] - 3 * GAP))
    left = max(0, (screen[0] - 2 * width - GAP) // 2)
    right = max(0, min(left + width + GAP, screen[0] - width))
    top = max(0, (screen[1] - height) // 2 - GAP // 2)
    return f"{width}x{height}+{left}+{top}", f"{width}x{height}+{right}+{top}"


def _screen_size() -> tuple[int, int]:
    import tkinter

    root = tkinter.Tk()
    try:
        root.withdraw()
        return root.winfo_screenwidth(), root.winfo_screenheight()
    finally:
        root.destroy()


def run_demo(key: str | None = None, lang: str | None = None) -> int:
    """Open the two windows, wait until both are closed, and return the exit status.

    Raises ImportError without tkinter and ``tkinter.TclError`` without a display.
    """
    screen = _screen_size()
    key = key or f"demo-{secrets.token_hex(3)}"  # fresh: nothing published under it yet
    sample = os.path.join(sample_directory(), FIRST_SAMPLE)
    command = [sys.executable, "-m", "tkshm", "--key", key, "--trace", "gui", "--suggest", sample]
    if lang:
        command += ["--lang", lang]
    windows: list[subprocess.Popen[bytes]] = []
    deadline: list[float] = []

    def close_windows(signum: int, frame: FrameType | None) -> None:
        # Ctrl+C in a terminal reaches the windows too; a SIGTERM sent to us alone does not.
        for window in windows:
            if window.poll() is None:
                window.send_signal(signum)
        deadline[:] = [time.monotonic() + CLOSE_TIMEOUT]

    for signum in (signal.SIGINT, signal.SIGTERM):  # before the windows exist: no gap to fall in
        signal.signal(signum, close_windows)
    windows += [subprocess.Popen([*command, "--geometry", where]) for where in side_by_side(screen)]
    print(
        f"Two windows on key {key!r}: processes {windows[0].pid} (left) and {windows[1].pid} (right).\n"
        "Left: press Load Image From File... and open the sample image.\n"
        "Right: press Display Image From Shared Memory.\n"
        "Each step of the protocol is printed below and in each window's trace pane.\n"
        "Close both windows, or press Ctrl+C here, to end the demo.",
        flush=True,
    )
    for window in windows:
        while window.poll() is None:
            if deadline and time.monotonic() > deadline[0]:
                window.kill()
            try:
                window.wait(0.2)  # a timed wait, so that a stuck window is noticed
            except subprocess.TimeoutExpired:
                continue
    status = 0
    for window in windows:
        if window.returncode < 0 and window.returncode not in (-signal.SIGINT, -signal.SIGTERM):
            # Killing a window is one of the lessons (exercise 1 of the tour), not a failure.
            name = signal.Signals(-window.returncode).name
            print(f"The window of process {window.pid} was killed ({name}).")
        elif window.returncode > 0:
            print(f"tkshm: The window of process {window.pid} ended with an error.", file=sys.stderr)
            status = 1
    return status
