"""The text report (table, per-byte growth, memory, window, targets) and the chart."""

from __future__ import annotations

import os
import platform
import statistics
import time

from common import (
    FLOOR,
    FLOOR_MAPPED,
    MB,
    PIPE,
    PNG,
    QT,
    SHM_PICKLE,
    SHM_RAW,
    SIZES,
    TKSHM,
    TKSHM_KEPT,
    Figure,
    Results,
    note,
)
from display import DISPLAY_SIZE, WINDOW_GEOMETRY


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


def _section(heading: list[str], rows: list[str]) -> str:
    """A part of the report below the table: a blank line, its heading, a line a row; nothing
    at all without rows."""
    return "\n".join(["", *heading, *rows]) if rows else ""


def format_memory(results: Results) -> str:
    heading = [
        "peak memory (VmHWM) of the command line, against `python -c 'import tkshm.ipc, PIL.Image'`:",
        f"  {'command':<10} {'size':>5} {'image MB':>9} {'baseline MB':>12} {'peak MB':>8} "
        f"{'extra beyond decoded image':>27}",
    ]
    rows = [
        f"  {row['command']:<10} {row['size']:>5} {row['image_mb']:9.1f} {row['baseline_mb']:12.1f} "
        f"{row['peak_mb']:8.1f} {row['extra_images']:20.2f} images"
        for row in results.memory
    ]
    return _section(heading, rows)


def format_display(results: Results) -> str:
    heading = [
        f"display in the window ({DISPLAY_SIZE}, window {WINDOW_GEOMETRY.split('+')[0]}, Xvfb), "
        "button handler -> picture drawn:",
    ]

    def row(name: str, values: list[float]) -> str:
        spread = f"{min(values) * 1e3:.1f}-{max(values) * 1e3:.1f}"
        return f"  {name:<11} median {statistics.median(values) * 1e3:8.1f} ms   min-max {spread:>15} ms"

    return _section(heading, [row(name, values) for name, values in (results.display or {}).items()])


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
        note(results, "chart: skipped: matplotlib is not installed (pip install -e '.[bench]')")
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
