"""The one-shot rows: for each method, a write timed here and a read timed in the reader process."""

from __future__ import annotations

import importlib.util
import mmap
import os
import pickle
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from multiprocessing import shared_memory
from typing import Any, Final

from PIL import Image
from tkshm import ipc

from common import (
    FLOOR,
    FLOOR_MAPPED,
    FLOOR_POPULATE,
    PIPE,
    PNG,
    POPULATE,
    QT,
    SHM_PICKLE,
    SHM_RAW,
    TIMER,
    TKSHM,
    TKSHM_KEPT,
    Figure,
    ReaderProcess,
    Results,
    qt_example_publish,
)

# A method whose warm-up takes longer than this (PNG, Qt's PNG stream at 4K and 8K) is
# repeated fewer times, so that the whole run stays within a few minutes.
SLOW_SECONDS: Final = 0.5
SLOW_REPEAT: Final = 3


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
    from PySide6.QtCore import QSharedMemory
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
        qt_example_publish(memory, qimage)

    try:
        ctx.measure(QT, ctx.pair(write, "read_qt", key))
    finally:
        if memory.isAttached():
            memory.detach()
