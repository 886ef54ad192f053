"""Stream soak: a writer that never pauses, readers that wait for each frame, and SIGKILLs.

For ``--stream-frames`` frames (default 100,000; ``TKSHM_STREAM_FRAMES``) or at most
``TKSHM_STREAM_SECONDS`` (default 90; 30 on Windows, where a new Python starts slowly), one
writer publishes small pattern frames as fast as it can and three readers copy every frame
they are woken for into a kept image and check it (tests/_stream_child.py). Every few hundred
milliseconds a random one of them is killed (SIGKILL, or TerminateProcess on Windows) and a
new one started in its place: a new writer takes over with no cleanup by hand. After each
kill the newest frame is read, whole: a writer killed at any moment leaves a complete one.
Torn frames must be 0; the figures -- frames, frames read, torn, reads that took their lock at the first
try, the longest gap between two new frames for a reader and the longest publish -- are
printed in pytest's terminal summary. Speed is for the benchmarks: nothing here is timed
against a threshold.
"""

from __future__ import annotations

import json
import os
import queue
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from typing import Any

import pytest
from conftest import files_for
from patterns import seed_of

from tkshm import ipc

HERE = os.path.dirname(os.path.abspath(__file__))
READERS = 3
# A writer is killed only once it has reported, after its first frame: from then on a kill at
# any moment -- mid-copy, or in the microsecond it rewrites the header -- leaves the last
# complete frame and a header that names it (tkshm.ring, tkshm.header), so no read fails.


class Child:
    def __init__(self, role: str, key: str, end: float) -> None:
        self.role = role
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "_stream_child.py"), role, key, repr(end)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.last: dict[str, Any] = {}
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.last = json.loads(line)
        self.lines.put("")

    def finish(self, deadline: float) -> None:
        try:
            self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            self.proc.kill()
        self.proc.wait()


def stream_frames(config: pytest.Config) -> int:
    option = config.getoption("--stream-frames", default=None)
    return int(option or os.environ.get("TKSHM_STREAM_FRAMES") or 100_000)


def test_stream_soak_writers_and_readers_killed_at_random_never_a_torn_frame(
    key: str, request: pytest.FixtureRequest, record_property: Any
) -> None:
    wanted = stream_frames(request.config)
    cap = float(os.environ.get("TKSHM_STREAM_SECONDS") or (30 if sys.platform == "win32" else 90))
    rng = random.Random(12)
    totals: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    longest = {"gap": 0.0, "publish": 0.0}
    kills = 0

    def retire(child: Child) -> None:
        figures = child.last
        for name in ("frames", "reads", "torn", "first_try"):
            totals[name] += int(figures.get(name, 0))
        errors.update(figures.get("errors", {}))
        longest["gap"] = max(longest["gap"], figures.get("longest_gap_ms", 0.0))
        longest["publish"] = max(longest["publish"], figures.get("longest_publish_ms", 0.0))

    started = time.monotonic()
    end = started + cap
    # The holder keeps the segment alive across every kill (and, on Windows, every mapping a
    # writer grows it into: tkshm._holders). It never takes the lock but to check a frame.
    with ipc.Segment.create(key, 96 * 64 * 4) as holder:
        children = [Child("writer", key, end)] + [Child("reader", key, end) for _ in range(READERS)]
        try:
            while time.monotonic() < end and holder.peek_generation() < wanted:
                threading.Event().wait(rng.uniform(0.1, 0.6))  # a random moment, not a sync point
                # Only a child that has started working (it has reported): a new Python
                # takes longer to start than this on a busy machine, and longest under Wine.
                working = [i for i, c in enumerate(children) if c.last]
                if not working:
                    continue
                victim = rng.choice(working)
                child = children[victim]
                child.proc.kill()
                child.finish(time.monotonic() + 30)
                retire(child)
                kills += 1
                if holder.peek_generation() > 0:  # (a writer killed before its first frame left none)
                    seed_of(holder.read_image(timeout=5.0))  # whole, whoever was killed
                children[victim] = Child(child.role, key, end)
        finally:
            for child in children:
                child.proc.kill()
                child.finish(time.monotonic() + 30)
                retire(child)
        frames = holder.peek_generation()
    seconds = time.monotonic() - started
    figures = (
        f"stream: seconds {seconds:.1f}, frames {frames}, kills {kills}, reads {totals['reads']}, "
        f"torn {totals['torn']}, first_try {totals['first_try'] / max(1, totals['reads']):.4f}, "
        f"longest_reader_gap_ms {longest['gap']:.1f}, longest_publish_ms {longest['publish']:.1f}, "
        f"errors {dict(errors)}"
    )
    record_property("tkshm_soak", figures)
    assert totals["torn"] == 0, figures
    assert not errors, figures
    # It really streamed (under Wine a restarted writer takes a second or two to start).
    assert frames >= min(wanted, 100 if sys.platform == "win32" else 1000), figures
    assert totals["reads"] > 0, figures
    assert files_for(key) == []
