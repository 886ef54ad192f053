"""The processes of the stream benchmark that run under the benchmark's own Python: one writer
and N readers per method (tkshm with copies, tkshm ``view()``, ``multiprocessing.shared_memory``
with a queue per reader, a pipe per reader). ``stream_gst.py`` holds GStreamer's.

Each child speaks to the parent over a ``multiprocessing`` connection::

    child -> {"ready": ...}        set up (segment created or attached), not yet running
    parent -> {"go": end_at, "rate": fps or 0, "stop_self_at": ...}
    child -> {"done": ...}         its tally, CPU time and peak memory
    parent -> {"quit": True}       (writers only) tear down and exit
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing import shared_memory
from multiprocessing.connection import Connection
from typing import Any, Final

from PIL import Image
from tkshm import ipc
from tkshm.errors import TkshmError

from stream_frames import (
    END,
    STAMP,
    ReaderTally,
    Usage,
    make_frame,
    paced_numbers,
    read_stamps,
    stamp,
    stamp_rows,
    writer_done,
)

WAIT_S: Final = 0.1  # how long a reader waits for a frame before it checks its deadline
GRACE_S: Final = 3.0  # how long after the run's end a reader keeps waiting for the end frame
READER_BLOCKS: Final = 24  # Pillow's block cache (16 MB each), as in the one-shot benchmark


# -- the one place that speaks tkshm's live-frames API ------------------------------------
class TkshmFrames:
    """What the tkshm readers call: ``wait_for_change`` (woken by the segment's datagram
    socket, no polling), ``read_image(into=...)`` (fills the reader's own image in place) and
    ``view()`` (no copy)."""

    @staticmethod
    def describe() -> str:
        return "tkshm live-frames API (wait_for_change, read_image(into=), view())"

    @staticmethod
    def wait(segment: ipc.Segment, after: int, timeout: float) -> int:
        return segment.wait_for_change(after, timeout=timeout)

    @staticmethod
    def read_into(segment: ipc.Segment, target: Image.Image) -> Image.Image:
        return segment.read_image(into=target)

    @staticmethod
    @contextmanager
    def view(segment: ipc.Segment) -> Iterator[Image.Image]:
        with segment.view() as image:
            yield image


def _image_stamps(image: Image.Image) -> list[bytes]:
    pixels = STAMP.size // 4
    return [image.crop((0, y, pixels, y + 1)).tobytes() for y in stamp_rows(image.height)]


# -- writers ------------------------------------------------------------------------------
class Publisher:
    """Publishes the stamped frame once; ``extra()`` reports what it allocated."""

    def publish(self) -> None:
        raise NotImplementedError

    def shm_bytes(self) -> int:
        return 0

    def close(self) -> None:
        pass


class TkshmPublisher(Publisher):
    def __init__(self, key: str, frame: bytearray, width: int, height: int) -> None:
        self.segment = ipc.Segment.create(key, len(frame))
        # An image over the frame's own bytes: stamping the frame stamps the image.
        self.image = Image.frombuffer("RGBA", (width, height), frame, "raw", "RGBA", 0, 1)

    def publish(self) -> None:
        self.segment.write_image(self.image)

    def shm_bytes(self) -> int:
        return int(os.stat(self.segment.path).st_blocks * 512)

    def close(self) -> None:
        self.segment.close()


class SharedMemoryPublisher(Publisher):
    def __init__(self, name: str, frame: bytearray, queues: list[Any]) -> None:
        self.block = shared_memory.SharedMemory(name, create=True, size=len(frame))
        self.frame = frame
        self.queues = queues

    def publish(self) -> None:
        buffer = self.block.buf
        assert buffer is not None
        buffer[: len(self.frame)] = self.frame
        for notify in self.queues:
            notify.put(True)

    def shm_bytes(self) -> int:
        return self.block.size

    def close(self) -> None:
        for notify in self.queues:
            notify.cancel_join_thread()
        self.block.close()
        self.block.unlink()


class PipePublisher(Publisher):
    def __init__(self, frame: bytearray, connections: list[Connection]) -> None:
        self.frame = frame
        self.connections = connections

    def publish(self) -> None:
        for connection in self.connections:
            connection.send_bytes(self.frame)

    def close(self) -> None:
        for connection in self.connections:
            connection.close()


def writer_main(control: Connection, method: str, width: int, height: int, where: dict[str, Any]) -> None:
    """Publish stamped frames as fast as possible, or at ``rate`` fps, until ``end_at``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent cleans up on Ctrl+C
    frame = make_frame(width, height)
    publisher: Publisher
    if method in ("tkshm", "view"):
        publisher = TkshmPublisher(where["key"], frame, width, height)
    elif method == "shm":
        publisher = SharedMemoryPublisher(where["name"], frame, where["queues"])
    elif method == "pipe":
        publisher = PipePublisher(frame, where["connections"])
    else:
        raise ValueError(method)
    try:
        control.send({"ready": True, "api": TkshmFrames.describe()})
        go = control.recv()
        end_at, rate = float(go["end_at"]), float(go["rate"])
        usage = Usage()
        times: list[int] = []
        errors: list[str] = []
        for number in paced_numbers(end_at, rate):
            stamp(frame, width, height, number)
            try:
                publisher.publish()
            except (TkshmError, OSError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                if isinstance(exc, BrokenPipeError | ConnectionError):
                    break
                continue
            times.append(time.perf_counter_ns())
        report = usage.report()
        stamp(frame, width, height, END)
        with contextlib.suppress(TkshmError, OSError):
            publisher.publish()
        control.send(writer_done(times, report, errors, publisher.shm_bytes()))
        control.poll(60)  # the parent's "quit", once every reader is done
    finally:
        publisher.close()


# -- readers ------------------------------------------------------------------------------
def reader_main(
    control: Connection, method: str, width: int, height: int, where: dict[str, Any], index: int
) -> None:
    """Read every frame it can until the end frame (or the deadline); tally what it saw."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    Image.core.set_blocks_max(READER_BLOCKS)  # type: ignore[attr-defined]
    tally = ReaderTally()
    nbytes = width * height * 4
    connection: Connection | None = None
    block: shared_memory.SharedMemory | None = None
    segment: ipc.Segment | None = None
    if method in ("tkshm", "view"):
        segment = ipc.Segment.attach(where["key"])
    elif method == "shm":
        # Attaching registers the block with the resource tracker too; every child of this run
        # shares the parent's tracker, and the writer's unlink() unregisters it for all.
        block = shared_memory.SharedMemory(where["name"])
    elif method == "pipe":
        connection = where["connections"][index]
    else:
        raise ValueError(method)
    target_image = Image.new("RGBA", (width, height))
    target = bytearray(nbytes)
    notify = where["queues"][index] if method == "shm" else None
    try:
        control.send({"ready": True})
        go = control.recv()
        deadline = float(go["end_at"]) + GRACE_S
        usage = Usage()
        generation = segment.peek_generation() if segment is not None else 0
        while not tally.saw_end and time.perf_counter() < deadline:
            if segment is not None:
                newer = TkshmFrames.wait(segment, generation, WAIT_S)
                if newer <= generation:
                    continue
                if method == "view":
                    with TkshmFrames.view(segment) as image:
                        stamps = _image_stamps(image)
                        got = time.perf_counter_ns()
                        # the view must not change under us: read the top stamp once more
                        stamps.append(_image_stamps(image)[0])
                        generation = _generation_of(segment, newer)
                else:
                    image = TkshmFrames.read_into(segment, target_image)
                    got = time.perf_counter_ns()
                    stamps = _image_stamps(image)
                    generation = _generation_of(segment, newer)
                    del image
            elif block is not None and notify is not None:
                try:
                    notify.get(timeout=WAIT_S)
                except queue.Empty:
                    continue
                with contextlib.suppress(queue.Empty):
                    while True:  # skip to the newest notice: the block holds one frame
                        notify.get_nowait()
                shared = block.buf
                assert shared is not None
                target[:] = shared[:nbytes]
                got = time.perf_counter_ns()
                stamps = read_stamps(target, width, height)
            else:
                assert connection is not None
                if not connection.poll(WAIT_S):
                    continue
                try:
                    connection.recv_bytes_into(target)
                except EOFError:
                    break
                got = time.perf_counter_ns()
                stamps = read_stamps(target, width, height)
            tally.frame(stamps, got)
        control.send({"done": True, "tally": tally.as_dict(), "usage": usage.report()})
    finally:
        if segment is not None:
            segment.close()
        if block is not None:
            block.close()


def _generation_of(segment: ipc.Segment, fallback: int) -> int:
    """The generation of the frame just read (``last_frame``, set by every read and view)."""
    info = segment.last_frame
    return info.generation if info is not None else fallback
