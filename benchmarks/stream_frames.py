"""What every process of the stream benchmark shares: the frame stamp, the writer's pace and
last report, a reader's tally, the process's own CPU and memory figures, and the JSON-lines
channel to the parent.

Standard library only: the GStreamer children (``stream_gst.py``) import this under the
system's Python, which has GStreamer's bindings but not Pillow or tkshm.

The stamp is 32 bytes, written at the start of three rows of every frame (the first, the
middle one and the last) just before the writer publishes it::

    b"TKSF" | frame number (u64) | time.time_ns() (u64) | time.perf_counter_ns() (u64) | 4 zero bytes

A reader whose copy (or view) holds the same stamp in all three rows has a whole frame; any
difference means the frame was torn: part of it came from another publish. Frame 0 is the
writer's last word ("the run is over"), never counted.
"""

from __future__ import annotations

import json
import resource
import select
import statistics
import struct
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import IO, Any, Final

STAMP: Final = struct.Struct("<4sQQQ4x")
MAGIC: Final = b"TKSF"
END: Final = 0  # the frame number of the writer's closing frame


def stamp_rows(height: int) -> tuple[int, int, int]:
    return 0, height // 2, height - 1


def make_frame(width: int, height: int) -> bytearray:
    """Raw RGBA pixels: a cheap gradient, so no two rows are alike (the copies do not care)."""
    row = bytes((x * 255 // max(1, width - 1)) & 0xFF for x in range(width)) * 4
    frame = bytearray(width * height * 4)
    stride = width * 4
    for y in range(0, height, max(1, height // 64)):
        frame[y * stride : (y + 1) * stride] = row[:stride]
    return frame


def stamp(frame: bytearray | memoryview, width: int, height: int, number: int) -> None:
    """Stamp ``frame`` (raw RGBA bytes) with ``number`` and the time, in its three rows."""
    raw = STAMP.pack(MAGIC, number, time.time_ns(), time.perf_counter_ns())
    stride = width * 4
    for y in stamp_rows(height):
        frame[y * stride : y * stride + STAMP.size] = raw


def read_stamps(pixels: Any, width: int, height: int) -> list[bytes]:
    """The three stamps of a raw RGBA buffer (bytes, bytearray, memoryview or mmap)."""
    stride = width * 4
    return [bytes(pixels[y * stride : y * stride + STAMP.size]) for y in stamp_rows(height)]


def whole(stamps: list[bytes]) -> tuple[int, int] | None:
    """(frame number, perf_counter_ns at the publish) if every stamp agrees, else None."""
    first = stamps[0]
    if any(other != first for other in stamps[1:]):
        return None
    magic, number, _wall, perf = STAMP.unpack(first)
    if magic != MAGIC:
        return None
    return int(number), int(perf)


def paced_numbers(end_at: float, rate: float) -> Iterator[int]:
    """The writer's frame numbers, 1, 2, ..., until ``end_at`` (a ``perf_counter`` time): as
    fast as the writer takes them when ``rate`` is 0, else at ``rate`` frames a second."""
    number = 0
    due = time.perf_counter()
    while True:
        now = time.perf_counter()
        if now >= end_at:
            return
        if rate:
            # Pacing the frames (not waiting for another process); after a stall the
            # schedule starts again from now instead of catching up in a burst.
            due = max(due + 1 / rate, now) if number else now
            if due > now:
                time.sleep(due - now)
        number += 1
        yield number


def writer_done(
    times_ns: list[int], usage: dict[str, float], errors: list[str], shm_bytes: int
) -> dict[str, Any]:
    """A writer's last report: when each frame went out, its CPU and memory, its first errors
    and their count, and the shared memory it allocated."""
    return {
        "done": True,
        "times_ns": times_ns,
        "usage": usage,
        "errors": errors[:5],
        "error_count": len(errors),
        "shm_bytes": shm_bytes,
    }


@dataclass
class ReaderTally:
    """What one reader saw: whole frames, torn ones, the frames it never saw, latencies."""

    received: int = 0
    torn: int = 0
    skipped: int = 0
    repeated: int = 0
    last: int = 0
    latencies_ns: list[int] = field(default_factory=list)
    saw_end: bool = False

    def frame(self, stamps: list[bytes], got_ns: int) -> bool:
        """Count one frame read whole at ``got_ns``; return True if it was the end frame."""
        found = whole(stamps)
        if found is None:
            self.torn += 1
            return False
        number, published = found
        if number == END:
            self.saw_end = True
            return True
        if number <= self.last:
            self.repeated += 1
            return False
        if self.last:
            self.skipped += number - self.last - 1
        self.last = number
        self.received += 1
        self.latencies_ns.append(got_ns - published)
        return False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Usage:
    """This process's CPU time (all its threads) from ``start()`` on, and its peak memory."""

    def __init__(self) -> None:
        self.started = resource.getrusage(resource.RUSAGE_SELF)
        self.wall = time.perf_counter()

    def start(self) -> None:
        self.started = resource.getrusage(resource.RUSAGE_SELF)
        self.wall = time.perf_counter()

    def report(self) -> dict[str, float]:
        now = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "user_s": now.ru_utime - self.started.ru_utime,
            "sys_s": now.ru_stime - self.started.ru_stime,
            "wall_s": time.perf_counter() - self.wall,
            "minflt": float(now.ru_minflt - self.started.ru_minflt),
            "hwm_mb": vm_hwm_mb(),
        }


def vm_hwm_mb() -> float:
    """Peak resident set of this process (``VmHWM``), in MB; 0 where /proc has none."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    return 0.0


def percentile(values: list[int] | list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return float(values[0])
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


class LineChannel:
    """JSON messages, one a line, over a pair of file objects (a child's stdin and stdout)."""

    def __init__(self, incoming: IO[str], outgoing: IO[str]) -> None:
        self.incoming = incoming
        self.outgoing = outgoing

    def send(self, message: dict[str, Any]) -> None:
        self.outgoing.write(json.dumps(message) + "\n")
        self.outgoing.flush()

    def recv(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next message, or None if none came within ``timeout`` seconds (or at EOF)."""
        if timeout is not None:
            ready, _, _ = select.select([self.incoming], [], [], max(0.0, timeout))
            if not ready:
                return None
        line = self.incoming.readline()
        if not line:
            return None
        result: dict[str, Any] = json.loads(line)
        return result
