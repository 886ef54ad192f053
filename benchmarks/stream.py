"""A stream of frames from one publisher to N readers, each in its own process: frame rate,
torn frames, latency, CPU time per frame and memory, tkshm against GStreamer's shared-memory
pair, ``multiprocessing.shared_memory`` and a pipe, with a memory copy as the floor.

For every size, reader count and method, three runs: *free* (the writer publishes as fast as
it can), *paced* (at the target rate: 60 fps at 1080p, 30 fps at 4K) and *stop* (paced, with
the first reader stopped by SIGSTOP for the middle third of the run). The writer stamps each
frame with its number and the time in three rows; each reader checks that all three agree
(a torn frame does not) and measures the latency from the stamp to the end of its read.

Run ``python benchmarks/stream.py --help`` for the options; ``benchmarks/README.md`` explains
the columns. ``benchmarks/setup.sh`` installs GStreamer's part.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import multiprocessing as mp
import multiprocessing.connection
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from PIL import Image
from tkshm import ipc

from stream_frames import LineChannel, percentile

from common import MB, SIZES, parse_sizes
from stream_workers import TkshmFrames, reader_main, writer_main

HERE: Final = os.path.dirname(os.path.abspath(__file__))
TARGET_FPS: Final = {"1080p": 60.0, "4K": 30.0, "8K": 15.0}
METHODS: Final = {
    "tkshm": "tkshm Segment, copying readers",
    "view": "tkshm view() readers, no copy",
    "gst": "GStreamer shmsink/shmsrc",
    "shm": "shared_memory + Queue",
    "pipe": "multiprocessing Pipe, raw bytes",
}
MODES: Final = ("free", "paced", "stop")
STARTUP_S: Final = 60.0  # the longest a child may take to start and report ready
LEAD_S: Final = 0.3  # between "go" and the first frame: every reader is waiting by then
# Targets: a paced run "sustains" its rate if the writer keeps 98% of it and every reader
# receives at least 95% of it, whole; with a reader stopped, the writer is "not slowed" if its
# rate meanwhile is at least 95% of its rate otherwise (and 98% of the target).
KEEP_WRITER: Final = 0.98
KEEP_READER: Final = 0.95
KEEP_STOPPED: Final = 0.95


# -- the children ---------------------------------------------------------------------------
class Child:
    """One process of a run: a writer or a reader."""

    pid: int
    name: str

    def send(self, message: dict[str, Any]) -> None:
        raise NotImplementedError

    def recv(self, timeout: float) -> dict[str, Any] | None:
        raise NotImplementedError

    def waitable(self) -> Any:
        raise NotImplementedError

    def alive(self) -> bool:
        raise NotImplementedError

    def end(self) -> None:
        raise NotImplementedError

    def expect(self, key: str, timeout: float) -> dict[str, Any]:
        message = self.recv(timeout)
        if message is None or key not in message:
            raise RuntimeError(f"{self.name} (pid {self.pid}) sent no {key!r} within {timeout:.0f} s")
        return message


class PythonChild(Child):
    """A ``multiprocessing`` child (``spawn``: a fresh interpreter, as a second program)."""

    def __init__(self, name: str, target: Any, args: tuple[Any, ...]) -> None:
        context = mp.get_context("spawn")
        self.control, theirs = context.Pipe()
        self.process = context.Process(target=target, args=(theirs, *args), daemon=True)
        self.process.start()
        theirs.close()
        self.pid = int(self.process.pid or 0)
        self.name = name

    def send(self, message: dict[str, Any]) -> None:
        self.control.send(message)

    def recv(self, timeout: float) -> dict[str, Any] | None:
        try:
            if not self.control.poll(timeout):
                return None
            result: dict[str, Any] = self.control.recv()
        except (EOFError, OSError):
            return None
        return result

    def waitable(self) -> Any:
        return self.process.sentinel

    def alive(self) -> bool:
        return self.process.is_alive()

    def end(self) -> None:
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self.control.close()


class GstChild(Child):
    """A ``stream_gst.py`` process, under an interpreter that has GStreamer's bindings."""

    def __init__(self, name: str, python: str, role: str, options: dict[str, Any]) -> None:
        self.process = subprocess.Popen(
            [python, os.path.join(HERE, "stream_gst.py"), role, json.dumps(options)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.channel = LineChannel(self.process.stdout, self.process.stdin)
        self.pid = self.process.pid
        self.name = name

    def send(self, message: dict[str, Any]) -> None:
        self.channel.send(message)

    def recv(self, timeout: float) -> dict[str, Any] | None:
        return self.channel.recv(timeout)

    def waitable(self) -> Any:
        return self.process.stdout

    def alive(self) -> bool:
        return self.process.poll() is None

    def end(self) -> None:
        with contextlib.suppress(OSError):
            assert self.process.stdin is not None
            self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        # shmsink names its area /dev/shm/shmpipe.<pid>.<n> and unlinks it when it closes;
        # a writer killed before that leaves it behind.
        prefix = f"shmpipe.{self.pid:5d}."
        with contextlib.suppress(OSError):
            for name in os.listdir("/dev/shm"):
                if name.startswith(prefix):
                    os.unlink(os.path.join("/dev/shm", name))


def gst_python() -> str | None:
    """An interpreter that can drive GStreamer: this one, or the system's."""
    candidates = [sys.executable, "/usr/bin/python3"]
    probe = "import gi; gi.require_version('Gst', '1.0'); from gi.repository import Gst; Gst.init(None)"
    for python in dict.fromkeys(candidates):
        if not os.path.exists(python):
            continue
        checked = subprocess.run([python, "-c", probe], capture_output=True, timeout=60)
        if checked.returncode == 0 and shutil.which("gst-inspect-1.0"):
            found = subprocess.run(["gst-inspect-1.0", "shmsink"], capture_output=True, timeout=60)
            if found.returncode == 0:
                return python
    return None


# -- one run --------------------------------------------------------------------------------
@dataclass
class Case:
    size: str
    readers: int
    method: str
    mode: str
    rate: float
    writer: dict[str, Any] = field(default_factory=dict)
    reader_reports: list[dict[str, Any]] = field(default_factory=list)
    stop_window_ns: tuple[int, int] | None = None
    error: str | None = None

    # -- derived figures
    @property
    def run_s(self) -> float:
        return float(self.writer.get("usage", {}).get("wall_s", 0.0)) or float("nan")

    @property
    def frames(self) -> int:
        return len(self.writer.get("times_ns", []))

    @property
    def writer_fps(self) -> float:
        return self.frames / self.run_s if self.frames else 0.0

    def received(self) -> list[int]:
        return [int(r["tally"]["received"]) for r in self.reader_reports]

    @property
    def reader_fps_min(self) -> float:
        received = self.received()
        return min(received) / self.run_s if received else 0.0

    def total(self, what: str) -> int:
        return sum(int(r["tally"][what]) for r in self.reader_reports)

    def latencies_ms(self) -> list[float]:
        return [v / 1e6 for r in self.reader_reports for v in r["tally"]["latencies_ns"]]

    def latency(self, fraction: float) -> float:
        return percentile(self.latencies_ms(), fraction)

    @property
    def writer_cpu_ms(self) -> float:
        usage = self.writer.get("usage", {})
        cpu = float(usage.get("user_s", 0.0)) + float(usage.get("sys_s", 0.0))
        return cpu / self.frames * 1e3 if self.frames else float("nan")

    @property
    def reader_cpu_ms(self) -> float:
        values = []
        for report in self.reader_reports:
            got = int(report["tally"]["received"])
            if got:
                values.append((report["usage"]["user_s"] + report["usage"]["sys_s"]) / got * 1e3)
        return statistics.mean(values) if values else float("nan")

    @property
    def writer_hwm(self) -> float:
        return float(self.writer.get("usage", {}).get("hwm_mb", float("nan")))

    @property
    def reader_hwm(self) -> float:
        return max((float(r["usage"]["hwm_mb"]) for r in self.reader_reports), default=float("nan"))

    @property
    def shm_mb(self) -> float:
        return float(self.writer.get("shm_bytes", 0)) / MB

    def stop_rates(self) -> tuple[float, float, float] | None:
        """(writer fps outside the stop window, inside it, longest gap between publishes in ms)."""
        if self.stop_window_ns is None or self.frames < 2:
            return None
        times = self.writer["times_ns"]
        start, end = self.stop_window_ns
        inside = sum(1 for t in times if start <= t < end)
        outside = len(times) - inside
        window_s = (end - start) / 1e9
        outside_s = max(1e-9, self.run_s - window_s)
        gaps = [b - a for a, b in itertools.pairwise(times)]
        return outside / outside_s, inside / window_s, max(gaps) / 1e6

    def as_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "readers": self.readers,
            "method": self.method,
            "mode": self.mode,
            "rate": self.rate,
            "writer": self.writer,
            "reader_reports": self.reader_reports,
            "stop_window_ns": self.stop_window_ns,
            "error": self.error,
        }


class Run:
    """Starts the processes of one case, runs it, and always ends them and removes what they made."""

    def __init__(self, case: Case, work: str, gst: str | None, seconds: float) -> None:
        self.case = case
        self.work = work
        self.gst = gst
        self.seconds = seconds
        self.children: list[Child] = []
        self.stopped: list[int] = []
        tag = f"{os.getpid()}-{case.size}-{case.readers}-{case.method}-{case.mode}"
        self.key = f"stream-{tag}"
        self.shm_name = f"tkshm-stream-{tag}"
        self.socket = os.path.join(work, f"gst-{tag}.sock")

    def start(self) -> tuple[Child, list[Child]]:
        case = self.case
        width, height = SIZES[case.size]
        if case.method == "gst":
            assert self.gst is not None
            options = {"width": width, "height": height, "socket": self.socket}
            writer: Child = GstChild("writer", self.gst, "writer", options)
            self.children.append(writer)
            writer.expect("ready", STARTUP_S)
            readers: list[Child] = []
            for index in range(case.readers):
                child: Child = GstChild(f"reader {index}", self.gst, "reader", options)
                self.children.append(child)
                readers.append(child)
            for child in readers:
                child.expect("ready", STARTUP_S)
            return writer, readers
        context = mp.get_context("spawn")
        where: dict[str, Any] = {"key": self.key, "name": self.shm_name}
        ours: list[Any] = []
        if case.method == "shm":
            where["queues"] = [context.Queue() for _ in range(case.readers)]
        if case.method == "pipe":
            pairs = [context.Pipe(duplex=False) for _ in range(case.readers)]
            where["connections"] = [send for _, send in pairs]
            ours = [end for pair in pairs for end in pair]
        writer = PythonChild("writer", writer_main, (case.method, width, height, where))
        self.children.append(writer)
        writer.expect("ready", STARTUP_S)
        if case.method == "pipe":
            where["connections"] = [receive for receive, _ in pairs]
        readers = []
        for index in range(case.readers):
            child = PythonChild(f"reader {index}", reader_main, (case.method, width, height, where, index))
            self.children.append(child)
            readers.append(child)
        for child in readers:
            child.expect("ready", STARTUP_S)
        for end in ours:  # the children hold their ends; ours would hide a reader's exit
            end.close()
        return writer, readers

    def go(self) -> None:
        case = self.case
        writer, readers = self.start()
        started = time.perf_counter()
        end_at = started + LEAD_S + self.seconds
        rate = 0.0 if case.mode == "free" else case.rate
        for child in readers:
            child.send({"go": True, "end_at": end_at, "rate": rate})
        writer.send({"go": True, "end_at": end_at, "rate": rate})
        if case.mode == "stop":
            first = started + LEAD_S
            self._until(first + self.seconds / 3)
            stop_ns = time.perf_counter_ns()
            os.kill(readers[0].pid, signal.SIGSTOP)
            self.stopped.append(readers[0].pid)
            self._until(first + 2 * self.seconds / 3)
            os.kill(readers[0].pid, signal.SIGCONT)
            self.stopped.remove(readers[0].pid)
            case.stop_window_ns = (stop_ns, time.perf_counter_ns())
        case.writer = writer.expect("done", self.seconds + LEAD_S + 60)
        for child in readers:
            case.reader_reports.append(child.expect("done", 30))
        writer.send({"quit": True})

    def _until(self, moment: float) -> None:
        """Wait until ``moment`` (perf_counter), or until a child ends early."""
        while (left := moment - time.perf_counter()) > 0:
            ready = mp.connection.wait([c.waitable() for c in self.children], timeout=left)
            if ready:
                dead = [c.name for c in self.children if not c.alive()]
                if dead:
                    raise RuntimeError(f"{', '.join(dead)} ended early")
                return

    def close(self, clean: bool) -> None:
        """End every child: politely after a clean run, at once otherwise (an error, Ctrl+C)."""
        for pid in self.stopped:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGCONT)
        if not clean:
            for child in self.children:
                with contextlib.suppress(OSError):
                    os.kill(child.pid, signal.SIGKILL)
        for child in self.children:
            child.end()
        for path in ipc.remains(self.key):
            with contextlib.suppress(OSError):
                os.unlink(path)
        with contextlib.suppress(OSError):
            os.unlink(f"/dev/shm/{self.shm_name}")
        with contextlib.suppress(OSError):
            os.unlink(self.socket)


def run_case(case: Case, work: str, gst: str | None, seconds: float) -> Case:
    run = Run(case, work, gst, seconds)
    clean = False
    try:
        run.go()
        clean = True
    except RuntimeError as exc:
        case.error = str(exc)
    finally:
        run.close(clean)
    return case


# -- the floor ------------------------------------------------------------------------------
def memcpy_ms(nbytes: int, repeat: int = 15) -> float:
    """Median time of one frame copied between two buffers already paged in, in this process."""
    source, target = bytearray(b"\x01") * nbytes, bytearray(nbytes)
    samples = []
    with memoryview(source) as src, memoryview(target) as dst:
        dst[:] = src
        for _ in range(repeat):
            started = time.perf_counter()
            dst[:] = src
            samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1e3


# -- the report -----------------------------------------------------------------------------
def _f(value: float, digits: int = 1, width: int = 7) -> str:
    if value != value:  # NaN
        return f"{'-':>{width}}"
    return f"{value:{width}.{digits}f}"


def format_cases(cases: list[Case], floors: dict[str, float]) -> str:
    lines: list[str] = []
    groups = list(dict.fromkeys((c.size, c.readers) for c in cases))
    header = (
        f"{'method':<33} {'mode':<6} {'writer':>7} {'reader':>7} {'skipped':>8} {'torn':>5} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'p50/cp':>7} {'w cpu':>6} {'r cpu':>6} {'w/cp':>5} "
        f"{'w MB':>6} {'r MB':>6} {'shm MB':>7}"
    )
    for size, readers in groups:
        width, height = SIZES[size]
        floor = floors[size]
        lines += [
            "",
            f"== {size}: {width}x{height} RGBA, {width * height * 4 / MB:.1f} MB a frame, "
            f"{readers} reader{'s' if readers > 1 else ''}; memcpy of one frame {floor:.2f} ms "
            f"({1e3 / floor:,.0f} fps); paced at {TARGET_FPS[size]:.0f} fps ==",
            header,
        ]
        for case in (c for c in cases if (c.size, c.readers) == (size, readers)):
            name = METHODS[case.method]
            if case.error:
                lines.append(f"{name:<33} {case.mode:<6} failed: {case.error}")
                continue
            p50, p99 = case.latency(0.5), case.latency(0.99)
            lines.append(
                f"{name:<33} {case.mode:<6} {_f(case.writer_fps)} {_f(case.reader_fps_min)} "
                f"{case.total('skipped'):8d} {case.total('torn'):5d} {_f(p50, 2)} {_f(p99, 2)} "
                f"{_f(p50 / floor)} {_f(case.writer_cpu_ms, 2, 6)} {_f(case.reader_cpu_ms, 2, 6)} "
                f"{_f(case.writer_cpu_ms / floor, 1, 5)} {_f(case.writer_hwm, 0, 6)} "
                f"{_f(case.reader_hwm, 0, 6)} {_f(case.shm_mb, 0, 7)}"
            )
            if case.readers > 1:
                received = "/".join(str(n) for n in case.received())
                skipped = "/".join(str(r["tally"]["skipped"]) for r in case.reader_reports)
                lines.append(f"    per reader: received {received} whole frames, skipped {skipped}")
            if case.writer.get("error_count"):
                lines.append(f"    writer errors: {case.writer['error_count']}: {case.writer['errors'][0]}")
            rates = case.stop_rates()
            if rates and case.stop_window_ns:
                stopped_s = (case.stop_window_ns[1] - case.stop_window_ns[0]) / 1e9
                lines.append(
                    f"    reader 0 stopped (SIGSTOP) for {stopped_s:.1f} s: writer {rates[0]:.1f} fps "
                    f"otherwise, {rates[1]:.1f} fps meanwhile; "
                    f"longest gap between publishes {rates[2]:.0f} ms"
                )
    return "\n".join(lines)


def format_summary(cases: list[Case]) -> str:
    """One grid: each method's highest whole-frame rate to its slowest reader (free run, only if
    nothing was torn) and its paced latency p50/p99."""
    groups = list(dict.fromkeys((c.size, c.readers) for c in cases))
    methods = [m for m in METHODS if any(c.method == m for c in cases)]
    heading = "".join(f" {f'{size} x{readers}':>22}" for size, readers in groups)
    lines = [
        "",
        "summary: free run, slowest reader's whole frames/s (0 torn) | paced latency p50/p99 ms",
        f"{'method':<33}{heading}",
    ]
    for method in methods:
        cells = []
        for size, readers in groups:
            free, paced = (
                find(cases, size, readers, method, "free"),
                find(cases, size, readers, method, "paced"),
            )
            rate = "-" if free is None else "torn" if free.total("torn") else f"{free.reader_fps_min:.0f}"
            latency = "-" if paced is None else f"{paced.latency(0.5):.1f}/{paced.latency(0.99):.0f}"
            cells.append(f" {rate + ' | ' + latency:>22}")
        lines.append(f"{METHODS[method]:<33}{''.join(cells)}")
    return "\n".join(lines)


def find(cases: list[Case], size: str, readers: int, method: str, mode: str) -> Case | None:
    for case in cases:
        if (case.size, case.readers, case.method, case.mode) == (
            size,
            readers,
            method,
            mode,
        ) and not case.error:
            return case
    return None


def sustains(case: Case | None) -> tuple[bool, str]:
    if case is None:
        return False, "not measured"
    ok = (
        case.writer_fps >= KEEP_WRITER * case.rate
        and case.reader_fps_min >= KEEP_READER * case.rate
        and case.total("torn") == 0
    )
    text = (
        f"writer {case.writer_fps:.1f} fps, slowest reader {case.reader_fps_min:.1f} fps whole, "
        f"{case.total('torn')} torn"
    )
    return ok, text


def _verdict(ok: bool) -> str:
    return "met   " if ok else "MISSED"


def format_targets(cases: list[Case]) -> str:
    lines = [
        "",
        f"targets (a paced run sustains its rate when the writer keeps {KEEP_WRITER:.0%} of it, every "
        f"reader receives {KEEP_READER:.0%} of it whole and none is torn):",
    ]
    for size, readers, method, what in (
        ("1080p", 4, "tkshm", "1080p at 60 fps to 4 copying readers"),
        ("4K", 1, "tkshm", "4K at 30 fps to 1 copying reader"),
        ("4K", 4, "view", "4K at 30 fps to 4 view() readers"),
    ):
        ok, text = sustains(find(cases, size, readers, method, "paced"))
        lines.append(f"  {_verdict(ok)} {what}: {text}")
    for size, readers in dict.fromkeys((c.size, c.readers) for c in cases):
        ours, theirs = (
            find(cases, size, readers, "tkshm", "paced"),
            find(cases, size, readers, "gst", "paced"),
        )
        if ours and theirs:
            for fraction, name in ((0.5, "p50"), (0.99, "p99")):
                a, b = ours.latency(fraction), theirs.latency(fraction)
                lines.append(
                    f"  {_verdict(a < b)} {size} {readers} reader(s) paced: tkshm latency {name} {a:.2f} ms "
                    f"< GStreamer shmsink/shmsrc {b:.2f} ms"
                )
    for size, readers in dict.fromkeys((c.size, c.readers) for c in cases):
        for method in ("tkshm", "view"):
            case = find(cases, size, readers, method, "stop")
            rates = case.stop_rates() if case else None
            if case is not None and rates is not None:
                ok = rates[1] >= KEEP_STOPPED * rates[0] and rates[1] >= KEEP_WRITER * case.rate
                lines.append(
                    f"  {_verdict(ok)} {size} {readers} reader(s), one stopped: {METHODS[method]} writer "
                    f"{rates[1]:.1f} fps meanwhile vs {rates[0]:.1f} otherwise (not slowed: meanwhile >= "
                    f"{KEEP_STOPPED:.0%} of otherwise and >= {KEEP_WRITER:.0%} of the target)"
                )
    return "\n".join(lines)


def draw_chart(cases: list[Case], path: str, title: str) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "chart: skipped: matplotlib is not installed (pip install -e '.[bench]')"
    groups = list(dict.fromkeys((c.size, c.readers) for c in cases))
    methods = [m for m in METHODS if any(c.method == m for c in cases)]
    panels = (
        ("free", lambda c: c.reader_fps_min, "free run: slowest reader, whole frames/s", False),
        ("paced", lambda c: c.latency(0.5), "paced run: latency p50, ms (log)", True),
        ("paced", lambda c: c.latency(0.99), "paced run: latency p99, ms (log)", True),
        ("stop", lambda c: r[1] if (r := c.stop_rates()) else 0.0, "one reader stopped: writer fps", False),
    )
    figure, axes = plt.subplots(1, len(panels), figsize=(20, 6))
    colours = plt.get_cmap("tab10")
    bar = 0.8 / max(1, len(methods))
    labels = [f"{size}\n{readers} reader{'s' if readers > 1 else ''}" for size, readers in groups]
    for axis, (mode, value, heading, log) in zip(axes, panels, strict=True):
        for index, method in enumerate(methods):
            heights = []
            for size, readers in groups:
                case = find(cases, size, readers, method, mode)
                got = value(case) if case else 0.0
                heights.append(got if got == got else 0.0)
            positions = [g + (index - (len(methods) - 1) / 2) * bar for g in range(len(groups))]
            axis.bar(positions, heights, bar, label=METHODS[method], color=colours(index))
        if mode in ("paced", "stop"):
            for g, (size, _) in enumerate(groups):
                if mode == "stop":
                    axis.hlines(TARGET_FPS[size], g - 0.45, g + 0.45, colors="black", linestyles="dashed")
        if log:
            axis.set_yscale("log")
        axis.set_xticks(range(len(groups)))
        axis.set_xticklabels(labels, fontsize=9)
        axis.set_title(heading, fontsize=10)
        axis.grid(axis="y", which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return f"chart written to {path}"


# -- the run --------------------------------------------------------------------------------
def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    gst = "absent"
    if shutil.which("gst-launch-1.0"):
        version = subprocess.run(["gst-launch-1.0", "--version"], capture_output=True, text=True)
        gst = version.stdout.splitlines()[1].split()[-1] if version.returncode == 0 else "absent"
    return (
        f"{time.strftime('%a %d %b %Y %H:%M:%S %Z')}; {os.cpu_count()} CPUs ({model}); "
        f"{platform.platform()}; Python {platform.python_version()}, Pillow {Image.__version__}, "
        f"GStreamer {gst}"
    )


@contextlib.contextmanager
def workdir() -> Iterator[str]:
    """A private directory on tmpfs for the sockets and tkshm's segments; removed at the end."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") else "/tmp"
    path = os.path.join(base, f"tkshm-stream-{os.getpid()}")
    os.mkdir(path, 0o700)
    previous = os.environ.get("TKSHM_DIR")
    os.environ["TKSHM_DIR"] = os.path.join(path, "tkshm")  # inherited by every child
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop("TKSHM_DIR", None)
        else:
            os.environ["TKSHM_DIR"] = previous
        shutil.rmtree(path, ignore_errors=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=parse_sizes, default=["1080p", "4K"], help="e.g. 1080p,4K")
    parser.add_argument("--readers", default="1,4", help="reader counts, e.g. 1,4")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each run (default 5)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"from {','.join(METHODS)}")
    parser.add_argument("--modes", default=",".join(MODES), help=f"from {','.join(MODES)}")
    parser.add_argument("--chart", metavar="PATH", help="draw the chart to this PNG file")
    parser.add_argument("--json", metavar="PATH", help="write every figure to this JSON file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    readers = [int(n) for n in args.readers.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    modes = [m for m in args.modes.split(",") if m]
    unknown = [m for m in methods if m not in METHODS] + [m for m in modes if m not in MODES]
    if unknown:
        build_parser().error(f"unknown method or mode: {', '.join(unknown)}")
    header = f"tkshm stream benchmark: {machine()}"
    print(header)
    print(f"tkshm side: {TkshmFrames.describe()}")
    notes: list[str] = []
    gst = gst_python() if "gst" in methods else None
    if "gst" in methods and gst is None:
        methods.remove("gst")
        notes.append("GStreamer: skipped: no gst shmsink or Python bindings (sh benchmarks/setup.sh)")
    elif gst:
        print(f"GStreamer driven by {gst}")
    for text in notes:
        print(f"note: {text}")
    cases: list[Case] = []
    floors: dict[str, float] = {}
    with workdir() as work:
        for size in args.sizes:
            width, height = SIZES[size]
            floors[size] = memcpy_ms(width * height * 4)
            for count in readers:
                for method in methods:
                    for mode in modes:
                        case = Case(size, count, method, mode, TARGET_FPS[size])
                        run_case(case, work, gst, args.seconds)
                        cases.append(case)
                        summary = case.error or (
                            f"writer {case.writer_fps:7.1f} fps, "
                            f"slowest reader {case.reader_fps_min:7.1f} fps, "
                            f"torn {case.total('torn')}, p50 {case.latency(0.5):.2f} ms"
                        )
                        print(f"  {size:>5} {count} {METHODS[method]:<33} {mode:<6} {summary}", flush=True)
    print(format_cases(cases, floors))
    print(format_summary(cases))
    print(format_targets(cases))
    print(
        "\ncolumns: writer = frames published per second; reader = whole frames per second of the "
        "slowest reader; skipped = frames published that a reader never saw (all readers); torn = "
        "frames whose three stamps disagreed; p50/p99 = latency from the stamp (just before the "
        "publish) to the end of the reader's copy or view, all readers pooled; p50/cp = p50 / "
        "memcpy of one frame; w cpu, r cpu = CPU ms per frame published (writer) and per frame "
        "received (mean reader); w/cp = w cpu / memcpy; w MB, r MB = VmHWM of the writer and of "
        "the largest reader; shm MB = shared memory the writer allocated"
    )
    if args.chart:
        text = draw_chart(cases, args.chart, f"tkshm stream benchmark: {machine()}")
        print(text)
    for text in notes:
        print(f"note: {text}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(
                {
                    "machine": header,
                    "floors_ms": floors,
                    "cases": [c.as_dict() for c in cases],
                    "notes": notes,
                },
                handle,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: every process and segment of this run was removed", file=sys.stderr)
        sys.exit(130)
