"""The child processes of the video benchmark (``video.py``), one role each, started as
``python video_workers.py ROLE JSON``; each speaks to the parent in JSON lines over its stdin
and stdout (``stream_frames.LineChannel``)::

    child -> {"ready": ...}     set up (attached, connected, prerolled), not yet running
    parent -> {"go": ...}       (writers of their own) start publishing
    parent -> {"stop": True}    (readers) the writer has finished: report and exit
    child -> {"done": ...}      what it recorded, and its CPU time

Roles: ``floor`` (PyAV decodes the file to RGBA, nothing else), ``tkshm-reader`` (follows
``tkshm play``), ``cv2-writer`` and ``shm-reader`` (``cv2.VideoCapture`` into a
``multiprocessing.shared_memory`` block, a pipe per reader for the wake-ups), ``gst-writer``
and ``gst-reader`` (``shmsink`` and ``shmsrc``, through GObject introspection).

Every frame of the benchmark's video carries its own number in its pixels, the *mark*: a row
of 32 black or white squares, the 16 bits of the number and then their complement. A reader
reads 32 pixels of a frame, which is all it touches, and knows which frame of the file it is
(a frame it cannot read counts as ``unreadable``). Only the standard library is imported at the
top: the GStreamer roles run under the system's Python, which has ``gi`` but not NumPy.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from stream_frames import LineChannel

MARK_BITS: Final = 16
WAIT_S: Final = 0.1  # how long a reader waits for a frame before it looks for "stop"
# The cv2 row's block: a header of generation, write time and 48 spare bytes, then the pixels.
SHM_HEADER: Final = struct.Struct("<QQ48x")


# -- the mark: which frame of the file this is ----------------------------------------------
def mark_block(width: int) -> int:
    """The side of one square of the mark, in pixels (32 at 1920 wide)."""
    return max(4, width // 60)


def mark_centres(width: int) -> list[tuple[int, int]]:
    """(x, y) of the centre of each of the mark's 32 squares, on the row below the top margin."""
    side = mark_block(width)
    return [(side * (index + 1) + side // 2, side + side // 2) for index in range(2 * MARK_BITS)]


def mark_bits(number: int) -> list[bool]:
    """The squares' colours (True: white) for frame ``number``: its bits, then their complement."""
    bits = [bool(number >> bit & 1) for bit in range(MARK_BITS)]
    return bits + [not bit for bit in bits]


def read_mark(flat: Any, width: int, offsets: list[int] | None = None) -> int:
    """The frame number in an RGBA frame's pixels (``flat`` indexes its bytes), or -1 if the
    mark does not read (the complement disagrees)."""
    if offsets is None:
        offsets = mark_offsets(width)
    bits = [int(flat[offset]) > 127 for offset in offsets]
    number = 0
    for bit in range(MARK_BITS):
        if bits[bit] == bits[bit + MARK_BITS]:
            return -1
        number |= bits[bit] << bit
    return number


def mark_offsets(width: int) -> list[int]:
    """Byte offsets, in an RGBA frame ``width`` pixels wide, of the red channel at each centre."""
    return [(y * width + x) * 4 for x, y in mark_centres(width)]


# -- what every child does ------------------------------------------------------------------
def cpu_s() -> float:
    """CPU seconds this process has used so far, every thread, user and system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def stop_asked(channel: LineChannel) -> bool:
    """Whether the parent has said "stop" (or gone): a look at stdin that never waits."""
    ready, _, _ = select.select([channel.incoming], [], [], 0)
    if not ready:
        return False
    message = channel.recv()
    return message is None or bool(message.get("stop"))


class Seen:
    """What a reader recorded: for each frame, its mark, the publish time the writer gave it
    (0 if the method gives none), when the reader had it, and its generation."""

    def __init__(self) -> None:
        self.frames: list[tuple[int, int, int, int]] = []
        self.unreadable = 0
        self.torn = 0
        self.cpu_started = 0.0
        self.cpu_s = 0.0

    def start(self) -> None:
        self.cpu_started = cpu_s()

    def add(self, number: int, written_ns: int, opened_ns: int, generation: int) -> None:
        if number < 0:
            self.unreadable += 1
        else:
            self.frames.append((number, written_ns, opened_ns, generation))
        # CPU up to the last frame: the wait for "stop" after it is no per-frame work
        self.cpu_s = cpu_s() - self.cpu_started

    def done(self) -> dict[str, Any]:
        return {
            "done": True,
            "frames": self.frames,
            "unreadable": self.unreadable,
            "torn": self.torn,
            "cpu_s": self.cpu_s,
        }


# -- the floor: PyAV alone ------------------------------------------------------------------
def floor(channel: LineChannel, options: dict[str, Any]) -> None:
    """Decode every frame to RGBA as ``tkshm/video.py`` does (frame and slice threads), as fast
    as it goes, and touch nothing else."""
    imported = cpu_s()
    import av

    import_s = cpu_s() - imported
    started_cpu, started = cpu_s(), time.perf_counter()
    frames, numbers = 0, 0
    offsets = mark_offsets(int(options["width"]))
    with av.open(options["file"]) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_type = "AUTO"
        for frame in container.decode(stream):
            pixels = frame.to_ndarray(format="rgba")
            numbers += read_mark(pixels.reshape(-1), frame.width, offsets) == frames
            frames += 1
    channel.send(
        {
            "done": True,
            "frames": frames,
            "marks_read": numbers,
            "import_cpu_s": import_s,
            "decode_cpu_s": cpu_s() - started_cpu,
            "decode_wall_s": time.perf_counter() - started,
        }
    )


# -- tkshm: readers of `tkshm play` ----------------------------------------------------------
def tkshm_reader(channel: LineChannel, options: dict[str, Any]) -> None:
    """Follow the key: ``wait_for_change``, then ``with segment.array() as a:`` and read the mark
    and one pixel through the view; no copy."""
    import numpy  # noqa: F401  (a NumPy reader has it loaded; array() would import it at frame 0)
    from tkshm import ipc

    width, height = int(options["width"]), int(options["height"])
    # Create or join: the reader is there before the publisher, so it sees the first frame.
    segment = ipc.Segment.create(options["key"], width * height * 4)
    offsets = mark_offsets(width)
    seen = Seen()
    try:
        channel.send({"ready": True})
        seen.start()
        generation = segment.peek_generation()
        while True:
            newer = segment.wait_for_change(generation, WAIT_S)
            if newer <= generation:
                if stop_asked(channel):
                    break
                continue
            with segment.array() as pixels:
                opened = time.time_ns()
                frame = segment.last_frame
                assert frame is not None
                number = read_mark(pixels.reshape(-1), pixels.shape[1], offsets)
                int(pixels[0, 0, 0])
            generation = frame.generation
            seen.add(number, frame.write_time_ns, opened, generation)
        channel.send(seen.done())
    finally:
        segment.close()


# -- cv2.VideoCapture + multiprocessing.shared_memory --------------------------------------
def _attach_block(name: str) -> Any:
    """Attach to the parent's block. Python 3.11's attach registers it with this process's own
    resource tracker, which would unlink it at exit: only the parent that created it may."""
    from multiprocessing import resource_tracker, shared_memory

    block = shared_memory.SharedMemory(name)
    resource_tracker.unregister(block._name, "shared_memory")  # type: ignore[attr-defined]
    return block


def cv2_writer(channel: LineChannel, options: dict[str, Any]) -> None:
    """Decode with ``cv2.VideoCapture`` (BGR), ``cvtColor`` to RGBA into a buffer of its own,
    wait for the frame's deadline (``time.monotonic``: frame n at start + n/fps, a late frame
    goes at once and the schedule stays), copy it into the block, write the header (generation,
    write time), and write one byte down each reader's pipe (non-blocking: a reader that lags
    never stalls the writer; its pipe just holds a few wake-ups)."""
    import cv2
    import numpy as np

    width, height, fps = int(options["width"]), int(options["height"]), float(options["fps"])
    block = _attach_block(options["name"])
    pipes = [int(fd) for fd in options["fds"]]
    for fd in pipes:
        os.set_blocking(fd, False)
    capture = cv2.VideoCapture(options["file"])
    try:
        if not capture.isOpened():
            raise RuntimeError(f"cv2.VideoCapture cannot open {options['file']}")
        pixels = np.ndarray((height, width, 4), np.uint8, block.buf, SHM_HEADER.size)
        rgba = np.empty((height, width, 4), np.uint8)
        channel.send({"ready": True, "backend": capture.getBackendName()})
        channel.recv()  # go
        cpu_started = cpu_s()
        published: list[int] = []
        start = 0.0
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            cv2.cvtColor(bgr, cv2.COLOR_BGR2RGBA, dst=rgba)
            if published:
                due = start + len(published) / fps
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            np.copyto(pixels, rgba)
            written = time.time_ns()
            SHM_HEADER.pack_into(block.buf, 0, len(published) + 1, written)
            if not published:
                start = time.monotonic()
            published.append(written)
            for fd in pipes:
                with contextlib.suppress(BlockingIOError):
                    os.write(fd, b"\x01")
        channel.send({"done": True, "published_ns": published, "cpu_s": cpu_s() - cpu_started})
        del pixels
    finally:
        capture.release()
        for fd in pipes:
            os.close(fd)
        block.close()


def shm_reader(channel: LineChannel, options: dict[str, Any]) -> None:
    """Wait on its pipe, take every wake-up waiting, read the header, view the pixels (NumPy over
    the block, no copy) and read the mark; read the header again: a changed generation means
    the writer rewrote the frame meanwhile (counted ``torn``)."""
    import numpy as np

    width, height = int(options["width"]), int(options["height"])
    block = _attach_block(options["name"])
    fd = int(options["fd"])
    offsets = mark_offsets(width)
    seen = Seen()
    try:
        pixels = np.ndarray((height * width * 4,), np.uint8, block.buf, SHM_HEADER.size)
        channel.send({"ready": True})
        seen.start()
        last = 0
        while True:
            ready, _, _ = select.select([fd], [], [], WAIT_S)
            if not ready:
                if stop_asked(channel):
                    break
                continue
            if not os.read(fd, 4096):
                break  # the writer is gone
            generation, written = SHM_HEADER.unpack_from(block.buf, 0)
            if generation == last:
                continue
            opened = time.time_ns()
            number = read_mark(pixels, width, offsets)
            int(pixels[0])
            if SHM_HEADER.unpack_from(block.buf, 0)[0] != generation:
                seen.torn += 1
            last = generation
            seen.add(number, written, opened, generation)
        channel.send(seen.done())
        del pixels
    finally:
        os.close(fd)
        block.close()


# -- GStreamer: shmsink and shmsrc ---------------------------------------------------------
def _gst() -> Any:
    import gi

    gi.require_version("Gst", "1.0")
    from gi.repository import Gst

    Gst.init(None)
    return Gst


def gst_writer(channel: LineChannel, options: dict[str, Any]) -> None:
    """``filesrc ! qtdemux ! h264parse ! avdec_h264 ! videoconvert ! RGBA ! identity sync=true !
    shmsink``: ``identity`` holds each frame until its presentation time on the pipeline clock,
    and a probe on its source pad notes ``time.time_ns()`` as the frame leaves for shmsink (the
    publish time) and sees the end of the stream go by. Prerolled before "ready"; "go" waits for
    every reader to be connected, then plays. The probe is the one thing added to the pipeline,
    and costs a Python call a frame."""
    Gst = _gst()
    startup = cpu_s()
    readers, fps = int(options["readers"]), float(options["fps"])
    pipeline = Gst.parse_launch(
        f"filesrc location={options['file']} ! qtdemux ! h264parse ! avdec_h264 ! videoconvert "
        "! video/x-raw,format=RGBA ! identity name=pace sync=true "
        f"! shmsink name=sink socket-path={options['socket']} shm-size={int(options['shm_size'])} "
        "wait-for-connection=true sync=false"
    )
    published: dict[int, int] = {}
    first_pts: list[int] = []
    connected: list[int] = []
    ended = threading.Event()

    def probe(_pad: Any, info: Any) -> Any:
        buffer = info.get_buffer() if info.type & Gst.PadProbeType.BUFFER else None
        if buffer is not None and buffer.pts != Gst.CLOCK_TIME_NONE:
            # Frames leave in presentation order; the first one's PTS need not be 0 (B-frames)
            first_pts[:] = first_pts or [buffer.pts]
            published.setdefault(round((buffer.pts - first_pts[0]) * fps / Gst.SECOND), time.time_ns())
        elif info.type & Gst.PadProbeType.EVENT_DOWNSTREAM and info.get_event().type == Gst.EventType.EOS:
            ended.set()
        return Gst.PadProbeReturn.OK

    kinds = Gst.PadProbeType.BUFFER | Gst.PadProbeType.EVENT_DOWNSTREAM
    pipeline.get_by_name("pace").get_static_pad("src").add_probe(kinds, probe)
    pipeline.get_by_name("sink").connect("client-connected", lambda _sink, fd: connected.append(fd))
    try:
        pipeline.set_state(Gst.State.PAUSED)
        changed, _, _ = pipeline.get_state(30 * Gst.SECOND)
        # NO_PREROLL: shmsink (a network-like sink) does not hold a first frame in PAUSED
        if changed not in (Gst.StateChangeReturn.SUCCESS, Gst.StateChangeReturn.NO_PREROLL):
            raise RuntimeError(f"the shmsink pipeline did not preroll ({changed.value_nick})")
        channel.send({"ready": True, "startup_cpu_s": startup})
        channel.recv()  # go
        deadline = time.monotonic() + 30
        while len(connected) < readers and time.monotonic() < deadline:
            time.sleep(0.01)
        cpu_started = cpu_s()
        pipeline.set_state(Gst.State.PLAYING)
        bus = pipeline.get_bus()
        error = ""
        # The end of the stream as it leaves identity: shmsink's own EOS waits for its readers
        # to let go of every buffer, and they are told to stop only after this report.
        while not ended.is_set() and not error:
            message = bus.timed_pop_filtered(WAIT_S * Gst.SECOND, Gst.MessageType.ERROR)
            if message is not None:
                error = str(message.parse_error()[0].message)
        channel.send(
            {
                "done": True,
                "published": sorted(published.items()),
                "connected": len(connected),
                "error": error,
                "cpu_s": cpu_s() - cpu_started,
            }
        )
        channel.recv()  # quit, once the readers are done
    finally:
        pipeline.set_state(Gst.State.NULL)


def gst_reader(channel: LineChannel, options: dict[str, Any]) -> None:
    """``shmsrc is-live=true ! RGBA caps ! appsink max-buffers=1 drop=true sync=false``: pull each
    sample, note ``time.time_ns()``, map the buffer (the shared area itself) and read the mark.
    ``enable-last-sample=false``: a sink keeps the last buffer otherwise, and shmsink waits at the
    end of the stream until every buffer it gave out is released."""
    Gst = _gst()
    width, height, fps = int(options["width"]), int(options["height"]), options["fps"]
    pipeline = Gst.parse_launch(
        f"shmsrc socket-path={options['socket']} is-live=true "
        f"! video/x-raw,format=RGBA,width={width},height={height},framerate={round(fps)}/1 "
        "! appsink name=sink max-buffers=1 drop=true sync=false emit-signals=false enable-last-sample=false"
    )
    sink = pipeline.get_by_name("sink")
    offsets = mark_offsets(width)
    seen = Seen()
    try:
        if pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            raise RuntimeError("the shmsrc pipeline would not start")
        channel.send({"ready": True})
        seen.start()
        while True:
            sample = None if sink.get_property("eos") else sink.emit("try-pull-sample", WAIT_S * Gst.SECOND)
            if sample is None:
                if stop_asked(channel):
                    break
                if sink.get_property("eos"):
                    time.sleep(WAIT_S)
                continue
            opened = time.time_ns()
            buffer = sample.get_buffer()
            ok, info = buffer.map(Gst.MapFlags.READ)
            if not ok:
                continue
            try:
                number = read_mark(info.data, width, offsets)
                int(info.data[0])
            finally:
                buffer.unmap(info)
            del buffer, sample
            seen.add(number, 0, opened, 0)
        channel.send(seen.done())
    finally:
        pipeline.set_state(Gst.State.NULL)


ROLES: Final[dict[str, Callable[[LineChannel, dict[str, Any]], None]]] = {
    "floor": floor,
    "tkshm-reader": tkshm_reader,
    "cv2-writer": cv2_writer,
    "shm-reader": shm_reader,
    "gst-writer": gst_writer,
    "gst-reader": gst_reader,
}


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent ends us and cleans up
    role, options = sys.argv[1], json.loads(sys.argv[2])
    ROLES[role](LineChannel(sys.stdin, sys.stdout), options)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("GST_DEBUG", "0")
    sys.exit(main())
