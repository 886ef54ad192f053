"""What every benchmark here shares: the sizes and clocks, the test image, the results, the
reader process and the private working directory."""

from __future__ import annotations

import argparse
import mmap
import multiprocessing as mp
import os
import pickle
import random
import shutil
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from multiprocessing import shared_memory
from multiprocessing.connection import Connection
from typing import Any, Final, Literal

from PIL import Image, ImageChops, ImageDraw, ImageFilter
from tkshm import ipc

SIZES: Final = {"1080p": (1920, 1080), "4K": (3840, 2160), "8K": (7680, 4320)}
TIMER: Final = time.perf_counter  # CLOCK_MONOTONIC: comparable between processes on Linux
MB: Final = 1e6  # MB/s and MB in the table are decimal megabytes
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
        self.qt_payload = b""  # the bytes of the last read_qt_protocol_bytes

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
        return self._read_fresh_mapping(path, nbytes, mmap.MAP_SHARED)

    def read_floor_populated(self, path: str, nbytes: int) -> Any:
        return self._read_fresh_mapping(path, nbytes, mmap.MAP_SHARED | POPULATE)

    def _read_fresh_mapping(self, path: str, nbytes: int, flags: int) -> None:
        """Open the file, map it with ``flags``, copy it out into memory already paged in, unmap."""
        target = self._buffer(nbytes)
        fd = os.open(path, os.O_RDONLY)
        try:
            mapping = mmap.mmap(fd, nbytes, flags, mmap.PROT_READ)
        finally:
            os.close(fd)
        with memoryview(target) as out, memoryview(mapping) as source:
            out[:] = source
        mapping.close()

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

    def read_qt_protocol(self, key: str, version: Literal[5, 6]) -> Any:
        from tkshm import qt

        return qt.read_image(key, version)

    def read_qt_protocol_bytes(self, key: str, version: Literal[5, 6]) -> Any:
        """``qt.read_image`` without the decode: attach, lock, copy out, unlock, detach."""
        from tkshm import qt

        handle = qt.backend(key, version)
        try:
            handle.attach()
            with handle.lock(DEADLINE):
                self.qt_payload = handle.read()
            handle.detach()
        finally:
            handle.close()
        return None

    def read_qt_protocol_decode(self) -> Any:
        """The rest of ``qt.read_image``: the bytes last copied out, decoded to RGBA."""
        from tkshm.qt import payload

        return payload.decode(self.qt_payload, "the payload")

    def read_qt(self, key: str, native: bool = False) -> Any:
        # Dialog::loadFromMemory() of Qt's example, line for line.
        from PySide6.QtCore import QBuffer, QDataStream, QIODevice, QNativeIpcKey, QSharedMemory
        from PySide6.QtGui import QImage

        memory = QSharedMemory(QNativeIpcKey(key)) if native else QSharedMemory(key)
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


def qt_example_publish(memory: Any, qimage: Any) -> int:
    """Dialog::loadFromFile() of Qt's example once the file is loaded and the old segment is
    detached, line for line: QDataStream the QImage into a buffer, create a segment of its size,
    copy it in under the lock. Returns the payload's size in bytes."""
    from PySide6.QtCore import QBuffer, QDataStream, QIODevice

    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.ReadWrite)
    out = QDataStream(buffer)
    out << qimage
    size = int(buffer.size())
    if not memory.create(size):
        raise RuntimeError(f"Qt could not create the segment: {memory.errorString()}")
    memory.lock()
    with memoryview(memory.data()) as target:
        target[:size] = buffer.data().data()
    memory.unlock()
    return size


# -- the working directory and the sizes ---------------------------------------------------
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


def note(results: Results, text: str) -> None:
    print(text)
    results.notes.append(text)
