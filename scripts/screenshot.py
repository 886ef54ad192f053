"""Make assets/screenshot.png: two tkshm windows sharing one image, as the README shows.

Starts its own Xvfb (unless ``--use-display``), launches two real ``tkshm gui`` processes side
by side, loads a generated photo in the first through its own "Load Image From File..." button
and Tk file dialog (driven with xdotool), displays it from shared memory in the second, and
grabs the screen with Pillow. Needs xvfb and xdotool (``apt-get install xvfb xdotool``).

    python scripts/screenshot.py [--output assets/screenshot.png] [--use-display]
"""

from __future__ import annotations

import argparse
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time

from photo import make_photo
from PIL import ImageGrab

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WIDTH, HEIGHT, GAP = 520, 600, 16
DEADLINE = 30.0


class Lines:
    """Lines of a child's stdout as they arrive, each with its wall-clock time.

    A reader thread feeds a queue, so every wait has a deadline (``select`` plus
    ``readline`` on a text pipe can sit on a line that is already buffered).
    """

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.queue: queue.Queue[tuple[int, str]] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.queue.put((time.time_ns(), line.rstrip("\n")))

    def wait_for(self, prefix: str) -> tuple[int, str]:
        """The next line that starts with ``prefix``, and when it arrived (ns)."""
        end = time.monotonic() + DEADLINE
        while True:
            arrived, line = self.queue.get(timeout=max(0.01, end - time.monotonic()))
            self.seen.append(line)
            if line.startswith(prefix):
                return arrived, line


class Window(Lines):
    """A real ``tkshm gui`` process that reports its events on stdout."""

    def __init__(self, key: str, x: int, env: dict[str, str]) -> None:
        command = [sys.executable, "-m", "tkshm", "gui", "--key", key, "--lang", "en"]
        command += ["--geometry", f"{WIDTH}x{HEIGHT}+{x}+{GAP}"]
        events = {**env, "TKSHM_TEST_EVENTS": "1"}
        super().__init__(subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=events, cwd=ROOT))

    def point(self, name: str) -> tuple[str, str]:
        line = next(ln for ln in reversed(self.seen) if ln.startswith(f"GEOM {name} "))
        x, y = line.split()[2:4]
        return x, y


def xdotool(env: dict[str, str], *args: str) -> str:
    return subprocess.run(["xdotool", *args], env=env, capture_output=True, text=True, check=True).stdout


def start_xvfb(width: int, height: int) -> tuple[subprocess.Popen[bytes], str]:
    """An X server of our own; ``-displayfd`` makes it pick a free display number."""
    read_fd, write_fd = os.pipe()
    # -noreset: else the server resets as its last client leaves, refusing the next (xorg/xserver#1102).
    screen = ["-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp", "-noreset"]
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), *screen],
        pass_fds=(write_fd,),
    )
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        number = pipe.readline().strip()
    if not number:
        server.kill()
        raise SystemExit("Xvfb did not start")
    return server, f":{number}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=os.path.join(ROOT, "assets", "screenshot.png"))
    parser.add_argument("--use-display", action="store_true", help="use $DISPLAY instead of a new Xvfb")
    args = parser.parse_args()
    screen_w, screen_h = 2 * WIDTH + 3 * GAP, HEIGHT + 2 * GAP
    server = None
    env = dict(os.environ)
    if not args.use_display:
        server, env["DISPLAY"] = start_xvfb(screen_w, screen_h)
    windows: list[Window] = []
    key = "screenshot"
    try:
        with tempfile.TemporaryDirectory() as folder:
            picture = os.path.join(folder, "lake.png")
            make_photo(1920, 1080, seed=7).save(picture)
            first, second = Window(key, GAP, env), Window(key, WIDTH + 2 * GAP, env)
            windows += [first, second]
            for window in windows:
                window.wait_for("READY")
            xdotool(env, "mousemove", *first.point("load_button"), "click", "1")
            first.wait_for("LABEL Select an image file")
            dialog = xdotool(env, "search", "--sync", "--onlyvisible", "--name", "^Open Image$").split()[0]
            xdotool(env, "windowfocus", "--sync", dialog)
            xdotool(env, "type", "--delay", "5", picture)
            xdotool(env, "key", "Return")
            first.wait_for("GEOM image")
            xdotool(env, "mousemove", *second.point("display_button"), "click", "1")
            second.wait_for("GEOM image")
            xdotool(env, "mousemove", str(screen_w - 1), str(screen_h - 1))  # no hover highlight
            time.sleep(0.3)  # let the last hover redraw settle; nothing to synchronise with here
            shot = ImageGrab.grab(xdisplay=env["DISPLAY"]).crop((0, 0, screen_w, screen_h))
            shot.save(args.output, optimize=True)
            print(f"wrote {args.output} ({shot.width}x{shot.height})")
            for window in windows:  # close as a user would (Ctrl+Q): each detaches, the last removes
                xdotool(env, "mousemove", *window.point("display_button"), "key", "ctrl+q")
                window.proc.wait(timeout=DEADLINE)
    finally:
        for window in windows:
            if window.proc.poll() is None:
                window.proc.kill()
                window.proc.wait()
        if server is not None:
            server.terminate()
            server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
