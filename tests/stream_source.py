"""A stand-in publisher of a stream, for the window's tests: pattern frames at a frame rate.

``python tests/stream_source.py KEY WIDTH HEIGHT FPS [FIRST_SEED]`` publishes
``patterns.pattern(WIDTH, HEIGHT, seed)`` with seeds counting up from FIRST_SEED (default 1),
FPS times a second, through one ``ipc.Segment``; it prints ``PUBLISHING <pid>`` after the first
frame and runs until SIGTERM or Ctrl+C (then detaches) or SIGKILL (then does not).
"""

from __future__ import annotations

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from patterns import pattern

from tkshm import ipc


def main() -> int:
    key, width, height, fps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    seed = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    stop = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.append(True))
    frames = [pattern(width, height, s & 0xFFFF) for s in range(seed, seed + 64)]
    period = 1 / fps
    with ipc.Segment.create(key, width * height * 4) as segment:
        due = time.monotonic()
        count = 0
        while not stop:
            segment.write_image(frames[count % len(frames)])
            if count == 0:
                print(f"PUBLISHING {os.getpid()}", flush=True)
            count += 1
            due += period
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # the frame rate itself, not synchronisation
            else:
                due = time.monotonic()
    return 0


if __name__ == "__main__":
    sys.exit(main())
