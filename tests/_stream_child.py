"""One process of the stream soak (tests/test_stream_soak.py): a writer or a reader.

``writer KEY END``: publish pattern frames with no pause until the monotonic time END.
``reader KEY END``: wait for each new frame, copy it into one kept image, check it is whole.
Each prints a JSON line of its figures every 0.2 s and at the end, so that a process killed
at any moment has already reported most of what it did.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from patterns import pattern, seed_of
from PIL import Image

from tkshm import ipc

SIZE = (96, 64)
REPORT_EVERY = 0.2


def report(**figures: object) -> None:
    sys.stdout.write(json.dumps(figures) + "\n")
    sys.stdout.flush()


def writer(key: str, end: float) -> None:
    frames = [pattern(*SIZE, seed) for seed in range(1, 9)]
    segment = ipc.Segment.create(key, SIZE[0] * SIZE[1] * 4)
    count, longest, next_report = 0, 0.0, time.monotonic()
    while time.monotonic() < end:
        started = time.perf_counter()
        segment.write_image(frames[count % len(frames)])
        longest = max(longest, time.perf_counter() - started)
        count += 1  # (no pause: a writer that never pauses keeps no reader out)
        if time.monotonic() >= next_report:
            report(frames=count, longest_publish_ms=longest * 1000)
            next_report += REPORT_EVERY
    report(frames=count, longest_publish_ms=longest * 1000, done=True)
    segment.detach()


def reader(key: str, end: float) -> None:
    segment = ipc.Segment.attach(key)
    image = Image.new("RGBA", SIZE)
    reads = torn = first_try = 0
    errors: Counter[str] = Counter()
    generation, longest_gap = 0, 0.0
    last_new = next_report = time.monotonic()
    while time.monotonic() < end:
        newer = segment.wait_for_change(generation, timeout=0.5)
        now = time.monotonic()
        if newer <= generation:
            continue
        try:
            segment.read_image(into=image)
        except ipc.TkshmError as exc:
            errors[type(exc).__name__] += 1
            generation = newer
            continue
        assert segment.last_frame is not None and segment.last_stats is not None
        generation = segment.last_frame.generation
        reads += 1
        first_try += segment.last_stats.attempts == 1
        try:
            seed_of(image)
        except AssertionError:
            torn += 1
        longest_gap = max(longest_gap, now - last_new)
        last_new = now
        if now >= next_report:
            report(
                reads=reads, torn=torn, first_try=first_try, errors=errors, longest_gap_ms=longest_gap * 1000
            )
            next_report += REPORT_EVERY
    report(
        reads=reads,
        torn=torn,
        first_try=first_try,
        errors=errors,
        longest_gap_ms=longest_gap * 1000,
        done=True,
    )
    segment.detach()


if __name__ == "__main__":
    role, key, end = sys.argv[1], sys.argv[2], float(sys.argv[3])
    (writer if role == "writer" else reader)(key, end)
