"""Make assets/edges.png: a video and its edges, two windows following two streams.

The README's OpenCV pipeline, for real: a generated clip (a camera panning across the
generated lake photo, H.264 through PyAV) played under ``camera``, ``examples/edges.py``
turning it into ``edges``, and two ``tkshm gui --follow`` windows, one per key, on an Xvfb
screen of 1024x768 with openbox for title bars. The shot is taken once both windows have
shown frames of their stream for two seconds, and cropped to the windows. Needs xvfb, openbox, PyAV and OpenCV
(``pip install '.[video,opencv]'``).

    python scripts/edges_screenshot.py [--output assets/edges.png]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

import av
import numpy as np
from demo_screenshot import start_openbox, stop_display
from photo import make_photo
from PIL import ImageGrab
from screenshot import ROOT, Lines, start_xvfb, xdotool

SCREEN = (1024, 768)
CLIP = (640, 360)
WINDOW = (500, 420)


def make_clip(path: str, seconds: float = 6.0, fps: int = 30) -> None:
    """A camera panning across the lake photo and back, as H.264 at ``fps``."""
    width, height = CLIP
    photo = np.asarray(make_photo(2 * width, height, seed=7).convert("RGB"))
    count = int(seconds * fps)
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(count):
            left = round(width * (1 - abs(1 - 2 * index / count)))  # there and back
            frame = av.VideoFrame.from_ndarray(
                np.ascontiguousarray(photo[:, left : left + width]), format="rgb24"
            )
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def window(key: str, x: int, env: dict[str, str]) -> Lines:
    width, height = WINDOW
    command = [sys.executable, "-m", "tkshm", "gui", "--key", key, "--follow", "--lang", "en"]
    command += ["--geometry", f"{width}x{height}+{x}+40"]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, env={**env, "TKSHM_TEST_EVENTS": "1"}, cwd=ROOT
    )
    return Lines(proc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=os.path.join(ROOT, "assets", "edges.png"))
    args = parser.parse_args()
    server, display = start_xvfb(*SCREEN)
    env = {**os.environ, "DISPLAY": display}
    manager = start_openbox(env)
    started: list[subprocess.Popen[str]] = []
    try:
        with tempfile.TemporaryDirectory() as folder:
            clip = os.path.join(folder, "clip.mp4")
            make_clip(clip)
            tkshm = [sys.executable, "-m", "tkshm"]
            started.append(
                subprocess.Popen(
                    [*tkshm, "play", "--key", "camera", clip], stdout=subprocess.PIPE, text=True, cwd=ROOT
                )
            )
            Lines(started[-1]).wait_for("Playing")
            stage = [sys.executable, os.path.join(ROOT, "examples", "edges.py")]
            started.append(subprocess.Popen(stage, cwd=ROOT, text=True))
            windows = [window("camera", 8, env), window("edges", SCREEN[0] - WINDOW[0] - 8, env)]
            started += [w.proc for w in windows]
            for shown in windows:
                shown.wait_for("READY")
                shown.wait_for("SHOWN")  # a frame of its stream is on screen
            xdotool(env, "mousemove", str(SCREEN[0] - 1), str(SCREEN[1] - 1))  # no hover highlight
            time.sleep(2.0)  # the status lines' frames/s cover the last second: let it settle
            shot = ImageGrab.grab(xdisplay=display).crop((0, 32, SCREEN[0], 40 + WINDOW[1] + 28))
            shot.save(args.output, optimize=True)
            print(f"wrote {args.output} ({shot.width}x{shot.height})")
    finally:
        for proc in reversed(started):  # windows first, then the stage, then the player
            proc.send_signal(signal.SIGINT)  # as Ctrl+C would: each detaches
            proc.wait()
        stop_display(manager, server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
