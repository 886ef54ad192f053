"""An OpenCV stage between two streams: the edges of every frame under one key, under another.

    tkshm play clip.mp4 --key camera          # a video in   (pip install 'tkshm[video]')
    python examples/edges.py                  # this stage   (pip install 'tkshm[opencv]')
    tkshm gui --key camera --follow &         # two windows, one per stream
    tkshm gui --key edges --follow &

Each frame is read with ``array()``, the frame in shared memory itself (no copy), and the
edges are published with ``write_array``, without Pillow. Ctrl+C stops it.
"""

from __future__ import annotations

import argparse
import sys

import cv2

from tkshm import ipc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Publish the edges of a stream as another stream.")
    parser.add_argument("--source", default="camera", help="the key to read (default: camera)")
    parser.add_argument("--target", default="edges", help="the key to publish (default: edges)")
    parser.add_argument("--frames", type=int, help="stop after this many frames (default: Ctrl+C)")
    args = parser.parse_args(argv)
    try:
        with ipc.Segment.attach(args.source) as source, ipc.Segment.create(args.target) as target:
            done, generation = 0, 0
            while args.frames is None or done < args.frames:
                if source.wait_for_change(generation, timeout=1.0) <= generation:
                    continue  # nothing new for a second: the publisher paused, or has gone
                with source.array() as frame:  # RGBA, leased for this block only
                    gray = cv2.cvtColor(frame, cv2.COLOR_RGBA2GRAY)
                    generation = source.last_frame.generation if source.last_frame else generation
                target.write_array(cv2.Canny(gray, 100, 200))  # height x width: gray
                done += 1
    except ipc.TkshmError as error:
        print(f"edges.py: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
