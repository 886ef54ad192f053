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
import json
import os
import platform
import sys
import time
from dataclasses import asdict

from PIL import Image

from common import SIZES, ReaderProcess, Results, make_image, note, parse_sizes, workdir
from display import bench_display
from memory import bench_memory
from report import draw_chart, format_display, format_linearity, format_memory, format_table, format_targets
from stills import (
    Context,
    bench_floors,
    bench_pipe,
    bench_png,
    bench_qt,
    bench_shared_memory,
    bench_tkshm,
    qt_available,
)


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
        note(results, "Qt: skipped: PySide6 is not installed (pip install -e '.[bench]')")
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
    for text in results.notes:
        print(f"note: {text}")
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
