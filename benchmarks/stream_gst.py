"""GStreamer's shared-memory pair for the stream benchmark: ``shmsink`` in a writer process,
``shmsrc`` in each reader, driven from Python through GObject introspection.

Run by ``stream.py`` under an interpreter that has GStreamer's bindings (``python3-gi``,
``gir1.2-gstreamer-1.0``: the system's Python when the venv has none; ``benchmarks/setup.sh``
installs them), as ``stream_gst.py writer|reader JSON``; it talks to the parent in JSON lines
over stdin and stdout (see ``stream_workers.py`` for the messages).

* Writer: ``appsrc block=true max-bytes=<one frame> ! shmsink sync=false
  wait-for-connection=false``: ``push-buffer`` returns once the frame has gone on to shmsink
  (without ``block``, appsrc would queue frames without end and hide a stall). Each frame is a buffer
  allocated from shmsink's own allocator (asked for with an ALLOCATION query, as an upstream
  element would), so the stamped frame is copied (through ``Buffer.map``) straight into the shared
  area: one copy, like tkshm's ``write_image``. The area holds 4 frames (``shm-size``), as
  tkshm's ring holds 4 slots.
* Reader: ``shmsrc is-live=true ! capsfilter ! appsink max-buffers=1 drop=true sync=false``:
  the newest frame wins, older ones are dropped (and so released to the writer). The reader
  maps each buffer (no copy: it is the shared area) and copies it into its own
  ``bytearray``, a copying reader like tkshm's ``read_image(into=...)``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any

import gi

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402

from stream_frames import (  # noqa: E402
    END,
    LineChannel,
    ReaderTally,
    Usage,
    make_frame,
    paced_numbers,
    read_stamps,
    stamp,
    writer_done,
)

WAIT_NS = 100_000_000  # how long a reader waits for a frame before it checks its deadline
GRACE_S = 3.0
SLOTS = 4


def caps_text(width: int, height: int) -> str:
    return f"video/x-raw,format=RGBA,width={width},height={height},framerate=0/1"


def writer(channel: LineChannel, width: int, height: int, socket_path: str) -> None:
    nbytes = width * height * 4
    frame = make_frame(width, height)
    shm_size = SLOTS * (nbytes + 4096)
    pipeline = Gst.parse_launch(
        f"appsrc name=src is-live=true format=time block=true max-bytes={nbytes} "
        f"caps={caps_text(width, height)} "
        f"! shmsink name=sink socket-path={socket_path} shm-size={shm_size} "
        "wait-for-connection=false sync=false"
    )
    source = pipeline.get_by_name("src")
    if pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
        raise RuntimeError("the shmsink pipeline would not start")
    query = Gst.Query.new_allocation(Gst.Caps.from_string(caps_text(width, height)), True)
    allocator: Any = None
    params: Any = None
    if source.get_static_pad("src").peer_query(query) and query.get_n_allocation_params():
        allocator, params = query.parse_nth_allocation_param(0)
    try:
        channel.send({"ready": True, "allocator": allocator.get_name() if allocator else "system"})
        go = channel.recv()
        assert go is not None
        end_at, rate = float(go["end_at"]), float(go["rate"])
        usage = Usage()
        times: list[int] = []
        errors: list[str] = []

        def push(number: int) -> bool:
            stamp(frame, width, height, number)
            buffer = Gst.Buffer.new_allocate(allocator, nbytes, params)
            # map + a memoryview copy: Buffer.fill() converts a bytearray byte by byte
            ok, info = buffer.map(Gst.MapFlags.WRITE)
            if not ok:
                errors.append("could not map a buffer for writing")
                return False
            try:
                info.data[:nbytes] = frame
            finally:
                buffer.unmap(info)
            result = source.emit("push-buffer", buffer)
            if result != Gst.FlowReturn.OK:
                errors.append(f"push-buffer: {result.value_nick}")
                return False
            return True

        for number in paced_numbers(end_at, rate):
            if not push(number):
                break
            times.append(time.perf_counter_ns())
        report = usage.report()
        push(END)
        channel.send(writer_done(times, report, errors, shm_size))
        channel.recv(60)  # the parent's "quit"
    finally:
        pipeline.set_state(Gst.State.NULL)


def reader(channel: LineChannel, width: int, height: int, socket_path: str) -> None:
    nbytes = width * height * 4
    pipeline = Gst.parse_launch(
        f"shmsrc socket-path={socket_path} is-live=true ! {caps_text(width, height)} "
        "! appsink name=sink max-buffers=1 drop=true sync=false emit-signals=false"
    )
    sink = pipeline.get_by_name("sink")
    if pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
        raise RuntimeError("the shmsrc pipeline would not start")
    target = bytearray(nbytes)
    tally = ReaderTally()
    try:
        channel.send({"ready": True})
        go = channel.recv()
        assert go is not None
        deadline = float(go["end_at"]) + GRACE_S
        usage = Usage()
        while not tally.saw_end and time.perf_counter() < deadline:
            sample = sink.emit("try-pull-sample", WAIT_NS)
            if sample is None:
                if sink.get_property("eos"):
                    break
                continue
            buffer = sample.get_buffer()
            ok, info = buffer.map(Gst.MapFlags.READ)
            if not ok:
                continue
            try:
                target[:] = info.data[:nbytes]
            finally:
                buffer.unmap(info)
            got = time.perf_counter_ns()
            del buffer, sample
            tally.frame(read_stamps(target, width, height), got)
        channel.send({"done": True, "tally": tally.as_dict(), "usage": usage.report()})
    finally:
        pipeline.set_state(Gst.State.NULL)


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent cleans up on Ctrl+C
    role, options = sys.argv[1], json.loads(sys.argv[2])
    Gst.init(None)
    channel = LineChannel(sys.stdin, sys.stdout)
    run = writer if role == "writer" else reader
    run(channel, int(options["width"]), int(options["height"]), str(options["socket"]))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("GST_DEBUG", "0")
    sys.exit(main())
