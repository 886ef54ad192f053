"""NumPy in and out of a segment, each call against its floor in the same run.

* **write_array**: a 4K RGBA array into a segment, through a kept handle and one-shot
  (attach, write, detach), against the floor: open the segment's file, ``mmap`` it, one
  NumPy copy into the mapping, close (POSIX; on Windows the floor is a copy into a kept
  mapping);
* **array()**: opening and closing the block (lease, wrap, release) against one 4K copy;
* **read_array(into=)**: one copy out into a kept array, through a kept handle and one-shot,
  against the floor: open, ``mmap``, one NumPy copy out of the mapping, close;
* beside them, the same array through ``multiprocessing.shared_memory`` (a NumPy array over
  ``shm.buf``, copied in and out: what a script would write by hand) and ``read_array()``
  into a new array (fresh memory, paged in by the copy).

Rounds interleave the methods (one of each per round) so that a busy moment hits them all
alike; each figure is the median of the rounds.

    python benchmarks/arrays.py [--rounds 40] [--size 3840x2160]

Plain script, never part of the tests: it prints, it does not judge.
"""

from __future__ import annotations

import argparse
import mmap
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from multiprocessing import shared_memory

import numpy as np
from tkshm import ipc
from tkshm.header import HEADER_SIZE


def _sized(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(width), int(height)


def _rounds(methods: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median milliseconds of each method, the methods taking turns within every round."""
    times: dict[str, list[float]] = {name: [] for name in methods}
    for index in range(rounds + 2):
        for name, run in methods.items():
            started = time.perf_counter()
            run()
            if index >= 2:  # two rounds to warm up: pages touched, caches filled
                times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) * 1000 for name, values in times.items()}


def _file_floor(
    path: str, nbytes: int, copy: Callable[[np.ndarray], None], write: bool
) -> Callable[[], None]:
    """Open the segment's file, map it, one copy (in or out), close: what any call must do."""

    def floor() -> None:
        fd = os.open(path, os.O_RDWR if write else os.O_RDONLY)
        try:
            prot = mmap.PROT_READ | (mmap.PROT_WRITE if write else 0)
            with mmap.mmap(fd, HEADER_SIZE + nbytes, prot=prot) as mapping:
                pixels = np.frombuffer(mapping, np.uint8, nbytes, HEADER_SIZE)
                copy(pixels)
                del pixels
        finally:
            os.close(fd)

    return floor


def _measure(
    segment: ipc.Segment,
    reader: ipc.Segment,
    source: np.ndarray,
    kept: np.ndarray,
    block: shared_memory.SharedMemory,
    rounds: int,
) -> dict[str, float]:
    """Every copy's median, in interleaved rounds (the arrays over the mappings die with it)."""
    nbytes = source.nbytes
    # The floor of a kept handle: a copy into (out of) slot 0 of a mapping kept open.
    mapped = np.frombuffer(segment._mapping(), np.uint8, nbytes, HEADER_SIZE)
    if sys.platform != "win32":
        write_floor = _file_floor(
            segment.path, nbytes, lambda pixels: pixels.__setitem__(..., source.ravel()), True
        )
        read_floor = _file_floor(
            segment.path, nbytes, lambda pixels: np.copyto(kept.reshape(-1), pixels), False
        )
    else:  # no file to open: the kept floor is the floor
        write_floor = lambda: mapped.__setitem__(..., source.ravel())  # noqa: E731
        read_floor = lambda: np.copyto(kept.reshape(-1), mapped)  # noqa: E731

    def shm_write() -> None:
        np.copyto(np.ndarray(source.shape, np.uint8, block.buf), source)

    def shm_read() -> None:
        np.copyto(kept, np.ndarray(source.shape, np.uint8, block.buf))

    def one_shot_write() -> None:
        with ipc.Segment.attach(segment.key) as other:
            other.write_array(source)

    return _rounds(
        {
            "copy": lambda: np.copyto(kept, source),
            "write floor": write_floor,
            "write floor, kept": lambda: mapped.__setitem__(..., source.ravel()),
            "write_array, kept handle": lambda: segment.write_array(source),
            "write_array, one-shot": one_shot_write,
            "shared_memory write": shm_write,
            "read floor": read_floor,
            "read floor, kept": lambda: np.copyto(kept.reshape(-1), mapped),
            "read_array(into=), kept handle": lambda: reader.read_array(into=kept),
            "read_array(into=), one-shot": lambda: ipc.read_array(key=segment.key, into=kept),
            "read_array(), new array": reader.read_array,
            "shared_memory read": shm_read,
        },
        rounds,
    )


def _array_block(segment: ipc.Segment, reader: ipc.Segment, source: np.ndarray, after_write: bool) -> float:
    """Median milliseconds of an empty ``with reader.array():`` block: the lease, the wrap and
    the release. After a write the reader first finds the new frame in another slot."""
    times = []
    for _ in range(202):
        if after_write:
            segment.write_array(source)
        started = time.perf_counter()
        with reader.array():
            pass
        times.append(time.perf_counter() - started)
    return statistics.median(times[2:]) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--size", type=_sized, default=(3840, 2160), help="WIDTHxHEIGHT (default 3840x2160)")
    args = parser.parse_args()
    width, height = args.size
    nbytes = width * height * 4
    cpu = platform.processor() or platform.machine()
    when = time.strftime("%Y-%m-%d %H:%M")
    print(
        f"{when}, {platform.system()}, {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, "
        f"NumPy {np.__version__}; {width}x{height} RGBA ({nbytes / 1e6:.1f} MB), "
        f"median of {args.rounds} rounds"
    )
    rng = np.random.default_rng(5)
    source = rng.integers(0, 256, (height, width, 4), np.uint8)
    kept = np.empty_like(source)
    key = f"bench-arrays-{os.getpid()}"
    block = shared_memory.SharedMemory(create=True, size=nbytes)
    try:
        with ipc.publish_array(source, key=key) as segment, ipc.Segment.attach(key) as reader:
            figures = _measure(segment, reader, source, kept, block, args.rounds)
            blocks = [_array_block(segment, reader, source, after_write) for after_write in (False, True)]
    finally:
        block.close()
        block.unlink()
    floor_name = "open+mmap+copy+close" if sys.platform != "win32" else "a copy into a kept mapping"
    copy = figures["copy"]
    print(f"one NumPy copy, process memory to process memory: {copy:.2f} ms ({nbytes / copy / 1e6:.1f} GB/s)")
    print(f"write floor ({floor_name}): {figures['write floor']:.2f} ms")
    kept_ = figures["write floor, kept"]
    print(f"  write floor, mapping kept open (a copy into slot 0): {kept_:.2f} ms")
    for name in ("write_array, kept handle", "write_array, one-shot", "shared_memory write"):
        print(
            f"  {name}: {figures[name]:.2f} ms = {figures[name] / figures['write floor']:.2f}x the floor, "
            f"{figures[name] / kept_:.2f}x the kept floor"
        )
    print(f"read floor ({floor_name.replace('into', 'out of')}): {figures['read floor']:.2f} ms")
    kept_ = figures["read floor, kept"]
    print(f"  read floor, mapping kept open (a copy out of slot 0): {kept_:.2f} ms")
    reads = ("read_array(into=), kept handle", "read_array(into=), one-shot", "read_array(), new array")
    for name in (*reads, "shared_memory read"):
        print(
            f"  {name}: {figures[name]:.2f} ms = {figures[name] / figures['read floor']:.2f}x the floor, "
            f"{figures[name] / kept_:.2f}x the kept floor"
        )
    for block_ms, when_ in zip(blocks, ("again and again", "after each write_array"), strict=True):
        print(
            f"array() block opened and closed {when_}: {block_ms * 1000:.0f} us = "
            f"{block_ms / copy:.1%} of one copy"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
