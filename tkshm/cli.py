"""The ``tkshm`` command: the window, or scripted access to the same segments.

Every subcommand is a few lines over :mod:`tkshm.ipc`. Errors become one line on stderr
and a non-zero exit status; the window (and tkinter) is imported only when one is opened,
so everything else works on a Python without Tk.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from types import FrameType

from . import __version__, ipc, trace
from .errors import TkshmError
from .header import BYTES_PER_PIXEL
from .images import load_image

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (plus the usual hint), never the whole usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see '{self.prog} --help')\n")


def _add_common(parser: argparse.ArgumentParser, default: object = argparse.SUPPRESS) -> None:
    # Subcommands use SUPPRESS so that "tkshm --key k put x" and "tkshm put --key k x" agree.
    parser.add_argument(
        "--key", default=default,
        help=f"name of the shared memory segment (default: {ipc.DEFAULT_KEY!r})",
    )  # fmt: skip
    parser.add_argument(
        "--trace", action="store_true", default=argparse.SUPPRESS if default is argparse.SUPPRESS else False,
        help="print each IPC step (attach, lock, copy, unlock, detach) to stderr as it happens",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tkshm",
        description="Share one image between programs through named shared memory. "
        "Without a command, open the window.",
    )
    parser.add_argument("--version", action="version", version=f"tkshm {__version__}")
    _add_common(parser, None)
    parser.add_argument("--lang", help="language of the window: en or zh_CN (default: system)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        _add_common(sub)
        return sub

    put = command("put", "Publish an image and stay attached until interrupted (Ctrl+C).")
    put.add_argument("image", help="image file to publish")
    get = command("get", "Copy the published image out and save it.")
    get.add_argument("-o", "--output", required=True, help="file to write; format from its extension")
    for name, text in (
        ("info", "Show the header of a segment."),
        ("list", "List your segments, in use or orphaned."),
    ):
        sub = command(name, text)
        sub.add_argument("--json", action="store_true", help="print JSON instead of text")
    command("clean", "Remove orphaned segments (those no process is attached to).")
    window = command("gui", "Open the window (the default when no command is given).")
    window.add_argument("--lang", default=argparse.SUPPRESS, help="language of the window: en or zh_CN")
    window.add_argument("--geometry", help="window size and place, as in Tk: WxH+X+Y or +X+Y")
    window.add_argument("--suggest", metavar="IMAGE", help="the file the Load dialog offers first")
    window.add_argument(
        "--zoom", type=float, default=1.0, help="scale every font, e.g. 1.5 (Ctrl+plus/minus/0)"
    )
    window.add_argument(
        "--role", choices=("publish", "display"), help="say what this window is for (the demo's)"
    )
    text = (
        "For a classroom: open two windows side by side on a fresh key, each showing the IPC trace, "
        "with a sample image ready to load."
    )
    demo = commands.add_parser("demo", help=text, description=text)
    demo.add_argument("--key", default=argparse.SUPPRESS, help="key to share (default: a fresh demo-xxxxxx)")
    demo.add_argument("--trace", action="store_true", default=argparse.SUPPRESS, help="always on in the demo")
    demo.add_argument("--lang", default=argparse.SUPPRESS, help="language of the windows: en or zh_CN")
    demo.add_argument(
        "--zoom", type=float, default=1.0, help="scale every font, e.g. 1.5, for the back of the room"
    )
    commands.add_parser(
        "install-desktop", help="Add the window to your desktop menu (an XDG .desktop entry and icon)."
    )
    commands.add_parser("uninstall-desktop", help="Remove the desktop menu entry and icon again.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tkshm`` console script."""
    args = build_parser().parse_args(argv)
    if args.key is None and args.command != "demo":  # the demo makes a fresh key of its own
        args.key = ipc.DEFAULT_KEY
    handler = _COMMANDS.get(args.command or "gui")
    assert handler is not None
    printer = trace.to_stream(sys.stderr) if args.trace else None
    try:
        return handler(args)
    except TkshmError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        if printer is not None:
            trace.stop(printer)


def gui_main() -> int:
    """Entry point of the ``tkshm-gui`` script (no console window on Windows)."""
    return main(["gui", *sys.argv[1:]])


def _printable(text: str) -> str:
    """Escape control characters, so that a file name or key can never break a line in two."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _fail(message: str) -> int:
    print(f"tkshm: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_ERROR


def _put(args: argparse.Namespace) -> int:
    loaded = load_image(args.image)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, request_stop)
    width, height = loaded.image.size
    with ipc.Segment.create(args.key, width * height * BYTES_PER_PIXEL) as segment:
        info = segment.write_image(loaded.image)
        frames = f", first of {loaded.frame_count} frames" if loaded.is_animated else ""
        print(
            f"Published {_printable(args.image)} ({info.width}x{info.height}{frames}) under key "
            f"{_printable(repr(args.key))}, generation {info.generation}. Press Ctrl+C to detach.",
            flush=True,
        )
        while not stop.wait(0.5):  # a timed wait lets signal handlers run promptly
            pass
    return 0


def _get(args: argparse.Namespace) -> int:
    image = ipc.read_image(key=args.key)
    try:
        image.save(args.output)
    except (ValueError, KeyError) as exc:
        return _fail(f"Cannot save {args.output}: unknown or unsupported file extension ({exc}).")
    except OSError as exc:
        if exc.errno is None:  # Pillow: the format cannot hold RGBA (JPEG): drop alpha
            try:
                image.convert("RGB").save(args.output)
            except OSError as inner:
                return _fail(f"Cannot save {args.output}: {inner}.")
        else:
            return _fail(f"Cannot save {args.output}: {exc.strerror}.")
    print(f"Saved {image.width}x{image.height} image to {args.output}.")
    return 0


def _when(ns: int) -> str:
    if not ns:
        return "-"
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).astimezone().isoformat(timespec="milliseconds")


def _describe(info: ipc.SegmentInfo) -> str:
    rows = [
        ("key", _printable(info.key) if info.key is not None else "?"),
        ("path", info.path),
        ("state", info.state),
        ("in use", "yes" if info.in_use else "no (orphaned)"),
        ("generation", str(info.generation)),
        ("image", f"{info.width}x{info.height} RGBA, {info.payload_bytes:,} bytes"),
        ("capacity", f"{info.capacity:,} bytes"),
        ("writer pid", str(info.writer_pid)),
        ("written", _when(info.write_time_ns)),
    ]
    return "\n".join(f"{label:<11} {value}" for label, value in rows)


def _info(args: argparse.Namespace) -> int:
    info = ipc.info(key=args.key)
    print(json.dumps(info.as_dict(), indent=2) if args.json else _describe(info))
    return 0


def _list(args: argparse.Namespace) -> int:
    segments = ipc.list_segments()
    if args.json:
        print(json.dumps([s.as_dict() for s in segments], indent=2))
    elif not segments:
        print(f"No segments in {ipc.segment_directory()}.")
    else:
        for s in segments:
            used = "in use" if s.in_use else "orphaned"
            print(
                f"{_printable(s.key or s.name):<24} {s.state:<8} {used:<8} "
                f"{s.width}x{s.height}  gen {s.generation}  {s.path}"
            )
    return 0


def _clean(args: argparse.Namespace) -> int:
    removed = ipc.clean()
    for path in removed:
        print(f"Removed {path}")
    print(f"Removed {len(removed)} orphaned file(s).")
    return 0


def _windowed(open_windows: Callable[[], int]) -> int:
    """Run a command that opens windows: without tkinter or without a display, say so in
    one line instead of a traceback."""
    try:
        import tkinter

        return open_windows()
    except ImportError as exc:
        return _fail(f"The window needs tkinter, which this Python lacks ({exc}); install python3-tk.")
    except tkinter.TclError as exc:
        return _fail(f"Cannot open a window: {exc}.")


def _gui(args: argparse.Namespace) -> int:
    def open_window() -> int:
        from .window.main import run

        return run(
            key=args.key, lang=args.lang, geometry=getattr(args, "geometry", None),
            show_trace=args.trace, suggest=getattr(args, "suggest", None),
            zoom=getattr(args, "zoom", 1.0), role=getattr(args, "role", None),
        )  # fmt: skip

    return _windowed(open_window)


def _demo(args: argparse.Namespace) -> int:
    def open_windows() -> int:
        from .demo import run_demo

        return run_demo(key=args.key, lang=args.lang, zoom=args.zoom)

    return _windowed(open_windows)


def _desktop(args: argparse.Namespace) -> int:
    from . import desktop

    installing = args.command == "install-desktop"
    try:
        paths = desktop.install() if installing else desktop.uninstall()
    except OSError as exc:
        verb = "install" if installing else "remove"
        return _fail(f"Cannot {verb} the desktop entry: {exc.strerror or exc} ({exc.filename}).")
    for path in paths:
        print(f"{'Installed' if installing else 'Removed'} {path}")
    if not paths:
        print("The desktop entry was not installed; nothing to remove.")
    return 0


_COMMANDS = {
    "demo": _demo, "put": _put, "get": _get, "info": _info, "list": _list, "clean": _clean, "gui": _gui,
    "install-desktop": _desktop, "uninstall-desktop": _desktop,
}  # fmt: skip
