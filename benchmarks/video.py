"""A video file to NumPy readers in other processes: what ``tkshm play`` costs against PyAV
decoding the file alone, and against what a script would otherwise use.

In one run, on an H.264 file it makes itself (1080p30, 10 s, moving content):

* **floor**: PyAV decodes the file to RGBA (``to_ndarray(format="rgba")``, the threading of
  ``tkshm/video.py``) as fast as it goes, in a child process, and does nothing else;
* **tkshm**: ``python -m tkshm play --once --key K FILE``, with N readers each following the key
  (``wait_for_change``, then ``with segment.array() as a:``);
* **cv2 + shared_memory**: ``cv2.VideoCapture`` decodes (BGR), ``cv2.cvtColor`` makes RGBA, the
  writer paces itself on a deadline schedule and copies each frame into a
  ``multiprocessing.shared_memory`` block with a small header, and wakes each reader through a
  pipe of its own; the readers view the block through NumPy;
* **GStreamer**: ``filesrc ! qtdemux ! h264parse ! avdec_h264 ! videoconvert ! RGBA ! identity
  sync=true ! shmsink``, with N ``shmsrc ! appsink`` readers.

For each writer: its CPU seconds (the whole process, from ``os.wait4``) and their ratio to the
floor's, its rate, its drift from the file's clock; for the readers: frames seen and missed,
latency from publish to the reader having the frame, CPU per frame.

    python benchmarks/video.py [--seconds 10] [--readers 4] [--size 1920x1080]

Plain script, never part of the tests: it prints, it does not judge. ``benchmarks/README.md``
explains the rows.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from fractions import Fraction
from multiprocessing import shared_memory
from typing import Any, Final

import av
import cv2
import numpy as np
from tkshm import ipc

from stream_frames import LineChannel, percentile
from video_workers import MARK_BITS, SHM_HEADER, mark_bits, mark_block

HERE: Final = os.path.dirname(os.path.abspath(__file__))
GST_PACKAGES: Final = (
    "gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good "
    "gstreamer1.0-plugins-bad gstreamer1.0-libav python3-gi gir1.2-gstreamer-1.0"
)
GST_ELEMENTS: Final = ("qtdemux", "h264parse", "avdec_h264", "videoconvert", "identity", "shmsink", "shmsrc")
STARTUP_S: Final = 60.0  # the longest a child may take to report ready
SETTLE_S: Final = 0.5  # after the writer ends, before the readers are told to stop
TARGET_RATIO: Final = 1.2  # the writer's CPU against the floor's, for tkshm


# -- the video ------------------------------------------------------------------------------
def make_video(path: str, width: int, height: int, fps: int, frames: int) -> None:
    """An H.264 file (libx264, yuv420p, MP4) whose every frame differs: a moving colour gradient,
    grain that changes each frame, moving shapes, and the frame's number as the mark."""
    rng = np.random.default_rng(7)
    margin = 64
    grain = rng.integers(0, 32, (height + margin, width + margin, 3), np.uint8)
    xs = np.arange(width, dtype=np.int32) * 256 // width
    ys = np.arange(height, dtype=np.int32) * 256 // height
    diagonal = (xs[None, :] + ys[:, None]).astype(np.uint8)
    radius = max(8, height // 10)
    yy, xx = np.mgrid[-radius:radius, -radius:radius]
    disc = xx * xx + yy * yy < radius * radius
    side = mark_block(width)
    rgb = np.empty((height, width, 3), np.uint8)
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": "23", "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for number in range(frames):
            rgb[:, :, 0] = ((xs + 3 * number) % 256).astype(np.uint8)[None, :]
            rgb[:, :, 1] = ((ys + 2 * number) % 256).astype(np.uint8)[:, None]
            rgb[:, :, 2] = diagonal - np.uint8(5 * number % 256)
            dx, dy = rng.integers(0, margin, 2)
            rgb ^= grain[dy : dy + height, dx : dx + width]
            for index, colour in enumerate(((230, 40, 40), (40, 230, 90), (250, 250, 250))):
                w, h = width // (6 + index), height // (5 + index)
                x = (number * (7 + 5 * index) + index * width // 3) % max(1, width - w)
                y = (number * (3 + 2 * index) + index * height // 4) % max(1, height - h)
                rgb[y : y + h, x : x + w] = colour
            cx = (width // 2 + int((width // 3) * np.sin(number / 20))) - radius
            cy = (height // 2 + int((height // 3) * np.cos(number / 15))) - radius
            rgb[cy : cy + 2 * radius, cx : cx + 2 * radius][disc] = (40, 60, 240)
            rgb[side // 2 : 2 * side + side // 2, side // 2 : (2 * MARK_BITS + 1) * side + side // 2] = 0
            for index, white in enumerate(mark_bits(number)):
                x = side * (index + 1)
                rgb[side : 2 * side, x : x + side] = 255 if white else 0
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = number, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


# -- the children ---------------------------------------------------------------------------
class Child:
    """A child process we started, in a process group of its own (Ctrl+C reaches only us),
    speaking JSON lines; ``reap`` waits for it with ``os.wait4`` and keeps its CPU time."""

    def __init__(self, name: str, command: list[str], keep_fds: tuple[int, ...] = (), **popen: Any) -> None:
        self.name = name
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            pass_fds=keep_fds,
            process_group=0,
            **popen,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.channel = LineChannel(self.process.stdout, self.process.stdin)
        self.cpu_s: float | None = None
        self.wall_s: float | None = None
        self.output = ""

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            self.channel.send(message)

    def expect(self, key: str, timeout: float) -> dict[str, Any]:
        message = self.channel.recv(timeout)
        if message is None or key not in message:
            raise RuntimeError(f"{self.name} (pid {self.pid}) sent no {key!r} within {timeout:.0f} s")
        return message

    def reap(self, timeout: float) -> None:
        """Wait for the child to exit (kill it after ``timeout``); keep its CPU and wall time."""
        if self.cpu_s is not None:
            return
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                self.kill()
                pid, status, usage = os.wait4(self.pid, 0)
                break
            time.sleep(0.01)
        self.wall_s = time.perf_counter() - self.started
        self.cpu_s = usage.ru_utime + usage.ru_stime
        self.process.returncode = os.waitstatus_to_exitcode(status)
        with contextlib.suppress(OSError, ValueError):
            assert self.process.stdout is not None
            self.output = self.process.stdout.read()
        for stream in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                assert stream is not None
                stream.close()

    def kill(self) -> None:
        if self.cpu_s is None:
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)


def worker(name: str, python: str, role: str, options: dict[str, Any], **popen: Any) -> Child:
    return Child(name, [python, os.path.join(HERE, "video_workers.py"), role, json.dumps(options)], **popen)


# -- what each method gives -----------------------------------------------------------------
@dataclass
class Result:
    """One method's figures: the writer (``published``: file frame number -> publish time, ns)
    and what each reader saw."""

    name: str
    cpu_s: float = float("nan")
    wall_s: float = float("nan")  # the floor: its decoding loop; a writer: its process
    frames: int = 0  # frames the writer published
    published: dict[int, int] = field(default_factory=dict)
    readers: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""
    error: str = ""

    def rate(self) -> float:
        times = sorted(self.published.values())
        if len(times) < 2:
            return float("nan")
        return (len(times) - 1) / ((times[-1] - times[0]) / 1e9)

    def drift_ms(self, fps: float) -> tuple[float, float, float]:
        """(max |drift|, median drift, drift at the last frame), ms: the publish time of frame n
        minus that of frame 0 plus n/fps, over the frames whose publish time is known."""
        if 0 not in self.published:
            return float("nan"), float("nan"), float("nan")
        zero = self.published[0]
        drifts = {n: (t - zero) / 1e6 - n * 1000 / fps for n, t in self.published.items()}
        last = max(drifts)
        return max(abs(d) for d in drifts.values()), percentile(list(drifts.values()), 0.5), drifts[last]

    def seen(self) -> list[int]:
        return [len({f[0] for f in r["frames"]}) for r in self.readers]

    def latencies_ms(self) -> list[float]:
        """Reader has the frame minus its publish time, every reader's frames pooled."""
        result = []
        for report in self.readers:
            for number, written, opened, _ in report["frames"]:
                written = written or self.published.get(number, 0)
                if written:
                    result.append((opened - written) / 1e6)
        return result

    def reader_cpu_ms(self) -> float:
        per_frame = [r["cpu_s"] * 1000 / len(r["frames"]) for r in self.readers if r["frames"]]
        return sum(per_frame) / len(per_frame) if per_frame else float("nan")


# -- the runs -------------------------------------------------------------------------------
class Run:
    """Everything one run starts and makes, so that it can all be stopped and removed."""

    def __init__(self, work: str, python: str, args: argparse.Namespace) -> None:
        self.work = work
        self.python = python
        self.args = args
        self.children: list[Child] = []
        self.blocks: list[shared_memory.SharedMemory] = []
        self.keys: list[str] = []
        self.fds: list[int] = []

    def start(
        self, name: str, role: str, options: dict[str, Any], python: str | None = None, **popen: Any
    ) -> Child:
        child = worker(name, python or self.python, role, options, **popen)
        self.children.append(child)
        return child

    def stop_readers(self, readers: list[Child]) -> list[dict[str, Any]]:
        time.sleep(SETTLE_S)
        for reader in readers:
            reader.send({"stop": True})
        reports = [reader.expect("done", 30) for reader in readers]
        for reader in readers:
            reader.reap(10)
        return reports

    def close(self) -> list[str]:
        """Kill what still runs, reap it, remove every block, segment and shmsink area; say
        what, if anything, could not be removed."""
        for child in self.children:
            child.kill()
        for child in self.children:
            with contextlib.suppress(ChildProcessError):
                child.reap(5)
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        left = []
        for block in self.blocks:
            block.close()
            with contextlib.suppress(FileNotFoundError):
                block.unlink()
        for key in self.keys:
            for path in ipc.remains(key):
                with contextlib.suppress(OSError):
                    os.unlink(path)
                if os.path.exists(path):
                    left.append(path)
        with contextlib.suppress(OSError):
            for name in os.listdir("/dev/shm"):  # shmsink's areas: shmpipe.<pid>.<n>
                if any(name.startswith(f"shmpipe.{child.pid:5d}.") for child in self.children):
                    os.unlink(os.path.join("/dev/shm", name))
        return left


def run_floor(run: Run, file: str) -> Result:
    result = Result("floor: PyAV decode to RGBA alone")
    child = run.start("floor", "floor", {"file": file, "width": run.args.size[0]})
    done = child.expect("done", 600)
    child.reap(30)
    result.cpu_s, result.wall_s, result.frames = child.cpu_s or 0.0, done["decode_wall_s"], done["frames"]
    result.note = (
        f"{done['frames']} frames ({done['marks_read']} marks read) in {done['decode_wall_s']:.2f} s "
        f"({done['frames'] / done['decode_wall_s']:.0f} fps), decode loop {done['decode_cpu_s']:.2f} CPU s, "
        f"import av {done['import_cpu_s']:.2f} CPU s, process {result.cpu_s:.2f} CPU s"
    )
    return result


def run_tkshm(run: Run, file: str) -> Result:
    width, height = run.args.size
    result = Result("tkshm play + array() readers")
    key = f"video-bench-{os.getpid()}"
    run.keys.append(key)
    options = {"key": key, "width": width, "height": height}
    readers = [run.start(f"tkshm reader {i}", "tkshm-reader", options) for i in range(run.args.readers)]
    for reader in readers:
        reader.expect("ready", STARTUP_S)
    play = Child("tkshm play", [run.python, "-m", "tkshm", "play", "--once", "--key", key, file])
    run.children.append(play)
    play.reap(run.args.seconds * 3 + 60)
    assert play.process.stdout is not None
    result.cpu_s, result.wall_s = play.cpu_s or 0.0, play.wall_s or 0.0
    result.readers = run.stop_readers(readers)
    return _tkshm_figures(result, play, key)


def _tkshm_figures(result: Result, play: Child, key: str) -> Result:
    result.error = "" if play.process.returncode == 0 else f"tkshm play exited with {play.process.returncode}"
    for report in result.readers:
        for number, written, _, _ in report["frames"]:
            result.published.setdefault(number, written)
    generations = [f[3] for r in result.readers for f in r["frames"]]
    result.frames = max(generations) - min(generations) + 1 if generations else 0
    return result


def run_cv2(run: Run, file: str) -> Result:
    width, height = run.args.size
    result = Result("cv2.VideoCapture + shared_memory")
    block = shared_memory.SharedMemory(create=True, size=SHM_HEADER.size + width * height * 4)
    run.blocks.append(block)
    pipes = [os.pipe() for _ in range(run.args.readers)]
    run.fds.extend(fd for pair in pipes for fd in pair)
    options: dict[str, Any] = {"name": block.name, "width": width, "height": height, "fps": run.args.fps}
    readers = [
        run.start(f"shm reader {i}", "shm-reader", {**options, "fd": read}, keep_fds=(read,))
        for i, (read, _) in enumerate(pipes)
    ]
    for reader in readers:
        reader.expect("ready", STARTUP_S)
    writes = tuple(write for _, write in pipes)
    writer = run.start("cv2 writer", "cv2-writer", {**options, "file": file, "fds": writes}, keep_fds=writes)
    for fd in run.fds:  # the children hold their ends; ours would hide a writer's exit
        os.close(fd)
    run.fds.clear()
    ready = writer.expect("ready", STARTUP_S)
    writer.send({"go": True})
    done = writer.expect("done", run.args.seconds * 3 + 60)
    writer.reap(30)
    result.cpu_s, result.wall_s = writer.cpu_s or 0.0, writer.wall_s or 0.0
    result.published = dict(enumerate(done["published_ns"]))
    result.frames = len(done["published_ns"])
    result.readers = run.stop_readers(readers)
    result.note = f"cv2 backend {ready['backend']}; wake-ups: a pipe per reader"
    return result


def run_gst(run: Run, file: str, python: str) -> Result:
    width, height = run.args.size
    result = Result("GStreamer shmsink/shmsrc")
    socket = os.path.join(run.work, "gst.sock")
    options = {
        "file": file,
        "socket": socket,
        "width": width,
        "height": height,
        "fps": run.args.fps,
        "readers": run.args.readers,
        "shm_size": 8 * (width * height * 4 + 4096),
    }
    writer = run.start("gst writer", "gst-writer", options, python=python)
    ready = writer.expect("ready", STARTUP_S)
    readers = [
        run.start(f"gst reader {i}", "gst-reader", options, python=python) for i in range(run.args.readers)
    ]
    for reader in readers:
        reader.expect("ready", STARTUP_S)
    writer.send({"go": True})
    done = writer.expect("done", run.args.seconds * 3 + 60)
    result.readers = run.stop_readers(readers)
    writer.send({"quit": True})
    writer.reap(30)
    result.cpu_s, result.wall_s = writer.cpu_s or 0.0, writer.wall_s or 0.0
    result.published = {int(n): int(t) for n, t in done["published"]}
    result.frames = len(result.published)
    result.error = done["error"]
    result.note = (
        f"{done['connected']} readers connected; start-up (Python, gi, Gst.init) "
        f"{ready['startup_cpu_s']:.2f} CPU s; shm-size {options['shm_size'] / 1e6:.0f} MB"
    )
    return result


# -- GStreamer: is it there? ----------------------------------------------------------------
def gst_python() -> tuple[str | None, str]:
    """An interpreter that can drive GStreamer (this one, or the system's), or None and why."""
    if not shutil.which("gst-inspect-1.0"):
        return None, "gst-inspect-1.0 not found"
    missing = [
        e for e in GST_ELEMENTS if subprocess.run(["gst-inspect-1.0", e], capture_output=True).returncode
    ]
    if missing:
        return None, f"no GStreamer element {', '.join(missing)}"
    probe = "import gi; gi.require_version('Gst', '1.0'); from gi.repository import Gst; Gst.init(None)"
    for python in dict.fromkeys([sys.executable, "/usr/bin/python3"]):
        if (
            os.path.exists(python)
            and subprocess.run([python, "-c", probe], capture_output=True).returncode == 0
        ):
            return python, ""
    return None, "no Python with GStreamer's bindings (gi)"


def gst_version() -> str:
    if not shutil.which("gst-launch-1.0"):
        return "absent"
    found = subprocess.run(["gst-launch-1.0", "--version"], capture_output=True, text=True)
    lines = found.stdout.splitlines()
    return lines[1].split()[-1] if found.returncode == 0 and len(lines) > 1 else "absent"


def machine() -> str:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    os_name = platform.platform()
    with contextlib.suppress(OSError), open("/etc/os-release", encoding="utf-8") as release:
        found = re.search(r'^PRETTY_NAME="?([^"\n]*)', release.read(), re.MULTILINE)
        if found:
            os_name = f"{found.group(1)} ({platform.release()})"
    return (
        f"{time.strftime('%Y-%m-%d %H:%M')}, {os_name}, {os.cpu_count()} cores, {model}, "
        f"Python {platform.python_version()}, PyAV {av.__version__} (FFmpeg "
        f"{'.'.join(map(str, av.library_versions['libavcodec']))} libavcodec), OpenCV {cv2.__version__}, "
        f"NumPy {np.__version__}, GStreamer {gst_version()}"
    )


# -- the report -----------------------------------------------------------------------------
def _f(value: float, digits: int = 1) -> str:
    return "-" if value != value else f"{value:.{digits}f}"


def line(result: Result, floor: Result, fps: float, frames: int) -> str:
    if result.error and not result.readers:
        return f"{result.name}: {result.error}"
    drift, middle, last = result.drift_ms(fps)
    seen = result.seen()
    latencies = result.latencies_ms()
    missed = [result.frames - s for s in seen]
    text = (
        f"{result.name}: CPU {result.cpu_s:.2f} s = {result.cpu_s / floor.cpu_s:.2f}x the floor; "
        f"{result.frames}/{frames} frames published at {_f(result.rate(), 2)} fps; "
        f"drift max {_f(drift)} ms, median {_f(middle)} ms, last {_f(last)} ms; "
        f"readers saw {seen} (missed {missed}); "
        f"latency p50 {_f(percentile(latencies, 0.5), 2)} ms, p99 {_f(percentile(latencies, 0.99), 2)} ms; "
        f"reader CPU {_f(result.reader_cpu_ms(), 3)} ms/frame"
    )
    unreadable = sum(r["unreadable"] for r in result.readers)
    torn = sum(r["torn"] for r in result.readers)
    extras = [result.note] if result.note else []
    extras += [f"{unreadable} marks unreadable"] if unreadable else []
    extras += [f"{torn} torn"] if torn else []
    extras += [f"error: {result.error}"] if result.error else []
    return text + (f" [{'; '.join(extras)}]" if extras else "")


def table(results: list[Result], floor: Result, fps: float) -> str:
    rows = [
        "| method | CPU s | x floor | fps | drift max / median / last ms | seen/published (min reader) "
        "| p50 ms | p99 ms | reader CPU ms/frame |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {floor.name} | {floor.cpu_s:.2f} | 1.00 | ({floor.frames / floor.wall_s:.0f} unpaced) "
        "| | | | | |",
    ]
    for result in results:
        drift, middle, last = result.drift_ms(fps)
        latencies = result.latencies_ms()
        seen = result.seen()
        rows.append(
            f"| {result.name} | {result.cpu_s:.2f} | {result.cpu_s / floor.cpu_s:.2f} "
            f"| {_f(result.rate(), 2)} "
            f"| {_f(drift)} / {_f(middle)} / {_f(last)} | {min(seen) if seen else '-'}/{result.frames} "
            f"| {_f(percentile(latencies, 0.5), 2)} | {_f(percentile(latencies, 0.99), 2)} "
            f"| {_f(result.reader_cpu_ms(), 3)} |"
        )
    return "\n".join(rows)


def _sized(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(width), int(height)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the video (default 10)")
    parser.add_argument("--readers", type=int, default=4, help="reader processes per method (default 4)")
    parser.add_argument("--size", type=_sized, default=(1920, 1080), help="WIDTHxHEIGHT (default 1920x1080)")
    parser.add_argument("--fps", type=int, default=30, help="the video's frame rate (default 30)")
    parser.add_argument(
        "--methods", type=lambda text: text.split(","), default=["tkshm", "cv2", "gst"],
        help="from tkshm,cv2,gst (default: all; the floor always runs)",
    )  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    width, height = args.size
    frames = round(args.seconds * args.fps)
    print(machine())
    gst, why = gst_python()
    if gst is None:
        print(f"note: GStreamer row skipped ({why}); apt-get install {GST_PACKAGES}")
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    work = tempfile.mkdtemp(prefix="tkshm-video-", dir=base)
    previous = os.environ.get("TKSHM_DIR")
    os.environ["TKSHM_DIR"] = os.path.join(work, "tkshm")  # this run's segments, for every child
    # Every child imports the tkshm this process imported (a checkout's, or the installed one).
    tkshm_root = os.path.dirname(os.path.dirname(os.path.abspath(ipc.__file__)))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [tkshm_root, os.environ.get("PYTHONPATH")]))
    run = Run(work, sys.executable, args)
    try:
        file = os.path.join(work, "video.mp4")
        started = time.perf_counter()
        make_video(file, width, height, args.fps, frames)
        print(
            f"video: {width}x{height} H.264 (libx264 veryfast, crf 23, yuv420p), {frames} frames at "
            f"{args.fps} fps, {os.path.getsize(file) / 1e6:.1f} MB "
            f"({os.path.getsize(file) * 8 / args.seconds / 1e6:.0f} Mbit/s), made in "
            f"{time.perf_counter() - started:.1f} s; {args.readers} readers per method",
            flush=True,
        )
        floor = run_floor(run, file)
        print(f"{floor.name}: {floor.note}", flush=True)
        results = []
        for method in ("tkshm", "cv2"):
            if method in args.methods:
                result = run_tkshm(run, file) if method == "tkshm" else run_cv2(run, file)
                results.append(result)
                print(line(result, floor, args.fps, frames), flush=True)
        if gst is not None and "gst" in args.methods:
            result = run_gst(run, file, gst)
            results.append(result)
            print(line(result, floor, args.fps, frames), flush=True)
        print()
        print(table(results, floor, args.fps))
        print(
            "\nCPU s: the writer's whole process (os.wait4); fps: (frames - 1) / (last publish - first); "
            "drift: publish time of frame n - (that of frame 0 + n/fps); p50/p99: reader has the frame - "
            "publish time, every reader's frames pooled; reader CPU: per frame seen, mean of the readers"
        )
    finally:
        # A second Ctrl+C (or a SIGTERM sent to the process and to its group, as timeout(1)
        # does) must not cut the cleaning short: it takes a few seconds at most.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        left = run.close()
        if previous is None:
            os.environ.pop("TKSHM_DIR", None)
        else:
            os.environ["TKSHM_DIR"] = previous
        shutil.rmtree(work, ignore_errors=True)
        left += [work] if os.path.exists(work) else []
        print(f"left behind: {', '.join(left) if left else 'nothing'}", flush=True)
    return 0


def _terminate(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up as Ctrl+C does


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: every process of this run was stopped", file=sys.stderr)
        sys.exit(130)
