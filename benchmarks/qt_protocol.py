"""Qt's format against tkshm's own, at 4K: what the PNG in Qt's segment costs.

One run measures, for a 3840x2160 photo, pairs of *write* (in this process) and *read* (in a
separate reader process, which times itself), as ``bench.py`` does:

* the floors: open, ``mmap``, copy and close a ``/dev/shm`` file of the image's byte size
  (and the bare copy into a file already mapped);
* tkshm's raw format: ``ipc.publish(img, key).close()`` into a segment the reader holds, with
  ``ipc.read_image(key)`` in the reader (``bench.py``'s row); the same with a fresh segment
  each time, as Qt's example makes one; kept ``Segment`` handles;
* Qt's format spoken by tkshm: ``qt.publish(img, key, version)`` (after closing the previous
  handle, as Qt's example detaches before it creates) and ``qt.read_image(key, version)``,
  for Qt 5 (System V) and Qt 6 (POSIX); then the same round trip in parts: the PNG encode
  (``qt.payload.encode``), the copies of the encoded bytes in and out, the PNG decode;
* PySide6's own ``QSharedMemory`` + ``QDataStream << QImage`` in both key styles, as the
  reference (``stills.bench_qt``, with the ``QImage`` in the format a loaded JPEG has).

Every key is new, Qt's key files go to the run's own ``TMPDIR`` and tkshm's segments to its
own ``TKSHM_DIR``; what Qt leaves is removed with ``qt.clean`` at the end, even on an error.

    python benchmarks/qt_protocol.py [--repeat 7] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final, Literal

from PIL import Image, ImageOps
from tkshm import ipc, qt
from tkshm.qt import payload

from common import FLOOR, MB, SIZES, TIMER, TKSHM, ReaderProcess, Results, qt_example_publish, workdir
from stills import Context, Once, bench_floors, bench_tkshm, qt_available

Version = Literal[5, 6]
LABEL: Final = "4K"
PHOTO: Final = Path(__file__).resolve().parent.parent / "assets" / "samples" / "moonrise.jpg"
FAST_TIMES: Final = 3  # the copies are repeated this many times more than the PNG rows

FRESH: Final = "tkshm raw, fresh segment each time"
PROTOCOL: Final = {5: "tkshm.qt, Qt 5 (System V)", 6: "tkshm.qt, Qt 6 (POSIX)"}
ENCODE: Final = "  part: PNG encode (payload.encode)"
COPY: Final = {5: "  part: Qt 5 copy of the PNG bytes", 6: "  part: Qt 6 copy of the PNG bytes"}
DECODE: Final = "  part: PNG decode to RGBA"
PYSIDE: Final = {5: "PySide6 QSharedMemory, legacy key", 6: "PySide6 QSharedMemory, native key"}


def photo() -> tuple[Image.Image, str]:
    """The sample photo, scaled and centre-cropped to 3840x2160, as RGBA."""
    with Image.open(PHOTO) as original:
        size, fmt = original.size, original.format
        fitted = ImageOps.fit(original.convert("RGB"), SIZES[LABEL], Image.Resampling.LANCZOS)
    where = PHOTO.relative_to(PHOTO.parent.parent.parent)
    return fitted.convert("RGBA"), f"{where} ({size[0]}x{size[1]} {fmt}), scaled and centre-cropped"


def slow_measure(ctx: Context, method: str, once: Once) -> None:
    """One untimed warm-up, then the repeats (Context.measure would cut a slow row to 3)."""
    once()
    ctx.measure(method, once)


# -- Qt's format, spoken by tkshm ------------------------------------------------------------
class Held:
    """The writer's handle on each version's segment, kept (as Qt's example keeps it) until
    the next write, and always closed at the end."""

    def __init__(self) -> None:
        self.handles: dict[int, qt.QtBackend] = {}

    def let_go(self, version: int) -> None:
        handle = self.handles.pop(version, None)
        if handle is not None:
            handle.close()  # detach: we are the last holder, so this removes the segment

    def publish(self, image: Image.Image, key: str, version: Version) -> None:
        self.let_go(version)
        self.handles[version] = qt.publish(image, key, version)

    def copy_in(self, data: bytes, key: str, version: Version) -> None:
        """``qt.publish`` without the encode: create, lock, copy in, unlock."""
        self.let_go(version)
        handle = self.handles[version] = qt.backend(key, version)
        handle.create(len(data))
        with handle.lock(ipc.DEFAULT_TIMEOUT):
            handle.write(data)

    def close(self) -> None:
        for version in list(self.handles):
            self.let_go(version)


def bench_qt_protocol(fast: Context, slow: Context, keys: dict[Version, str]) -> int:
    """The Qt rows of tkshm.qt, whole and in parts; returns the payload's size."""
    image, held = slow.image, Held()
    try:
        for version, key in keys.items():

            def publish_once(key: str = key, version: Version = version) -> None:
                held.publish(image, key, version)

            slow_measure(slow, PROTOCOL[version], slow.pair(publish_once, "read_qt_protocol", key, version))
        data = payload.encode(image)

        def encode_once() -> tuple[float, None, float]:
            started = TIMER()
            payload.encode(image)
            took = TIMER() - started
            return took, None, took

        slow_measure(slow, ENCODE, encode_once)
        for version, key in keys.items():

            def copy_in(key: str = key, version: Version = version) -> None:
                held.copy_in(data, key, version)

            fast.measure(COPY[version], fast.pair(copy_in, "read_qt_protocol_bytes", key, version))

        def decode_once() -> tuple[None, float, float]:
            took = slow.reader.read("read_qt_protocol_decode")  # the bytes the reader copied last
            return None, took, took

        slow_measure(slow, DECODE, decode_once)
        return len(data)
    finally:
        held.close()


def bench_tkshm_fresh(ctx: Context, key: str) -> None:
    """tkshm's raw format as Qt's example uses a segment: the writer detaches the old one
    (the last holder: it goes), creates a new one and stays attached."""
    kept: list[ipc.Segment] = []

    def publish_once() -> None:
        if kept:
            kept.pop().close()
        kept.append(ipc.publish(ctx.image, key))

    try:
        ctx.measure(FRESH, ctx.pair(publish_once, "read_tkshm", key))
    finally:
        if kept:
            kept.pop().close()


# -- PySide6's own QSharedMemory -------------------------------------------------------------
def bench_pyside(ctx: Context, key: str, version: Version) -> int:
    """Qt's example's two slots through PySide6 (``stills.bench_qt``), with a Qt 5 (legacy)
    or Qt 6 (native) key; returns the payload's size."""
    from PySide6.QtCore import QNativeIpcKey, QSharedMemory
    from PySide6.QtGui import QImage

    native = version == 6
    width, height = ctx.image.size
    # Made once, outside the timing, in the format a QImage loaded from a JPEG has.
    qimage = QImage(ctx.pixels, width, height, width * 4, QImage.Format.Format_RGBA8888)
    qimage = qimage.convertToFormat(QImage.Format.Format_RGB32)
    memory = QSharedMemory(QNativeIpcKey(key)) if native else QSharedMemory(key)
    sizes: list[int] = []

    def write() -> None:
        if memory.isAttached():
            memory.detach()
            if native:  # Qt 6 leaves /dev/shm/K on Linux, and its next create() would fail
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"/dev/shm/{key}")
        sizes[:] = [qt_example_publish(memory, qimage)]

    try:
        slow_measure(ctx, PYSIDE[version], ctx.pair(write, "read_qt", key, native))
    finally:
        if memory.isAttached():
            memory.detach()
    return sizes[0] if sizes else 0


# -- clean-up --------------------------------------------------------------------------------
def clean_up(keys: list[tuple[str, Version]], qt_tmp: str) -> list[str]:
    """Repair and remove what any Qt row left; return what is still there afterwards."""
    for key, version in keys:
        with contextlib.suppress(Exception):  # an error here must not hide the run's
            qt.clean(key, version, timeout=0.2)
        if version == 6:  # Qt 6 (PySide6) leaves /dev/shm/K; a killed run, its semaphore
            for path in (f"/dev/shm/{key}", f"/dev/shm/sem.{key}"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
    left = [os.path.join(qt_tmp, name) for name in os.listdir(qt_tmp) if name.startswith("qipc_")]
    for key, version in keys:
        if version == 6:
            left += [p for p in (f"/dev/shm/{key}", f"/dev/shm/sem.{key}") if os.path.lexists(p)]
    return left


@contextlib.contextmanager
def private_dirs(work: str) -> Iterator[str]:
    """Qt's key files (TMPDIR) and tkshm's segments (TKSHM_DIR) in the run's own directory,
    for this process and the reader it starts; yields the Qt one."""
    saved = {name: os.environ.get(name) for name in ("TMPDIR", "TKSHM_DIR")}
    qt_tmp, segments = os.path.join(work, "qt-tmp"), os.path.join(work, "tkshm")
    os.mkdir(qt_tmp, 0o700)
    os.environ.update(TMPDIR=qt_tmp, TKSHM_DIR=segments)
    try:
        yield qt_tmp
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# -- report ----------------------------------------------------------------------------------
def format_table(results: Results) -> str:
    floor, raw = results.get(FLOOR, "round trip", LABEL), results.get(TKSHM, "round trip", LABEL)
    assert floor is not None and raw is not None
    lines = [
        f"{'method':<36} {'write ms':>9} {'read ms':>9} {'round trip':>11} {'IQR':>8} "
        f"{'min-max ms':>17} {'n':>3} {'x floor':>8} {'x tkshm':>8}"
    ]
    for figure in results.figures:
        if figure.op != "round trip":
            continue
        write = results.median(figure.method, "write", LABEL)
        read = results.median(figure.method, "read", LABEL)
        spread = f"{min(figure.samples) * 1e3:.1f}-{max(figure.samples) * 1e3:.1f}"
        lines.append(
            f"{figure.method:<36} {_ms(write):>9} {_ms(read):>9} {_ms(figure.median):>11} "
            f"{_ms(figure.iqr):>8} {spread:>17} {len(figure.samples):>3} "
            f"{figure.median / floor.median:8.2f} {figure.median / raw.median:8.2f}"
        )
    lines.append(
        f"x floor: round trip / {FLOOR}'s; x tkshm: round trip / {TKSHM}'s (tkshm's raw format); "
        "IQR and min-max: of the round trip"
    )
    return "\n".join(lines)


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1e3:,.1f}" if seconds < 10 else f"{seconds * 1e3:,.0f}"


def format_parts(results: Results, keys: dict[Version, str]) -> str:
    """Each tkshm.qt round trip as the sum of its parts, and what share the PNG takes."""

    def median(method: str, op: str) -> float:
        value = results.median(method, op, LABEL)
        assert value is not None, method
        return value

    raw = median(TKSHM, "round trip")
    lines = ["", "Qt's round trip by tkshm.qt, in parts (medians, ms):"]
    lines.append(f"{'':<36}" + "".join(f"{f'Qt {v}':>12}" for v in keys))
    encode, decode = median(ENCODE, "write"), median(DECODE, "read")
    rows: list[tuple[str, Callable[[Version], float]]] = [
        ("PNG encode (writer)", lambda v: encode),
        ("create, lock, copy in (writer)", lambda v: median(COPY[v], "write")),
        ("attach, lock, copy out (reader)", lambda v: median(COPY[v], "read")),
        ("PNG decode to RGBA (reader)", lambda v: decode),
        ("sum of the parts", lambda v: encode + decode + median(COPY[v], "round trip")),
        ("the whole, measured (publish + read)", lambda v: median(PROTOCOL[v], "round trip")),
    ]
    for name, value in rows:
        lines.append(f"{name:<36}" + "".join(f"{_ms(value(v)):>12}" for v in keys))
    for v in keys:
        whole = median(PROTOCOL[v], "round trip")
        copies = median(COPY[v], "round trip")
        lines.append(
            f"Qt {v}: the PNG (encode + decode) is {(encode + decode) / whole:.0%} of the round trip; "
            f"the copies {copies * 1e3:.1f} ms; the whole {whole / raw:,.0f}x tkshm's raw round trip"
        )
    return "\n".join(lines)


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # SIGTERM: clean up as after Ctrl+C


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    what = f"timed repeats of the PNG rows (default 7; the copies {FAST_TIMES}x as many)"
    parser.add_argument("--repeat", type=int, default=7, help=what)
    parser.add_argument("--quick", action="store_true", help="3 repeats, no PySide6 rows: about 35 s")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # inherited by the reader process
    signal.signal(signal.SIGTERM, _terminate)
    repeat = 3 if args.quick else args.repeat
    with_pyside = qt_available() and not args.quick
    image, described = photo()
    pixels = image.tobytes()
    versions = [
        f"Python {platform.python_version()}",
        f"Pillow {Image.__version__}",
    ]
    if with_pyside:
        import PySide6

        versions.append(f"PySide6 {PySide6.__version__}")
    print(
        f"tkshm Qt-protocol benchmark {time.strftime('%Y-%m-%d %H:%M')}: {', '.join(versions)}, "
        f"{os.cpu_count()} CPUs, {platform.platform()}"
    )
    print(f"image: {described} to {image.width}x{image.height} RGBA, {len(pixels) / MB:.1f} MB")
    print("  (an upscale is smoother than a camera's 4K photo: its PNG is smaller and quicker to make)")
    print(f"load average at the start: {_load()}")
    print(f"repeats: {repeat} for the PNG rows (after one warm-up), {repeat * FAST_TIMES} for the copies")
    results, tag = Results(), f"tkshmQtBench{os.getpid()}"
    keys: dict[Version, str] = {5: f"{tag}v5", 6: f"{tag}v6"}
    pyside_keys: dict[Version, str] = {5: f"{tag}PySide5", 6: f"{tag}PySide6"}
    every_key = [(key, version) for chosen in (keys, pyside_keys) for version, key in chosen.items()]
    sizes: dict[str, int] = {}
    with workdir() as work, private_dirs(work) as qt_tmp:
        reader = ReaderProcess()
        try:
            fast = Context(LABEL, image, pixels, work, reader, results, repeat * FAST_TIMES, 1)
            slow = Context(LABEL, image, pixels, work, reader, results, repeat, 0)
            bench_floors(fast)
            bench_tkshm(fast, f"{tag}raw")
            bench_tkshm_fresh(fast, f"{tag}fresh")
            sizes["tkshm.qt"] = bench_qt_protocol(fast, slow, keys)
            if with_pyside:
                for version, key in pyside_keys.items():
                    sizes[f"PySide6 Qt {version}"] = bench_pyside(slow, key, version)
        finally:
            reader.close()
            left = clean_up(every_key, qt_tmp)
    print()
    print(f"== {LABEL}: {image.width}x{image.height}, write here + read in another process ==")
    print(format_table(results))
    print(format_parts(results, keys))
    print()
    print(
        "Qt's payload (marker + PNG): "
        + ", ".join(f"{name} {size / MB:.2f} MB" for name, size in sizes.items())
        + f", against {len(pixels) / MB:.1f} MB of raw RGBA"
    )
    if not with_pyside:
        print("PySide6 rows: skipped" + (" (--quick)" if args.quick else ": PySide6 is not installed"))
    print(f"load average at the end: {_load()}")
    print(f"left behind: {', '.join(left) if left else 'nothing'}")
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
