"""How close tkshm comes to a plain memory copy, and how it compares with what a user would pick instead.

One run measures, side by side and for each image size, pairs of *write* (in this process) and
*read* (in a separate reader process, which times itself):

* the floors: a copy into and out of a file that is already mapped (memory bandwidth), and the
  same copy with the file opened, mapped and closed around it (the least a one-shot publish or
  read can cost);
* tkshm: ``ipc.publish(img, key).close()`` into a segment that another process holds, with
  ``ipc.read_image(key)`` in the reader; and ``Segment.write_image`` / ``Segment.read_image`` on
  handles kept open;
* the alternatives: ``multiprocessing.shared_memory`` with raw bytes and with a pickled image, a
  ``multiprocessing`` pipe, a PNG file (on tmpfs), and Qt's own example (``QSharedMemory`` with
  ``QDataStream << QImage``) through PySide6;
* the peak memory of ``tkshm put`` and ``tkshm get``.

The reader process is started with the ``spawn`` method, as a second program would be. Both
processes use ``time.perf_counter`` (``CLOCK_MONOTONIC`` on Linux: one clock for all processes),
so the pipe's round trip can be timed from the writer's start to the reader's end.

Run ``python benchmarks/bench.py --help`` for the options; ``benchmarks/README.md`` explains the rows.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import mmap
import multiprocessing as mp
import os
import pickle
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout, suppress
from dataclasses import asdict, dataclass, field
from multiprocessing import shared_memory
from multiprocessing.connection import Connection
from typing import Any, Final

from PIL import Image, ImageChops, ImageDraw, ImageFilter

from tkshm import ipc

SIZES: Final = {"1080p": (1920, 1080), "4K": (3840, 2160), "8K": (7680, 4320)}
TIMER: Final = time.perf_counter  # CLOCK_MONOTONIC: comparable between processes on Linux
MB: Final = 1e6  # MB/s and MB in the table are decimal megabytes
# A method whose warm-up takes longer than this (PNG, Qt's PNG stream at 4K and 8K) is
# repeated fewer times, so that the whole run stays within a few minutes.
SLOW_SECONDS: Final = 0.5
SLOW_REPEAT: Final = 3
POPULATE: Final = getattr(mmap, "MAP_POPULATE", 0)  # Linux only
READER_BLOCKS: Final = 24  # two 8K images' worth of Pillow's 16 MB blocks
DEADLINE: Final = 120.0  # seconds any single step of the reader may take before we give up

# The rows of the table, in order: (method, what the write does, what the read does).
FLOOR_MAPPED: Final = "floor: copy, file already mapped"
FLOOR: Final = "floor: open+mmap+copy+close"
FLOOR_POPULATE: Final = "(floor with MAP_POPULATE)"
TKSHM: Final = "tkshm publish()/read_image()"
TKSHM_KEPT: Final = "tkshm kept Segment handles"
SHM_RAW: Final = "shared_memory + tobytes/frombytes"
SHM_PICKLE: Final = "shared_memory + pickle"
PIPE: Final = "multiprocessing Pipe"
PNG: Final = "PNG file on tmpfs"
QT: Final = "Qt QSharedMemory + QDataStream"


# -- the test image ------------------------------------------------------------------------
def make_image(width: int, height: int, seed: int = 5) -> Image.Image:
    """A deterministic photo-like RGBA image: smooth gradients, soft shapes and grain.

    Photo-like matters for the PNG and Qt rows (a flat image compresses to nothing) and not
    at all for the copies, which move the same number of bytes whatever they hold.
    """
    rng = random.Random(seed)
    size = (width, height)
    horizontal = Image.linear_gradient("L").rotate(90).resize(size)
    vertical = Image.linear_gradient("L").resize(size)
    radial = Image.radial_gradient("L").resize(size)
    base = Image.merge("RGB", (horizontal, vertical, radial))
    draw = ImageDraw.Draw(base)
    scale = width / 1920
    for _ in range(60):
        x, y, r = rng.randrange(width), rng.randrange(height), int(rng.randrange(10, 270) * scale)
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        if rng.random() < 0.5:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        else:
            draw.rectangle((x - r, y - r // 2, x + r, y + r // 2), fill=colour)
    base = base.filter(ImageFilter.GaussianBlur(3 * scale))
    grain = Image.frombytes("L", size, rng.randbytes(width * height)).point(lambda v: v // 8)
    photo = ImageChops.add(base, Image.merge("RGB", (grain, grain, grain)), 1, -16)
    return photo.convert("RGBA")


# -- the reader process --------------------------------------------------------------------
class Reader:
    """The reader's side: each command reads once and answers ``(started, finished)``.

    The image read is dropped right after it is timed, as a viewer drops it once displayed.
    """

    def __init__(self, data: Connection) -> None:
        self.data = data
        self.held: dict[str, ipc.Segment] = {}
        self.maps: dict[str, mmap.mmap] = {}
        self.buffers: dict[int, bytearray] = {}

    def _buffer(self, nbytes: int) -> bytearray:
        # Memory already paged in: bytearray() writes zeros into every page when it is made.
        if nbytes not in self.buffers:
            self.buffers[nbytes] = bytearray(nbytes)
        return self.buffers[nbytes]

    def hold(self, key: str) -> None:
        self.held[key] = ipc.Segment.attach(key)

    def drop(self, key: str) -> None:
        self.held.pop(key).close()

    def map(self, path: str, nbytes: int) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            self.maps[path] = mmap.mmap(fd, nbytes, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        self._buffer(nbytes)

    def unmap(self, path: str) -> None:
        self.maps.pop(path).close()

    def read_floor_mapped(self, path: str, nbytes: int) -> Any:
        mapping, target = self.maps[path], self._buffer(nbytes)
        with memoryview(target) as out, memoryview(mapping) as source:
            out[:] = source
        return None

    def read_floor(self, path: str, nbytes: int) -> Any:
        target = self._buffer(nbytes)
        fd = os.open(path, os.O_RDONLY)
        try:
            mapping = mmap.mmap(fd, nbytes, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        with memoryview(target) as out, memoryview(mapping) as source:
            out[:] = source
        mapping.close()
        return None

    def read_floor_populated(self, path: str, nbytes: int) -> Any:
        target = self._buffer(nbytes)
        fd = os.open(path, os.O_RDONLY)
        try:
            mapping = mmap.mmap(fd, nbytes, mmap.MAP_SHARED | POPULATE, mmap.PROT_READ)
        finally:
            os.close(fd)
        with memoryview(target) as out, memoryview(mapping) as source:
            out[:] = source
        mapping.close()
        return None

    def read_tkshm(self, key: str) -> Any:
        return ipc.read_image(key)

    def read_tkshm_kept(self, key: str) -> Any:
        return self.held[key].read_image()

    def read_shm_raw(self, name: str, width: int, height: int) -> Any:
        block = shared_memory.SharedMemory(name)
        image = Image.frombytes("RGBA", (width, height), block.buf)
        block.close()
        return image

    def read_shm_pickle(self, name: str) -> Any:
        block = shared_memory.SharedMemory(name)
        length = int.from_bytes(block.buf[:8], "little")
        image = pickle.loads(block.buf[8 : 8 + length])
        block.close()
        return image

    def read_png(self, path: str) -> Any:
        image = Image.open(path)
        image.load()
        return image

    def read_qt(self, key: str) -> Any:
        # Dialog::loadFromMemory() of Qt's example, line for line.
        from PySide6.QtCore import QBuffer, QDataStream, QIODevice, QSharedMemory
        from PySide6.QtGui import QImage

        memory = QSharedMemory(key)
        if not memory.attach():
            raise RuntimeError(f"Qt could not attach: {memory.errorString()}")
        buffer = QBuffer()
        stream = QDataStream(buffer)
        image = QImage()
        memory.lock()
        buffer.setData(bytes(memoryview(memory.constData())[: memory.size()]))
        buffer.open(QIODevice.OpenModeFlag.ReadOnly)
        stream >> image
        memory.unlock()
        memory.detach()
        if image.isNull():
            raise RuntimeError("Qt read a null image")
        return image

    def pipe_receive(self) -> Any:
        return self.data.recv()

    def close(self) -> None:
        for segment in self.held.values():
            segment.close()
        for mapping in self.maps.values():
            mapping.close()


def _reader_main(commands: Connection, data: Connection) -> None:
    # Like the tkshm window, the reader keeps freed image blocks for the next image
    # (PILLOW_BLOCKS_MAX; 16 MB each): recycled memory is already paged in, while fresh pages
    # cost more than the copy. It applies to every method read in this process alike.
    Image.core.set_blocks_max(READER_BLOCKS)  # type: ignore[attr-defined]
    reader = Reader(data)
    try:
        while True:
            name, args = commands.recv()
            if name == "exit":
                break
            try:
                if name.startswith(("read_", "pipe_")):
                    started = TIMER()
                    result = getattr(reader, name)(*args)
                    finished = TIMER()
                    del result
                    commands.send(("ok", (started, finished)))
                else:
                    commands.send(("ok", getattr(reader, name)(*args)))
            except Exception as exc:  # reported to the parent, which stops the run with it
                commands.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        reader.close()


class ReaderProcess:
    """A separate Python process (``spawn``, like a second program) that reads on command."""

    def __init__(self) -> None:
        context = mp.get_context("spawn")
        self.commands, child_commands = context.Pipe()
        self.data, child_data = context.Pipe()
        self.process = context.Process(target=_reader_main, args=(child_commands, child_data), daemon=True)
        self.process.start()
        child_commands.close()
        child_data.close()

    def send(self, name: str, *args: Any) -> None:
        self.commands.send((name, args))

    def answer(self) -> Any:
        if not self.commands.poll(DEADLINE):
            raise RuntimeError(f"the reader process gave no answer within {DEADLINE:.0f} s")
        status, value = self.commands.recv()
        if status != "ok":
            raise RuntimeError(f"the reader process failed: {value}")
        return value

    def call(self, name: str, *args: Any) -> Any:
        self.send(name, *args)
        return self.answer()

    def read(self, name: str, *args: Any) -> float:
        started, finished = self.call(name, *args)
        return float(finished - started)

    def close(self) -> None:
        with suppress(OSError):
            self.send("exit")
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self.commands.close()
        self.data.close()


# -- results ------------------------------------------------------------------------------
@dataclass
class Figure:
    """The samples of one (method, operation, size), in seconds."""

    method: str
    op: str  # "write", "read" or "round trip"
    size: str
    nbytes: int
    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def iqr(self) -> float:
        if len(self.samples) < 4:
            return max(self.samples) - min(self.samples)
        quartiles = statistics.quantiles(self.samples, n=4, method="inclusive")
        return quartiles[2] - quartiles[0]

    @property
    def mb_per_s(self) -> float:
        return self.nbytes / MB / self.median


@dataclass
class Results:
    figures: list[Figure] = field(default_factory=list)
    memory: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    display: dict[str, Any] | None = None

    def get(self, method: str, op: str, size: str) -> Figure | None:
        for figure in self.figures:
            if (figure.method, figure.op, figure.size) == (method, op, size):
                return figure
        return None

    def median(self, method: str, op: str, size: str) -> float | None:
        figure = self.get(method, op, size)
        return figure.median if figure else None


# -- one size: every method, as (write here, read there) pairs --------------------------------
Once = Callable[[], tuple[float | None, float | None, float]]


@dataclass
class Context:
    label: str
    image: Image.Image
    pixels: bytes
    workdir: str
    reader: ReaderProcess
    results: Results
    repeat: int
    warmup: int

    @property
    def nbytes(self) -> int:
        return len(self.pixels)

    def measure(self, method: str, once: Once) -> None:
        """Run ``once`` for warm-up and repeats; record write, read and round trip."""
        started = TIMER()
        for _ in range(self.warmup):
            once()
        repeat = self.repeat
        if self.warmup and (TIMER() - started) / self.warmup > SLOW_SECONDS:
            repeat = min(repeat, SLOW_REPEAT)
        figures = {op: Figure(method, op, self.label, self.nbytes) for op in ("write", "read", "round trip")}
        for _ in range(repeat):
            write, read, both = once()
            for op, value in (("write", write), ("read", read), ("round trip", both)):
                if value is not None:
                    figures[op].samples.append(value)
        self.results.figures.extend(f for f in figures.values() if f.samples)
        print(f"  {self.label:>5}  {method:<36} {figures['round trip'].median * 1e3:10.2f} ms round trip")

    def pair(self, write: Callable[[], None], read: str, *args: Any) -> Once:
        """A write timed here, then a read timed by the reader process."""

        def once() -> tuple[float, float, float]:
            started = TIMER()
            write()
            wrote = TIMER() - started
            took = self.reader.read(read, *args)
            return wrote, took, wrote + took

        return once


def _populated_file(path: str, pixels: bytes) -> None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.posix_fallocate(fd, 0, len(pixels))
        os.pwrite(fd, pixels, 0)
    finally:
        os.close(fd)


def bench_floors(ctx: Context) -> None:
    path = os.path.join(ctx.workdir, f"floor-{ctx.label}.bin")
    _populated_file(path, ctx.pixels)
    nbytes, pixels = ctx.nbytes, ctx.pixels

    fd = os.open(path, os.O_RDWR)
    kept = mmap.mmap(fd, nbytes)
    os.close(fd)
    ctx.reader.call("map", path, nbytes)

    def copy_into_mapped() -> None:
        kept[:] = pixels

    def open_map_copy_close() -> None:
        fd = os.open(path, os.O_RDWR)
        try:
            mapping = mmap.mmap(fd, nbytes)
        finally:
            os.close(fd)
        mapping[:] = pixels
        mapping.close()

    def open_populated_copy_close() -> None:
        # MAP_POPULATE fills the page tables in one call instead of one fault per page.
        fd = os.open(path, os.O_RDWR)
        try:
            mapping = mmap.mmap(fd, nbytes, mmap.MAP_SHARED | POPULATE)
        finally:
            os.close(fd)
        mapping[:] = pixels
        mapping.close()

    try:
        ctx.measure(FLOOR_MAPPED, ctx.pair(copy_into_mapped, "read_floor_mapped", path, nbytes))
        ctx.measure(FLOOR, ctx.pair(open_map_copy_close, "read_floor", path, nbytes))
        if POPULATE:
            ctx.measure(
                FLOOR_POPULATE, ctx.pair(open_populated_copy_close, "read_floor_populated", path, nbytes)
            )
    finally:
        kept.close()
        ctx.reader.call("unmap", path)
        os.unlink(path)


def bench_tkshm(ctx: Context, key: str) -> None:
    image = ctx.image
    # The segment exists and another process holds it; our one-shot publishes join it.
    with ipc.publish(image, key):
        ctx.reader.call("hold", key)
    try:

        def publish_once() -> None:
            ipc.publish(image, key).close()

        ctx.measure(TKSHM, ctx.pair(publish_once, "read_tkshm", key))
        with ipc.Segment.attach(key) as segment:

            def write_kept() -> None:
                segment.write_image(image)

            ctx.measure(TKSHM_KEPT, ctx.pair(write_kept, "read_tkshm_kept", key))
    finally:
        ctx.reader.call("drop", key)  # the last holder: the segment goes


def bench_shared_memory(ctx: Context, name: str) -> None:
    image, nbytes = ctx.image, ctx.nbytes
    width, height = image.size
    block = shared_memory.SharedMemory(name, create=True, size=nbytes)
    try:

        def write_raw() -> None:
            block.buf[:nbytes] = image.tobytes()

        ctx.measure(SHM_RAW, ctx.pair(write_raw, "read_shm_raw", name, width, height))
    finally:
        block.close()
        block.unlink()

    room = 8 + len(pickle.dumps(image, protocol=pickle.HIGHEST_PROTOCOL))
    block = shared_memory.SharedMemory(name, create=True, size=room)
    try:

        def write_pickle() -> None:
            data = pickle.dumps(image, protocol=pickle.HIGHEST_PROTOCOL)
            block.buf[:8] = len(data).to_bytes(8, "little")
            block.buf[8 : 8 + len(data)] = data

        ctx.measure(SHM_PICKLE, ctx.pair(write_pickle, "read_shm_pickle", name))
    finally:
        block.close()
        block.unlink()


def bench_pipe(ctx: Context) -> None:
    image, reader = ctx.image, ctx.reader

    def once() -> tuple[float, None, float]:
        reader.send("pipe_receive")  # the reader now waits in recv(), as a consumer would
        started = TIMER()
        reader.data.send(image)
        sent = TIMER()
        _, received = reader.answer()
        return sent - started, None, received - started

    ctx.measure(PIPE, once)


def bench_png(ctx: Context) -> None:
    path = os.path.join(ctx.workdir, f"image-{ctx.label}.png")
    image = ctx.image

    def save() -> None:
        image.save(path)

    try:
        ctx.measure(PNG, ctx.pair(save, "read_png", path))
    finally:
        with suppress(FileNotFoundError):
            os.unlink(path)


def qt_available() -> bool:
    return importlib.util.find_spec("PySide6") is not None


def bench_qt(ctx: Context, key: str) -> None:
    from PySide6.QtCore import QBuffer, QDataStream, QIODevice, QSharedMemory
    from PySide6.QtGui import QImage

    width, height = ctx.image.size
    pixels = ctx.pixels
    # The QImage is made once, outside the timing: Qt's example starts from a loaded QImage.
    qimage = QImage(pixels, width, height, width * 4, QImage.Format.Format_RGBA8888).copy()
    memory = QSharedMemory(key)

    def write() -> None:
        # Dialog::loadFromFile() of Qt's example after the file is loaded, line for line.
        if memory.isAttached():
            memory.detach()
        buffer = QBuffer()
        buffer.open(QIODevice.OpenModeFlag.ReadWrite)
        out = QDataStream(buffer)
        out << qimage
        size = buffer.size()
        if not memory.create(size):
            raise RuntimeError(f"Qt could not create the segment: {memory.errorString()}")
        memory.lock()
        with memoryview(memory.data()) as target:
            target[:size] = buffer.data().data()
        memory.unlock()

    try:
        ctx.measure(QT, ctx.pair(write, "read_qt", key))
    finally:
        if memory.isAttached():
            memory.detach()


# -- peak memory of the command line ------------------------------------------------------
# ``ru_maxrss`` from ``wait4`` is no good here: Linux carries the parent's resident set over
# the fork-and-exec into the child's figure. ``VmHWM`` in ``/proc/<pid>/status`` belongs to the
# new program's own address space, so each command reports it from an ``atexit`` hook.
_REPORT_HWM: Final = (
    "import atexit, sys\n"
    "def _report():\n"
    "    with open('/proc/self/status') as status:\n"
    "        hwm = [line for line in status if line.startswith('VmHWM:')][0]\n"
    "    sys.stderr.write('@@' + hwm.split()[1] + '\\n')\n"
    "atexit.register(_report)\n"
)
_RUN_CLI: Final = _REPORT_HWM + "from tkshm.cli import main\nsys.exit(main(sys.argv[1:]))\n"
_BASELINE: Final = _REPORT_HWM + "import tkshm.ipc, PIL.Image\n"


def _peak_mb(stderr: str) -> float:
    """The ``VmHWM`` (KiB) a command reported through ``_REPORT_HWM``, in MB."""
    for line in stderr.splitlines():
        if line.startswith("@@"):
            return int(line[2:]) * 1024 / MB
    raise RuntimeError(f"the command reported no peak memory: {stderr.strip()!r}")


def bench_memory(label: str, image: Image.Image, workdir: str, key: str, results: Results) -> None:
    """Peak resident memory of ``tkshm put`` and ``tkshm get`` against a bare
    ``import tkshm.ipc, PIL.Image``.

    The peak includes the pages of the mapping that the command touched (tmpfs pages count
    in the resident set once mapped), so "the decoded image plus the segment" is 2 images.
    """
    nbytes = image.width * image.height * 4
    source = os.path.join(workdir, f"put-{label}.png")
    output = os.path.join(workdir, f"get-{label}.bmp")
    image.save(source, compress_level=1)  # quick to write; decoding it costs the same memory
    run = {"capture_output": True, "text": True, "timeout": DEADLINE}
    baseline = _peak_mb(subprocess.run([sys.executable, "-c", _BASELINE], check=True, **run).stderr)
    put = subprocess.Popen(
        [sys.executable, "-c", _RUN_CLI, "put", "--key", key, source],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert put.stdout is not None
        line = put.stdout.readline()
        if not line.startswith("Published"):
            raise RuntimeError(f"tkshm put did not publish: {line!r}")
        get = subprocess.run([sys.executable, "-c", _RUN_CLI, "get", "--key", key, "-o", output], **run)
        if get.returncode != 0:
            raise RuntimeError(f"tkshm get failed: {get.stderr.strip()}")
        get_peak = _peak_mb(get.stderr)
    finally:
        put.send_signal(signal.SIGTERM)
        _, put_err = put.communicate(timeout=DEADLINE)
        for path in (source, output):
            with suppress(FileNotFoundError):
                os.unlink(path)
    put_peak = _peak_mb(put_err)
    image_mb = nbytes / MB
    for command_name, peak in (("put", put_peak), ("get", get_peak)):
        extra = peak - baseline - image_mb
        results.memory.append(
            {
                "command": f"tkshm {command_name}",
                "size": label,
                "image_mb": image_mb,
                "baseline_mb": baseline,
                "peak_mb": peak,
                "extra_images": extra / image_mb,
            }
        )


# -- display: key press to pixels on screen -----------------------------------------------
DISPLAY_SIZE: Final = "4K"
DISPLAY_REPEAT: Final = 5
WINDOW_GEOMETRY: Final = "1000x760+0+0"


@contextmanager
def x_display() -> Iterator[str | None]:
    """The X display to use: ``$DISPLAY``, or a private Xvfb started (and stopped) here."""
    if os.environ.get("DISPLAY"):
        yield os.environ["DISPLAY"]
        return
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        yield None
        return
    read_end, write_end = os.pipe()
    server = subprocess.Popen(
        [xvfb, "-displayfd", str(write_end), "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
        pass_fds=(write_end,),
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    try:
        with os.fdopen(read_end) as announced:  # Xvfb writes its display number when ready
            number = announced.readline().strip()
        if not number:
            raise RuntimeError("Xvfb did not start")
        os.environ["DISPLAY"] = f":{number}"
        yield os.environ["DISPLAY"]
    finally:
        os.environ.pop("DISPLAY", None)
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)


def bench_display(results: Results, workdir: str, key: str) -> None:
    """Press "Display Image From Shared Memory" and "Load Image From File..." in the window.

    Both are timed by the window's own hook (``TKSHM_TEST_EVENTS``: a ``SHOWN ... ms=T`` line
    from the moment the button's handler runs until Tk has drawn the picture), for the
    nearest-neighbour *draft* (the first pixels on screen) and the smooth *fine* version.
    The file dialog is answered at once with the PNG, so the file row starts after the pick.
    """
    if importlib.util.find_spec("tkshm.window") is None:
        _note(results, "display: skipped: no window yet (tkshm/window/ does not exist)")
        return
    try:
        import tkinter as tk

        from tkshm.window import dialog as window
    except ImportError as exc:
        _note(results, f"display: skipped: the window cannot be imported ({exc})")
        return
    with x_display() as display:
        if display is None:
            _note(results, "display: skipped: no X display and no Xvfb (apt-get install xvfb)")
            return
        width, height = SIZES[DISPLAY_SIZE]
        image = make_image(width, height)
        path = os.path.join(workdir, f"display-{DISPLAY_SIZE}.png")
        image.save(path)  # a user's PNG: default compression
        samples: dict[str, list[float]] = {}
        with ipc.publish(image, key):
            del image
            root = tk.Tk()
            captured = io.StringIO()
            with redirect_stdout(captured):
                app = window.Dialog(root, key=key, events=True, geometry=WINDOW_GEOMETRY)
            original_dialog = window.filedialog.askopenfilename
            window.filedialog.askopenfilename = lambda **options: path  # the user picks our PNG at once
            try:
                root.update()
                buttons = {"shm": app.display_button, "file": app.load_button}
                for source in ("shm", "file") * (DISPLAY_REPEAT + 1):
                    with redirect_stdout(captured):
                        shown = _press_and_wait(root, buttons[source], captured, source)
                    for quality, ms in shown.items():
                        samples.setdefault(f"{source} {quality}", []).append(ms / 1e3)
            finally:
                window.filedialog.askopenfilename = original_dialog
                app.close()
        os.unlink(path)
    # The first press of each button was the warm-up.
    results.display = {name: values[1:] for name, values in samples.items()}


def _press_and_wait(root: Any, button: Any, captured: io.StringIO, source: str) -> dict[str, float]:
    """Invoke ``button`` and run Tk's loop until the window reports its fine picture."""
    captured.seek(0)
    captured.truncate()
    button.invoke()
    deadline = TIMER() + DEADLINE
    shown: dict[str, float] = {}
    while "fine" not in shown:
        if TIMER() > deadline:
            raise RuntimeError(f"the window showed no {source} picture within {DEADLINE:.0f} s")
        root.update()
        for line in captured.getvalue().splitlines():
            if line.startswith(f"SHOWN source={source} "):
                fields = dict(part.split("=", 1) for part in line.split()[1:])
                shown.setdefault(fields["quality"], float(fields["ms"]))
        time.sleep(0.001)  # the worker thread needs the GIL; Tk has nothing else to do
    shown.setdefault("draft", shown["fine"])
    return shown


def _note(results: Results, note: str) -> None:
    print(note)
    results.notes.append(note)


# -- report -------------------------------------------------------------------------------
def ratio_to_floor(results: Results, figure: Figure) -> float | None:
    floor = results.median(FLOOR, figure.op, figure.size)
    return figure.median / floor if floor else None


def format_table(results: Results, sizes: list[str]) -> str:
    lines: list[str] = []
    header = f"{'method':<36} {'op':<10} {'median ms':>10} {'IQR ms':>8} {'min-max ms':>17} {'MB/s':>8}"
    header += f" {'x floor':>8}"
    for label in sizes:
        width, height = SIZES[label]
        size_figures = [f for f in results.figures if f.size == label]
        if not size_figures:
            continue
        nbytes = size_figures[0].nbytes
        counts = sorted({len(f.samples) for f in size_figures})
        lines.append("")
        lines.append(
            f"== {label}: {width}x{height} RGBA, {nbytes / MB:.1f} MB; "
            f"repeats {'/'.join(map(str, counts))} after warm-up =="
        )
        lines.append(header)
        for figure in size_figures:
            ratio = ratio_to_floor(results, figure)
            spread = f"{min(figure.samples) * 1e3:.2f}-{max(figure.samples) * 1e3:.2f}"
            lines.append(
                f"{figure.method:<36} {figure.op:<10} {figure.median * 1e3:10.2f} {figure.iqr * 1e3:8.2f} "
                f"{spread:>17} {figure.mb_per_s:8.0f} {ratio if ratio is not None else float('nan'):8.2f}"
            )
    return "\n".join(lines)


def format_linearity(results: Results, sizes: list[str]) -> str:
    if "1080p" not in sizes or "8K" not in sizes:
        return "per-byte cost at 8K vs 1080p: needs both sizes (--sizes 1080p,8K)"
    lines = ["", "per-byte cost at 8K vs 1080p (1.00 = linear; target within 20% for tkshm):"]
    for method, op in (
        (FLOOR_MAPPED, "write"),
        (FLOOR_MAPPED, "read"),
        (FLOOR, "write"),
        (FLOOR, "read"),
        (TKSHM, "write"),
        (TKSHM, "read"),
        (TKSHM_KEPT, "write"),
        (TKSHM_KEPT, "read"),
    ):
        small, big = results.get(method, op, "1080p"), results.get(method, op, "8K")
        if small and big:
            per_small = small.median / small.nbytes * 1e9
            per_big = big.median / big.nbytes * 1e9
            lines.append(
                f"  {method:<36} {op:<6} {per_small:7.3f} ns/B at 1080p, {per_big:7.3f} ns/B at 8K: "
                f"x{per_big / per_small:.2f}"
            )
    return "\n".join(lines)


def format_memory(results: Results) -> str:
    if not results.memory:
        return ""
    lines = [
        "",
        "peak memory (VmHWM) of the command line, against `python -c 'import tkshm.ipc, PIL.Image'`:",
        f"  {'command':<10} {'size':>5} {'image MB':>9} {'baseline MB':>12} {'peak MB':>8} "
        f"{'extra beyond decoded image':>27}",
    ]
    for row in results.memory:
        lines.append(
            f"  {row['command']:<10} {row['size']:>5} {row['image_mb']:9.1f} {row['baseline_mb']:12.1f} "
            f"{row['peak_mb']:8.1f} {row['extra_images']:20.2f} images"
        )
    return "\n".join(lines)


def format_display(results: Results) -> str:
    if not results.display:
        return ""
    lines = [
        "",
        f"display in the window ({DISPLAY_SIZE}, window {WINDOW_GEOMETRY.split('+')[0]}, Xvfb), "
        "button handler -> picture drawn:",
    ]
    for name, values in results.display.items():
        spread = f"{min(values) * 1e3:.1f}-{max(values) * 1e3:.1f}"
        lines.append(
            f"  {name:<11} median {statistics.median(values) * 1e3:8.1f} ms   min-max {spread:>15} ms"
        )
    return "\n".join(lines)


def _verdict(ok: bool) -> str:
    return "met   " if ok else "MISSED"


def format_targets(results: Results, sizes: list[str]) -> str:
    lines = ["", "targets (medians):"]
    for label in (s for s in sizes if s in ("4K", "8K")):
        for method, op in ((TKSHM, "write"), (TKSHM, "read"), (TKSHM_KEPT, "write"), (TKSHM_KEPT, "read")):
            figure = results.get(method, op, label)
            if figure:
                ratio = ratio_to_floor(results, figure) or float("nan")
                name = ("publish()" if op == "write" else "read_image()") if method == TKSHM else f"kept {op}"
                ok = ratio <= 1.2
                lines.append(f"  {_verdict(ok)} {label:>3} tkshm {name} / floor = {ratio:.2f} (<= 1.2)")
        ours = results.median(TKSHM, "round trip", label)
        kept_write, one_shot_read = (
            results.median(TKSHM_KEPT, "write", label),
            results.median(TKSHM, "read", label),
        )
        if ours is None or kept_write is None or one_shot_read is None:
            continue
        # The alternatives keep their writer's side open (a shared_memory block, a pipe) or
        # not (PNG, Qt's example re-creates its segment): compare each with both tkshm shapes.
        mixed = kept_write + one_shot_read
        for method, limit in ((QT, 200.0), (SHM_RAW, 1.0), (SHM_PICKLE, 1.0), (PIPE, 1.0), (PNG, 1.0)):
            other = results.median(method, "round trip", label)
            if other is None:
                continue
            need = ">= 200" if limit > 1 else "> 1"
            for shape, value in (("publish()+read_image()", ours), ("kept write+read_image()", mixed)):
                ratio = other / value
                ok = ratio >= limit if limit > 1 else ratio > limit
                lines.append(f"  {_verdict(ok)} {label:>3} {method} / tkshm {shape} = {ratio:.1f}x ({need})")
    if "1080p" in sizes and "8K" in sizes:
        for op in ("write", "read"):
            small, big = results.get(TKSHM, op, "1080p"), results.get(TKSHM, op, "8K")
            if small and big:
                growth = (big.median / big.nbytes) / (small.median / small.nbytes)
                lines.append(
                    f"  {_verdict(growth <= 1.2)} tkshm {op} per-byte cost 8K / 1080p = {growth:.2f} (<= 1.2)"
                )
    if results.display:
        for quality in ("draft", "fine"):
            shm, file = results.display.get(f"shm {quality}"), results.display.get(f"file {quality}")
            if shm and file:
                speedup = statistics.median(file) / statistics.median(shm)
                verdict = _verdict(speedup >= 10)
                lines.append(
                    f"  {verdict} display {quality}: PNG file / shared memory = {speedup:.1f}x (>= 10)"
                )
    for row in results.memory:
        if row["command"] == "tkshm put":
            # the mapping, plus 2 MB for the interpreter and the PNG decoder's buffers
            ok = (row["extra_images"] - 1) * row["image_mb"] <= 2.0
            lines.append(
                f"  {_verdict(ok)} {row['size']:>5} tkshm put extra beyond decoded image = "
                f"{row['extra_images']:.2f} images (<= 1, the mapping, + 2 MB)"
            )
    return "\n".join(lines)


def draw_chart(results: Results, sizes: list[str], path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        note = "chart: skipped: matplotlib is not installed (pip install -e '.[bench]')"
        print(note)
        results.notes.append(note)
        return
    methods = list(dict.fromkeys(f.method for f in results.figures))
    panels = (("round trip", "write here + read in another process"), ("write", "write"), ("read", "read"))
    figure, axes = plt.subplots(1, 3, figsize=(17, 6.5), sharey=True)
    colours = plt.get_cmap("viridis")
    bar = 0.8 / max(1, len(sizes))
    for axis, (op, title) in zip(axes, panels, strict=True):
        shown = [m for m in methods if any(results.get(m, op, s) for s in sizes)]
        for index, label in enumerate(sizes):
            values = [results.median(m, op, label) for m in shown]
            positions = [i + (index - (len(sizes) - 1) / 2) * bar for i in range(len(shown))]
            heights = [v * 1e3 if v else 0.0 for v in values]
            axis.bar(
                positions, heights, bar, label=label, color=colours(index / max(1, len(sizes) - 1) * 0.85)
            )
        axis.set_yscale("log")
        axis.set_xticks(range(len(shown)))
        axis.set_xticklabels(shown, rotation=40, ha="right", fontsize=8)
        axis.set_title(title)
        axis.grid(axis="y", which="both", alpha=0.3)
    axes[0].set_ylabel("median time, ms (log scale)")
    axes[0].legend(title="image size")
    figure.suptitle(
        f"tkshm benchmark: {platform.platform()}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')}"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    print(f"chart written to {path}")


# -- the run ------------------------------------------------------------------------------
@contextmanager
def workdir() -> Iterator[str]:
    """A private directory on tmpfs for the floor files and PNGs; removed at the end."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    path = os.path.join(base or "/tmp", f"tkshm-bench-{os.getpid()}")
    os.mkdir(path, 0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def parse_sizes(text: str) -> list[str]:
    labels: list[str] = []
    for item in text.split(","):
        item = item.strip()
        if item in SIZES:
            labels.append(item)
            continue
        width, _, height = item.partition("x")
        match = [k for k, v in SIZES.items() if v == (int(width), int(height))] if height else []
        if not match:
            raise argparse.ArgumentTypeError(f"unknown size {item!r}; use {', '.join(SIZES)}")
        labels.append(match[0])
    return labels


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=parse_sizes, default=list(SIZES), help="e.g. 1080p,4K or 3840x2160")
    parser.add_argument("--repeat", type=int, help="timed repeats per figure (default 9, 5 at 8K)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before the repeats (default 1)")
    parser.add_argument("--quick", action="store_true", help="1080p and 4K, 3 repeats, no Qt/PNG at 4K")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs of the CLI")
    parser.add_argument("--no-slow", action="store_true", help="skip the PNG and Qt rows (slow at 8K)")
    parser.add_argument("--no-display", action="store_true", help="skip the window measurement")
    parser.add_argument("--chart", metavar="PATH", help="draw the chart to this PNG file")
    parser.add_argument("--json", metavar="PATH", help="write every sample to this JSON file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # inherited by the reader process
    sizes: list[str] = ["1080p", "4K"] if args.quick else args.sizes
    results = Results()
    with_qt = qt_available()
    if not with_qt:
        note = "Qt: skipped: PySide6 is not installed (pip install -e '.[bench]')"
        print(note)
        results.notes.append(note)
    print(
        f"tkshm benchmark {time.strftime('%Y-%m-%d %H:%M')}: Python {platform.python_version()}, "
        f"Pillow {Image.__version__}, "
        f"{os.cpu_count()} CPUs, {platform.platform()}"
    )
    tag = f"bench-{os.getpid()}"
    with workdir() as work:
        for label in sizes:
            width, height = SIZES[label]
            image = make_image(width, height)
            repeat = args.repeat or (3 if args.quick else 5 if label == "8K" else 9)
            reader = ReaderProcess()
            try:
                ctx = Context(label, image, image.tobytes(), work, reader, results, repeat, args.warmup)
                bench_floors(ctx)
                bench_tkshm(ctx, f"{tag}-{label}")
                bench_shared_memory(ctx, f"{tag}-{label}")
                bench_pipe(ctx)
                slow_skipped = args.no_slow or (args.quick and label != "1080p")
                if not slow_skipped:
                    bench_png(ctx)
                    if with_qt:
                        bench_qt(ctx, f"{tag}-qt-{label}")
            finally:
                reader.close()
            if not args.no_memory:
                bench_memory(label, image, work, f"{tag}-mem-{label}", results)
            del image, ctx
        if not args.no_display:
            bench_display(results, work, f"{tag}-display")
        if args.chart:
            draw_chart(results, sizes, args.chart)
    print(format_table(results, sizes))
    print(format_linearity(results, sizes))
    print(format_memory(results))
    print(format_display(results))
    print(format_targets(results, sizes))
    for note in results.notes:
        print(f"note: {note}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(
                {
                    "figures": [asdict(f) for f in results.figures],
                    "memory": results.memory,
                    "notes": results.notes,
                    "display": results.display,
                    "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
                },
                handle,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
