"""Make assets/qt-and-tkshm.png: Qt's own Shared Memory example showing what tkshm loaded.

Starts its own Xvfb (1280x800) with openbox as window manager, Qt's compiled Qt 5 example on
the left and a ``tkshm gui --qt 5`` window (Qt's protocol, under Qt's example's key) on the
right. The tkshm window loads a generated photo through its own file dialog; then Qt's
"Display Image From Shared Memory" is pressed, and Qt shows the same photo. Needs xvfb,
xdotool, openbox and ``qtbase5-examples``.

    python scripts/qt_screenshot.py [--output assets/qt-and-tkshm.png]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

from demo_screenshot import start_openbox, stop_display
from photo import make_photo
from PIL import Image, ImageGrab
from screenshot import DEADLINE, ROOT, Lines, start_xvfb, xdotool

SCREEN = (1280, 800)
QT_EXAMPLE = "/usr/lib/x86_64-linux-gnu/qt5/examples/corelib/ipc/sharedmemory/sharedmemory"
PHOTO = (480, 320)  # Qt's label shows it 1:1, so the Qt window grows to fit it


def wait_for_window(env: dict[str, str], *criteria: str) -> str:
    """The first visible window matching ``criteria`` (xdotool search), within the deadline."""
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        found = subprocess.run(
            ["xdotool", "search", "--all", "--onlyvisible", *criteria],
            env=env,
            capture_output=True,
            text=True,
        ).stdout.split()
        if found:
            return found[0]
        time.sleep(0.05)  # polling the X server; a deadline bounds it
    raise SystemExit(f"no window {criteria} within {DEADLINE} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=os.path.join(ROOT, "assets", "qt-and-tkshm.png"))
    args = parser.parse_args()
    server, display = start_xvfb(*SCREEN)
    manager = None
    started: list[subprocess.Popen[str]] = []
    with tempfile.TemporaryDirectory() as folder:
        qt_tmp = os.path.join(folder, "qt-tmp")  # Qt's key files: ours alone
        os.mkdir(qt_tmp, 0o700)
        env = {**os.environ, "DISPLAY": display, "TMPDIR": qt_tmp, "QT_QPA_PLATFORM": "xcb",
               "XDG_RUNTIME_DIR": qt_tmp}  # fmt: skip
        try:
            manager = start_openbox(env)
            picture = os.path.join(folder, "harbour.png")
            make_photo(*PHOTO, seed=5).save(picture)
            qt = subprocess.Popen([QT_EXAMPLE], env=env, cwd=folder, text=True, stderr=subprocess.DEVNULL)
            started.append(qt)
            qt_window = wait_for_window(env, "--pid", str(qt.pid), "--name", "^SharedMemory Example$")
            xdotool(env, "windowmove", "--sync", qt_window, "40", "80")

            window = subprocess.Popen(
                [sys.executable, "-m", "tkshm", "gui", "--qt", "5", "--lang", "en",
                 "--geometry", "560x640+680+60", "--suggest", picture],
                stdout=subprocess.PIPE, text=True, env={**env, "TKSHM_TEST_EVENTS": "1"}, cwd=ROOT,
            )  # fmt: skip
            started.append(window)
            events = Lines(window)
            events.wait_for("READY")
            load = next(ln for ln in reversed(events.seen) if ln.startswith("GEOM load_button ")).split()[2:4]
            xdotool(env, "mousemove", *load, "click", "1")
            dialog = wait_for_window(env, "--name", "^Open Image$")
            xdotool(env, "windowfocus", "--sync", dialog)
            xdotool(env, "key", "Return")  # the photo is selected already (--suggest)
            events.wait_for("GEOM image")

            # Qt: "Display Image From Shared Memory", the bottom button.
            shell = dict(
                ln.split("=", 1) for ln in xdotool(env, "getwindowgeometry", "--shell", qt_window).split()
            )
            width, height = int(shell["WIDTH"]), int(shell["HEIGHT"])
            xdotool(env, "mousemove", "--window", qt_window, str(width // 2), str(height - 24), "click", "1")
            end = time.monotonic() + DEADLINE
            while (
                int(
                    dict(
                        ln.split("=", 1)
                        for ln in xdotool(env, "getwindowgeometry", "--shell", qt_window).split()
                    )["HEIGHT"]
                )
                <= height
            ):  # the label grows to the picture's size once Qt has read it
                if time.monotonic() > end:
                    raise SystemExit("Qt did not display the picture")
                time.sleep(0.05)
            xdotool(env, "mousemove", str(SCREEN[0] - 1), str(SCREEN[1] - 1))  # no hover highlight
            time.sleep(0.5)  # let both windows finish redrawing; nothing to synchronise with here
            # 256 colours: the photo's grain would make a full-colour PNG too big for the README.
            shot = ImageGrab.grab(xdisplay=display).convert("RGB")
            left, top, right, bottom = shot.convert("L").point(lambda v: 255 if v > 8 else 0).getbbox()
            margin = 16  # the two windows and a strip of the black desktop around them
            shot = shot.crop((left - margin, top - margin, right + margin, bottom + margin))
            shot = shot.quantize(256, dither=Image.Dither.NONE)
            shot.save(args.output, optimize=True)
            print(f"wrote {args.output} ({shot.width}x{shot.height})")
            xdotool(env, "windowfocus", "--sync", qt_window)
            xdotool(env, "key", "Escape")  # Qt closes, as a person closes it
            qt.wait(timeout=DEADLINE)
            window.send_signal(signal.SIGINT)  # it detaches and removes Qt's segment
            window.wait(timeout=DEADLINE)
        finally:
            for proc in started:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            subprocess.run(
                [sys.executable, "-m", "tkshm", "clean", "--qt", "5"], env=env, cwd=ROOT, check=False
            )
            stop_display(manager, server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
