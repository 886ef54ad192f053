"""Make docs/images/demo.png: ``tkshm demo`` after one load and one display, as the tour shows.

Starts its own Xvfb (1024x768, a classroom projector) with openbox as window manager (real
title bars; without openbox, none), runs the real ``tkshm demo``, presses Load in the left
window and Enter in its file dialog (the sample is already selected), presses Display in the
right window, and grabs the screen. Needs xvfb and xdotool (and openbox).

    python scripts/demo_screenshot.py [--output docs/images/demo.png]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time

from PIL import ImageGrab
from screenshot import DEADLINE, ROOT, Lines, start_xvfb, xdotool

SCREEN = (1024, 768)


def start_openbox(env: dict[str, str]) -> subprocess.Popen[bytes] | None:
    """openbox on the display, once it says it manages the screen; None without openbox."""
    if shutil.which("openbox") is None:
        return None
    for _ in range(5):  # now and then it cannot open a display that has just started
        manager = subprocess.Popen(["openbox", "--sm-disable"], env=env, stderr=subprocess.DEVNULL)
        end = time.monotonic() + DEADLINE
        while manager.poll() is None and time.monotonic() < end:
            check = ["xprop", "-root", "_NET_SUPPORTING_WM_CHECK"]
            if "window id" in subprocess.run(check, env=env, capture_output=True, text=True).stdout:
                return manager
            time.sleep(0.05)  # polling the root window; a deadline bounds it
        manager.kill()
        manager.wait()
    raise SystemExit("openbox did not start")


def stop_display(manager: subprocess.Popen[bytes] | None, server: subprocess.Popen[bytes]) -> None:
    """End the window manager (if any), then the X server."""
    for proc in (manager, server):
        if proc is not None:
            proc.terminate()
            proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=os.path.join(ROOT, "docs", "images", "demo.png"))
    args = parser.parse_args()
    server, display = start_xvfb(*SCREEN)
    env = {**os.environ, "DISPLAY": display, "TKSHM_TEST_EVENTS": "1"}
    manager = start_openbox(env)
    demo = subprocess.Popen(
        [sys.executable, "-m", "tkshm", "demo", "--lang", "en"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    events = Lines(demo)
    try:
        for _ in range(2):  # each window says where its buttons are, then READY
            events.wait_for("READY")

        def buttons(name: str) -> list[list[str]]:  # left window first
            found = [line.split()[2:4] for line in events.seen if line.startswith(f"GEOM {name} ")]
            return sorted(found, key=lambda point: int(point[0]))

        left, right = buttons("load_button")[0], buttons("display_button")[1]
        xdotool(env, "mousemove", *left, "click", "1")
        dialog = xdotool(env, "search", "--sync", "--onlyvisible", "--name", "^Open Image$").split()[0]
        xdotool(env, "windowfocus", "--sync", dialog)
        xdotool(env, "key", "Return")
        events.wait_for("SHOWN source=file")
        xdotool(env, "mousemove", *right, "click", "1")
        events.wait_for("GEOM image")  # the smooth picture is on screen
        xdotool(env, "mousemove", str(SCREEN[0] - 1), str(SCREEN[1] - 1))  # no hover highlight
        time.sleep(0.3)  # the trace panes refresh every 50 ms; nothing to synchronise with here
        shot = ImageGrab.grab(xdisplay=display)
        shot.save(args.output, optimize=True)
        print(f"wrote {args.output} ({shot.width}x{shot.height})")
        demo.send_signal(signal.SIGINT)  # as Ctrl+C would: the windows detach and close
        demo.wait(timeout=DEADLINE)
    finally:
        if demo.poll() is None:
            demo.kill()
        stop_display(manager, server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
