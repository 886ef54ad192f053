"""Make docs/images/windows.png: the window of a Windows Python, running under Wine.

Starts its own Xvfb, publishes a sample image from a Windows ``tkshm put`` (a named file
mapping), opens a Windows ``tkshm gui`` on the same key with its trace pane, presses
"Display Image From Shared Memory" with xdotool, and grabs the screen with Pillow. Both are
the real python.exe of ``scripts/wine-python.sh`` (run ``scripts/wine-python.sh setup``
first); Wine draws the Tk window on the X display. Needs xvfb and xdotool.

    python scripts/wine_screenshot.py [--output docs/images/windows.png]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

from PIL import ImageGrab
from screenshot import DEADLINE, ROOT, Lines, start_xvfb, xdotool

SCREEN = (900, 840)
WINE_PYTHON = os.path.join(ROOT, "scripts", "wine-python.sh")
KEY = "wine-screenshot"


def windows_python(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """``scripts/wine-python.sh run ARGS`` in a process group of its own, so that ending it
    ends the Wine process behind it too."""
    return subprocess.Popen(
        [WINE_PYTHON, "run", *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env=env, cwd=ROOT, start_new_session=True,
    )  # fmt: skip


def end(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # Wine ends a Windows process on SIGTERM
    proc.wait(timeout=DEADLINE)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=os.path.join(ROOT, "docs", "images", "windows.png"))
    args = parser.parse_args()
    server, display = start_xvfb(*SCREEN)
    env = {**os.environ, "DISPLAY": display, "TKSHM_TEST_EVENTS": "1", "LANG": "en_US.UTF-8"}
    started: list[subprocess.Popen[str]] = []
    try:
        put = windows_python("-m", "tkshm", "put", "--key", KEY, "assets/samples/sunset.jpg", env=env)
        started.append(put)
        Lines(put).wait_for("Published ")
        geometry = f"{SCREEN[0] - 40}x{SCREEN[1] - 40}+20+20"
        gui = windows_python(
            "-m", "tkshm", "gui", "--key", KEY, "--lang", "en", "--trace", "--geometry", geometry, env=env
        )
        started.append(gui)
        events = Lines(gui)
        events.wait_for("READY")
        display_button = next(
            line.split()[2:4] for line in events.seen if line.startswith("GEOM display_button ")
        )
        xdotool(env, "mousemove", *display_button, "click", "1")
        events.wait_for("GEOM image")  # the smooth picture is on screen
        title = "^SharedMemory Example"  # Wine names the X window after the Windows one
        window = xdotool(env, "search", "--sync", "--onlyvisible", "--name", title).split()[0]
        geometry_lines = xdotool(env, "getwindowgeometry", "--shell", window).split()
        place = dict(line.split("=") for line in geometry_lines)
        x, y, width, height = (int(place[name]) for name in ("X", "Y", "WIDTH", "HEIGHT"))
        # Scroll the trace pane to its top, where the key becomes the name of a file mapping.
        xdotool(env, "mousemove", str(x + width // 2), str(y + height - 40), "click", "--repeat", "30", "4")
        xdotool(env, "mousemove", str(SCREEN[0] - 1), str(SCREEN[1] - 1))  # no hover highlight
        time.sleep(0.5)  # the trace pane refreshes every 50 ms; nothing to synchronise with here
        margin = 12
        box = (x - margin, y - margin, x + width + margin, y + height + margin)
        shot = ImageGrab.grab(bbox=box, xdisplay=display)
        shot.save(args.output, optimize=True)
        print(f"wrote {args.output} ({shot.width}x{shot.height})")
    finally:
        for proc in reversed(started):
            end(proc)
        server.terminate()
        server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
