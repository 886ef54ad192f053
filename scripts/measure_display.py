"""Time the window, key press to pixels on screen: display from shared memory versus loading
the same image from its PNG file, and follow mode's publish-to-screen delay.

Runs a real ``tkshm gui`` on its own Xvfb and presses its keys with xdotool:

* **shared memory**: another process has published the image; press Ctrl+D.
* **file**: press Ctrl+O, type the PNG's path into the Tk file dialog, then time from pressing
  Return (the key that loads it) to the picture on screen.
* **follow**: another process writes a new image; time from the end of its write to the
  picture on screen (follow mode on).

"On screen" is when the window reports its first (draft) picture drawn: it prints the line
after ``update_idletasks()`` has redrawn the label. Two figures per run: *outside*, measured
here from just before starting ``xdotool key`` to reading that line (an upper bound: it
includes starting xdotool and the pipe), and *inside*, measured by the window from the key
event to the redraw.

    python scripts/measure_display.py [--size 3840x2160] [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from photo import make_photo
from screenshot import Lines, start_xvfb

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEADLINE = 60.0
WRITER = """
import sys, time
from PIL import Image
from tkshm import ipc
image = Image.open(sys.argv[2]).convert("RGBA")
segment = ipc.publish(image, key=sys.argv[1])
print(time.time_ns(), flush=True)
for line in sys.stdin:
    if line.strip() == "write":
        segment.write_image(image)
        print(time.time_ns(), flush=True)
segment.detach()
"""


def inside_ms(line: str) -> float:
    return float(line.rsplit("ms=", 1)[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="3840x2160")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    server, display = start_xvfb(1280, 800)
    env = {**os.environ, "DISPLAY": display, "TKSHM_TEST_EVENTS": "1"}
    key = f"measure-{os.getpid()}"
    results: dict[str, dict[str, list[float]]] = {}

    def xdotool(*cmd: str) -> str:
        return subprocess.run(["xdotool", *cmd], env=env, capture_output=True, text=True, check=True).stdout

    def record(name: str, outside_ns: int, line: str) -> None:
        entry = results.setdefault(name, {"outside": [], "inside": []})
        entry["outside"].append(outside_ns / 1e6)
        entry["inside"].append(inside_ms(line))

    with tempfile.TemporaryDirectory() as folder:
        png = os.path.join(folder, "photo.png")
        make_photo(width, height, seed=5).save(png)
        window = subprocess.Popen(
            [sys.executable, "-m", "tkshm", "gui", "--key", key, "--lang", "en", "--geometry", "640x640+0+0"],
            stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT,
        )  # fmt: skip
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, key, png], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        app, written = Lines(window), Lines(writer)
        try:
            app.wait_for("READY")
            written.wait_for("")
            xdotool("mousemove", "320", "300")  # keys go to the window under the pointer (no WM)
            for _ in range(args.runs):
                started = time.time_ns()
                xdotool("key", "--delay", "0", "ctrl+d")
                # The first picture on screen: a draft for a big image, the image itself for
                # one that fits the window as it is.
                arrived, line = app.wait_for("SHOWN source=shm gen=1 quality=")
                record("display from shared memory", arrived - started, line)
                if "quality=draft" in line:
                    app.wait_for("SHOWN source=shm gen=1 quality=fine")
            for _ in range(args.runs):
                xdotool("key", "ctrl+o")
                app.wait_for("LABEL Select an image file")
                dialog = xdotool("search", "--sync", "--onlyvisible", "--name", "^Open Image$").split()[0]
                xdotool("windowfocus", "--sync", dialog)
                xdotool("type", "--delay", "2", png)
                started = time.time_ns()
                xdotool("key", "--delay", "0", "Return")
                arrived, line = app.wait_for("SHOWN source=file")
                record("load from PNG file", arrived - started, line)
                app.wait_for("GEOM image")
                xdotool("mousemove", "320", "301", "mousemove", "320", "300")
            xdotool("key", "F5")
            app.wait_for("SHOWN source=shm")
            app.wait_for("GEOM image")
            assert writer.stdin is not None
            for _ in range(args.runs):
                writer.stdin.write("write\n")
                writer.stdin.flush()
                done, _ = written.wait_for("")
                arrived, line = app.wait_for("SHOWN source=shm")
                results.setdefault("follow: publish to screen", {"outside": [], "inside": []})[
                    "outside"
                ].append((arrived - done) / 1e6)
                app.wait_for("GEOM image")
            xdotool("key", "ctrl+q")
            window.wait(timeout=DEADLINE)
        finally:
            for proc in (window, writer):
                if proc.stdin is not None:
                    proc.stdin.close()
                try:
                    proc.wait(timeout=DEADLINE)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            server.terminate()
            server.wait()
    print(f"{width}x{height} RGBA, {args.runs} runs each; medians (min..max), milliseconds")
    for name, figures in results.items():
        for kind, values in figures.items():
            if values:
                print(
                    f"  {name:<28} {kind:<7} {statistics.median(values):8.1f}"
                    f"   ({min(values):.1f}..{max(values):.1f})"
                )
    shm = statistics.median(results["display from shared memory"]["outside"])
    fil = statistics.median(results["load from PNG file"]["outside"])
    print(f"  load from file / display from shared memory: {fil / shm:.1f}x")
    print(json.dumps({k: {kk: statistics.median(v) for kk, v in f.items() if v} for k, f in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
