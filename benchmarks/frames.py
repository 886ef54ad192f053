"""Small figures of the live-frames API, each against its floor in the same run.

* **woken**: publish-to-woken latency of ``Segment.wait_for_change`` in another process
  (the header's write time against ``time.time_ns()`` when the reader wakes), p50 and p99,
  for small frames published 200 times a second, and how long such a publish takes;
* **idle**: what a reader waiting on a segment nobody writes costs, per second of waiting:
  CPU time and context switches (``getrusage``; CPU only where there is none, on Windows);
* **into**: a one-shot ``ipc.read_image(key, into=image)`` (attach, lock, copy, detach)
  against the floor: open the segment's file, ``mmap`` it, copy into memory already paged
  in, close (POSIX);
* **view**: opening ``Segment.view()`` against one copy of the frame on a kept handle;
* **writer**: ``write_image`` of 640x480, 1080p and 4K frames, each with ``timeout=0.5``,
  with two readers copying every frame, one reader stopped (SIGSTOP; ``NtSuspendProcess`` on
  Windows) while it holds a frame and one stopped while it holds a ``view()``: failures,
  wall time and the writer's own CPU time per publish (``thread_time``, which leaves out the
  time the kernel kept it waiting for a CPU), against a memcpy.

    python benchmarks/frames.py [--samples 2000] [--idle 5]

Plain script, never part of the tests: it prints, it does not judge.
"""

from __future__ import annotations

import argparse
import mmap
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

from PIL import Image
from tkshm import ipc

SIZES = {"1080p": (1920, 1080), "4K": (3840, 2160)}
WRITER_SIZES = {"640x480": (640, 480), **SIZES}


def _stop(pid: int, stopped: bool) -> None:
    """Stop a process where it is, or let it go on: SIGSTOP and SIGCONT on POSIX,
    ``NtSuspendProcess`` and ``NtResumeProcess`` on Windows."""
    if sys.platform == "win32":
        import ctypes

        kernel32, ntdll = ctypes.WinDLL("kernel32"), ctypes.WinDLL("ntdll")
        kernel32.OpenProcess.restype = ctypes.c_void_p
        handle = ctypes.c_void_p(kernel32.OpenProcess(0x0800, False, pid))  # PROCESS_SUSPEND_RESUME
        (ntdll.NtSuspendProcess if stopped else ntdll.NtResumeProcess)(handle)
        kernel32.CloseHandle(handle)
        return
    import signal

    os.kill(pid, signal.SIGSTOP if stopped else signal.SIGCONT)


def _usage() -> tuple[float, int | None]:
    """CPU seconds and context switches of this process so far (switches: POSIX only)."""
    if sys.platform == "win32":
        return time.process_time(), None
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_nvcsw + usage.ru_nivcsw


def _reader(key: str, count: int, idle_s: float, out: Connection) -> None:
    with ipc.Segment.attach(key) as segment:
        generation = segment.peek_generation()
        out.send("ready")
        cpu0, switches0 = _usage()
        started = time.perf_counter()
        segment.wait_for_change(generation, timeout=idle_s)  # nobody writes: pure waiting
        waited = time.perf_counter() - started
        cpu1, switches1 = _usage()
        out.send((waited, cpu1 - cpu0, None if switches0 is None else switches1 - (switches0 or 0)))
        latencies = []
        while len(latencies) < count:
            generation = segment.wait_for_change(generation, timeout=10.0)
            woken = time.time_ns()
            with segment.lock(exclusive=False):
                info = segment.info()
            latencies.append((woken - info.write_time_ns) / 1e6)
        out.send(latencies)


def bench_wake(samples: int, idle_s: float) -> None:
    key = f"bench-frames-{os.getpid()}"
    frame = Image.new("RGBA", (64, 48), "teal")
    with ipc.publish(frame, key=key) as writer:
        parent, child = mp.Pipe()
        reader = mp.get_context("spawn").Process(target=_reader, args=(key, samples, idle_s, child))
        reader.start()
        assert parent.recv() == "ready"
        waited, cpu, switches = parent.recv()
        per_s = f"{cpu / waited * 1000:.2f} ms CPU"
        if switches is not None:
            per_s += f", {switches / waited:.1f} context switches"
        print(f"idle waiter: {per_s} per second of waiting ({waited:.1f} s)")
        publishes = []
        while not parent.poll():
            started = time.perf_counter()
            writer.write_image(frame)
            publishes.append(time.perf_counter() - started)
            time.sleep(0.005)  # 200 frames a second: pacing, the reader catches every one
        latencies = sorted(parent.recv())
        reader.join()
    p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]
    how = "woken by a named event" if sys.platform == "win32" else "woken by a datagram"
    print(f"publish to reader woken ({how}): p50 {p50:.3f} ms, p99 {p99:.3f} ms over {len(latencies)} frames")
    publish_us = statistics.median(publishes) * 1e6
    print(f"publish of a 64x48 frame with one reader waiting (header, slots, wake-up): {publish_us:.0f} us")


def _copying_reader(key: str, out: Connection) -> None:
    with ipc.Segment.attach(key) as segment:
        generation = segment.peek_generation()
        target: Image.Image | None = None
        out.send("ready")
        while not out.poll():
            generation = segment.wait_for_change(generation, timeout=0.5)
            try:
                target = segment.read_image(into=target) if target is not None else segment.read_image()
            except ipc.TkshmError:
                continue


def _holder(key: str, view: bool, out: Connection) -> None:
    with ipc.Segment.attach(key) as segment, segment.view() if view else segment.lock(exclusive=False):
        out.send("holding")
        out.recv()  # stopped here by the parent; told to go on after SIGCONT


def bench_writer(label: str, size: tuple[int, int], frames: int) -> None:
    key = f"bench-writer-{label}-{os.getpid()}"
    nbytes = size[0] * size[1] * 4
    images = [Image.new("RGBA", size, colour) for colour in ("red", "green", "blue")]
    spawn = mp.get_context("spawn")
    with ipc.publish(images[0], key=key) as writer:
        pipes, procs = [], []
        for target, args in [
            (_copying_reader, ()),
            (_copying_reader, ()),
            (_holder, (False,)),
            (_holder, (True,)),
        ]:
            parent, child = mp.Pipe()
            proc = spawn.Process(target=target, args=(key, *args, child))
            proc.start()
            parent.recv()
            pipes.append(parent)
            procs.append(proc)
            writer.write_image(images[len(procs) % 3])  # each holder holds a frame of its own
        for proc in procs[2:]:
            _stop(proc.pid, True)
        walls, cpus, failures = [], [], 0
        try:
            for index in range(30):  # untimed: the first frames add slots (the file grows)
                writer.write_image(images[index % 3])
            for index in range(frames):
                wall, cpu = time.perf_counter(), time.thread_time()
                try:
                    writer.write_image(images[index % 3], timeout=0.5)
                except ipc.LockTimeoutError:
                    failures += 1
                cpus.append(time.thread_time() - cpu)
                walls.append(time.perf_counter() - wall)
        finally:
            for proc in procs[2:]:
                _stop(proc.pid, False)
            for pipe in pipes:
                pipe.send("stop")
            for proc in procs:
                proc.join(10)
    # One copy of a frame as the writer makes it: from one of three images into one of four
    # buffers in turn (the ring's slots), so that it is not a copy between two cached buffers.
    sources = [bytearray(nbytes) for _ in range(3)]
    targets = [bytearray(nbytes) for _ in range(4)]
    turn = iter(range(10**9))

    def one_copy() -> None:
        index = next(turn)
        targets[index % 4][:] = sources[index % 3]

    copy = _median_ms(one_copy, repeat=60)
    walls.sort()
    cpus.sort()

    def p(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, int(len(values) * q))] * 1000

    print(
        f"{label} writer, 2 readers copying, 1 stopped holding a frame, 1 stopped in a view: "
        f"{failures} of {frames} publishes failed; "
        f"own time p50 {p(cpus, 0.5):.2f} ms, p99 {p(cpus, 0.99):.2f} ms (2 copies + 1 ms = "
        f"{2 * copy + 1:.2f} ms, one copy {copy:.2f} ms); "
        f"wall p50 {p(walls, 0.5):.2f} ms, p99 {p(walls, 0.99):.2f} ms, "
        f"longest {walls[-1] * 1000:.1f} ms over {frames} frames"
    )


def _median_ms(run: Callable[[], object], repeat: int = 25) -> float:
    times = []
    for _ in range(repeat + 2):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times[2:]) * 1000


def bench_copies(label: str, size: tuple[int, int]) -> None:
    key = f"bench-frames-{label}-{os.getpid()}"
    nbytes = size[0] * size[1] * 4
    with ipc.publish(Image.new("RGBA", size, "orange"), key=key) as segment:
        target = Image.new("RGBA", size)
        into = _median_ms(lambda: ipc.read_image(key=key, into=target))
        line = f"{label}: read_image(into=) one-shot {into:.2f} ms"
        if sys.platform != "win32":
            buffer = bytearray(nbytes)

            def floor() -> None:
                fd = os.open(segment.path, os.O_RDONLY)
                with mmap.mmap(fd, 0, prot=mmap.PROT_READ) as mapping:
                    buffer[:] = memoryview(mapping)[4096 : 4096 + nbytes]
                os.close(fd)

            floor_ms = _median_ms(floor)
            line += f", floor (open+mmap+copy+close) {floor_ms:.2f} ms: {into / floor_ms:.2f}x floor"
        copy = _median_ms(lambda: segment.read_image(into=target))

        def open_view() -> None:
            with segment.view():
                pass

        view = _median_ms(open_view)
        line += f"; view() {view * 1000:.0f} us against one copy {copy:.2f} ms ({view / copy:.1%} of it)"
        print(line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--idle", type=float, default=5.0)
    parser.add_argument("--frames", type=int, default=300)
    args = parser.parse_args()
    cpu = platform.processor() or platform.machine()
    when = time.strftime("%Y-%m-%d %H:%M")
    print(f"{when}, {platform.system()}, {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}")
    bench_wake(args.samples, args.idle)
    for label, size in SIZES.items():
        bench_copies(label, size)
    for label, size in WRITER_SIZES.items():
        bench_writer(label, size, args.frames)
    return 0


if __name__ == "__main__":
    sys.exit(main())
