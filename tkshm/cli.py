"""The ``tkshm`` command: the window, or scripted access to the same segments.

Every subcommand is a few lines over :mod:`tkshm.ipc`. Errors become one line on stderr
and a non-zero exit status; the window (and tkinter) is imported only when one is opened,
so everything else works on a Python without Tk.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import os
import shlex
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from typing import Any, Final

from PIL import Image

from . import __version__, figures, ipc, qt, stream, trace, video, watching
from . import record as recording
from ._signals import stop_requests
from .errors import ImageError, NotAnImageError, SegmentNotFoundError, TkshmError
from .header import BYTES_PER_PIXEL
from .images import LoadedImage, load_image

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
# The languages of the window: English (the source language) and each catalogue shipped in
# tkshm/locale. The window module is not imported to find them: it needs tkinter.
LOCALE_DIR: Final = os.path.join(os.path.dirname(os.path.abspath(__file__)), "locale")
_LANGUAGE_ALIASES: Final = {"zh": "zh_CN", "zh_cn": "zh_CN", "zh_hans": "zh_CN"}
# Which commands use which of the options every parser knows; any other use is refused.
_USES_KEY: Final = frozenset({"put", "get", "info", "list", "gui", "demo", "play", "watch", "record"})
_USES_TRACE: Final = frozenset({"put", "get", "info", "list", "clean", "gui", "play", "watch", "record"})
_USES_LANG: Final = frozenset({"gui", "demo"})
# Formats whose writer silently changes the size: ICO keeps at most 256x256 (Pillow scales
# a bigger image down), ICNS resizes to fixed squares. ICO is written at the image's own
# size when it fits; ICNS never.
_ICO_MAX: Final = 256
_RESIZING_FORMATS: Final = frozenset({"ICNS"})
_PATTERN_SIZE: Final = (1920, 1080)
_PATTERN_FPS: Final = 60.0
# The commands whose messages start with their own name (tkshm play: ...): they run for a
# while next to others (the demo's player, a watch), so a line says which one spoke.
_OWN_PREFIX: Final = frozenset({"play", "watch", "record"})


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (plus the usual hint), never the whole usage.

    ``commands`` holds the subcommands' parsers, so that a check made after parsing can
    refuse in the subcommand's name (``tkshm play: ...``), as argparse itself does."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands: dict[str, argparse.ArgumentParser] = {}

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see '{self.prog} --help')\n")


def _add_common(
    parser: argparse.ArgumentParser, default: object = argparse.SUPPRESS, key_help: str | None = None
) -> None:
    # Subcommands use SUPPRESS so that "tkshm --key k put x" and "tkshm put --key k x" agree.
    parser.add_argument(
        "--key", default=default,
        help=key_help or f"name of the shared memory segment (default: {ipc.DEFAULT_KEY!r})",
    )  # fmt: skip
    parser.add_argument(
        "--trace", action="store_true", default=argparse.SUPPRESS if default is argparse.SUPPRESS else False,
        help="print each IPC step (attach, lock, copy, unlock, detach) to stderr as it happens",
    )  # fmt: skip


def build_parser() -> _Parser:
    parser = _Parser(
        prog="tkshm",
        description="Share one image between programs through named shared memory. "
        "Without a command, open the window.",
    )
    parser.add_argument("--version", action="version", version=f"tkshm {__version__}")
    _add_common(parser, None)
    languages = " or ".join(available_languages())
    parser.add_argument("--lang", help=f"language of the window: {languages} (default: system)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(
        name: str, help: str, common: bool = True, key_help: str | None = None
    ) -> argparse.ArgumentParser:
        # help (one line in "tkshm --help") is also the description of "tkshm NAME --help".
        sub = commands.add_parser(name, help=help, description=help)
        parser.commands[name] = sub
        if common:
            _add_common(sub, key_help=key_help)
        return sub

    put = command("put", "Publish an image; stay attached until Ctrl+C.")
    put.add_argument("image", help="image file to publish")
    _add_qt(put, "publish as Qt's example does, for Qt's example to display")
    play = command("play", "Publish an animation or a video, or a moving test pattern, frame by frame.")
    play.description = (
        "Publish an animation or a video, or a moving test pattern, frame by frame, each when it is due: "
        "a frame whose time has passed when it comes up is dropped, not shown late, so the "
        "stream keeps time. A still image (one frame) is published once and held, as put does. "
        "Ctrl+C (or SIGTERM) stops it and detaches; so do --once, --duration and --frames. "
        "Another process already publishing under the key is refused (see --force)."
    )
    play.add_argument(
        "file", nargs="?", metavar="FILE",
        help="animated GIF, APNG, WebP or multi-page TIFF, or a video FFmpeg decodes (MP4, WebM, "
        "MKV, MOV, AVI; needs pip install 'tkshm[video]'), each frame shown for its own duration",
    )  # fmt: skip
    play.add_argument(
        "--pattern", action="store_true",
        help="publish a moving test pattern instead, its frame number and publish time stamped "
        "in its first and last rows",
    )  # fmt: skip
    play.add_argument(
        "--size", type=_size, metavar="WxH", help="the test pattern's size (default: 1920x1080)"
    )
    play.add_argument(
        "--fps", type=_fps, metavar="N",
        help="frames per second, instead of the file's durations (the pattern's default: 60)",
    )  # fmt: skip
    play.add_argument(
        "--speed", type=_speed, metavar="FACTOR",
        help="play FACTOR times as fast: each duration divided by it (0.5: half speed; default: 1)",
    )  # fmt: skip
    play.add_argument(
        "--start", type=_start, metavar="SECONDS", default=0.0,
        help="begin at the first frame at or after SECONDS into the file (each loop, too)",
    )  # fmt: skip
    looping = play.add_mutually_exclusive_group()
    looping.add_argument(
        "--loop", dest="loop", action="store_true", default=True, help="play again and again (default)"
    )
    looping.add_argument(
        "--once", dest="loop", action="store_false", help="play the file once, then detach and exit"
    )
    play.add_argument(
        "--duration", type=_play_seconds, metavar="SECONDS", help="stop after SECONDS (default: Ctrl+C)"
    )
    play.add_argument(
        "--frames", type=_frame_count, metavar="N", help="stop after publishing N frames (default: Ctrl+C)"
    )
    play.add_argument(
        "--force", action="store_true",
        help="publish even while another process is publishing under the key (their frames mix)",
    )  # fmt: skip
    watch = command("watch", "Follow a stream and print frames/s, skipped/s and latency each second.")
    watch.description = (
        "Follow a stream and print frames/s, skipped/s and latency each second, in the words of "
        "the window's status line. A key nothing "
        "is published under yet is waited for, as is the next publisher when one goes. "
        "Ctrl+C (or --seconds) stops it, and it prints the summary of the whole watch."
    )
    watch.epilog = (
        figures.explain("read", "copied out")
        + " The summary gives the totals as well. Torn: stamped frames whose first and last rows "
        "came from two publishes (always 0). With --json, one object per line: fps, "
        "skipped_per_s, latency_p50_ms, latency_p99_ms, latency_from ('stamp' or 'header'), "
        "torn, publisher ('alive', 'gone', 'unknown', 'none')."
    )
    watch.add_argument("--json", action="store_true", help="print one JSON object per line instead of text")
    watch.add_argument("--seconds", type=_seconds, metavar="N", help="stop after N seconds (default: Ctrl+C)")
    record = command("record", "Write a stream to a video file, each frame at the time it was published.")
    record.description = (
        "Write the stream under the key to a video file (needs pip install 'tkshm[video]'): each "
        "new frame is encoded at the time the segment says it was published, so the file keeps "
        "the stream's rhythm. A key nothing is published under yet is waited for. It ends when "
        "the publisher has gone, on Ctrl+C, or after --duration or --frames; the file gets its "
        "name only once it is complete (until then it is OUT.partial)."
    )
    record.add_argument(
        "output", metavar="OUT",
        help="the video file to write: .mp4, .m4v, .mov or .mkv (H.264), .webm (VP9), .avi (MJPEG)",
    )  # fmt: skip
    record.add_argument(
        "--duration", type=_record_seconds, metavar="SECONDS", help="stop after SECONDS of stream"
    )
    record.add_argument("--frames", type=_frame_count, metavar="N", help="stop after N frames")
    get = command("get", "Copy the published image out and save it.")
    get.add_argument(
        "-o", "--output", required=True, metavar="FILE",
        help="file to write, in the format its extension names (.png, .jpg, .tiff, ...); "
        "'-' writes a PNG to standard output",
    )  # fmt: skip
    _add_qt(get, "read what Qt's example published")
    info = command("info", "Show a segment's header, orphaned or not.")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    listing = command(
        "list", "List your segments, in use or orphaned.", key_help="list only the segment of this key"
    )
    listing.add_argument("--json", action="store_true", help="print JSON instead of text")
    listing.set_defaults(every_key=True)  # without --key, list shows every key's segment
    # clean removes every orphan; --key is accepted by the parser only to be refused in words.
    clean = command("clean", "Remove orphaned segments, never one in use.", key_help=argparse.SUPPRESS)
    _add_qt(
        clean,
        "repair what a killed Qt program left under --key: remove its orphaned segment, "
        "release a semaphore it left taken",
    )
    window = command("gui", "Open the window (the default command).")
    window.add_argument("--lang", default=argparse.SUPPRESS, help=f"language of the window: {languages}")
    window.add_argument("--geometry", help="window size and place, as in Tk: WxH+X+Y or +X+Y")
    window.add_argument("--suggest", metavar="IMAGE", help="the file the Load dialog offers first")
    window.add_argument(
        "--zoom", type=float, default=1.0, help="scale every font, e.g. 1.5 (Ctrl+plus/minus/0)"
    )
    window.add_argument(
        "--role", choices=("publish", "display"), help="say what this window is for (the demo's)"
    )
    window.add_argument(
        "--follow", action="store_true", help="open with Follow changes (F5) on: show each new image or frame"
    )
    window.add_argument(
        "--stream", action="store_true",
        help="say that tkshm play publishes a stream under the key (the demo's, with --play or --pattern)",
    )  # fmt: skip
    _add_qt(window, "be a peer of Qt's example: Load publishes for it, Display shows what it loaded")
    demo = command("demo", "Two traced windows on a fresh key, for a class.", common=False)
    demo.description = (
        "For a classroom: open two windows side by side on a fresh key, each showing the IPC trace "
        "(always on), with a sample image ready to load."
    )
    demo.add_argument("--key", default=argparse.SUPPRESS, help="key to share (default: a fresh demo-xxxxxx)")
    demo.add_argument("--lang", default=argparse.SUPPRESS, help=f"language of the windows: {languages}")
    demo.add_argument(
        "--zoom", type=float, default=1.0, help="scale every font, e.g. 1.5, for the back of the room"
    )
    source = demo.add_mutually_exclusive_group()
    source.add_argument(
        "--play", metavar="FILE", help="also play FILE as a stream (tkshm play); the right window follows it"
    )
    source.add_argument(
        "--pattern", action="store_true", help="also play a moving test pattern; the right window follows it"
    )
    source.add_argument(
        "--with-qt", action="store_true",
        help="Qt's own compiled example on the left (Debian's qtbase5-examples), a tkshm window "
        "speaking Qt 5's protocol on the right, on Qt's key",
    )  # fmt: skip
    demo.add_argument(
        "--qt-example", metavar="PATH", help="Qt's compiled Shared Memory example to run (--with-qt)"
    )
    # Accepted by the parser only to be refused in words: the demo's trace is always on.
    demo.add_argument("--trace", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    command(
        "install-desktop",
        "Add the window to your desktop menu (a Start-menu shortcut on Windows).",
        common=False,
    )
    command("uninstall-desktop", "Remove it from the desktop menu again.", common=False)
    return parser


def _add_qt(parser: argparse.ArgumentParser, what: str) -> None:
    if sys.platform == "win32":  # both key styles are a file mapping and a semaphore; no extra
        styles, needs = "5 is Qt 5 and Qt 6's legacy keys, 6 is Qt 6's native keys", ""
    else:
        styles = "5 is Qt 5 and Qt 6's legacy keys (System V), 6 is Qt 6's native keys (POSIX)"
        needs = ". Needs pip install 'tkshm[qt]'"
    parser.add_argument(
        "--qt", type=int, choices=qt.VERSIONS, metavar="5|6",
        help=f"speak Qt's own protocol ({what}): {styles}; the key defaults to "
        f"{qt.DEFAULT_KEY!r}{needs}",
    )  # fmt: skip


def _size(text: str) -> tuple[int, int]:
    width, sep, height = text.lower().partition("x")
    if sep and width.isdigit() and height.isdigit():
        return int(width), int(height)
    raise argparse.ArgumentTypeError(f"{text!r} is not a size; write it as WIDTHxHEIGHT, e.g. 1920x1080")


def _positive(text: str, what: str, most: float | None = None) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value > 0 and (most is None or value <= most)):
        bound = f" up to {most:g}" if most is not None else ""
        raise argparse.ArgumentTypeError(f"{text!r}: {what} must be a number above 0{bound}")
    return value


def _fps(text: str) -> float:
    return _positive(text, "frames per second", stream.MAX_FPS)


def _seconds(text: str) -> float:
    return _positive(text, "the seconds to watch")


def _record_seconds(text: str) -> float:
    return _positive(text, "the seconds to record")


def _play_seconds(text: str) -> float:
    return _positive(text, "the seconds to play")


def _speed(text: str) -> float:
    return _positive(text, "the speed", stream.MAX_FPS)


def _start(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: the seconds to start at must be a number, 0 or more")
    return value


def _frame_count(text: str) -> int:
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise argparse.ArgumentTypeError(f"{text!r}: the frames to publish must be a whole number above 0")


def available_languages() -> list[str]:
    """``en`` and every language with a compiled catalogue in ``tkshm/locale``."""
    found = []
    with contextlib.suppress(OSError):
        for entry in sorted(os.listdir(LOCALE_DIR)):
            if os.path.isfile(os.path.join(LOCALE_DIR, entry, "LC_MESSAGES", "tkshm.mo")):
                found.append(entry)
    return ["en", *found]


def _language(lang: str) -> str | None:
    """The catalogue name for ``lang`` ("zh", "zh-CN" and "zh_Hans" are zh_CN), or None."""
    normal = lang.replace("-", "_")
    normal = _LANGUAGE_ALIASES.get(normal.lower(), normal)
    for known in available_languages():
        if normal.lower() == known.lower() or (known == "en" and normal.lower().startswith("en_")):
            return known
    return None


def _check_options(top: _Parser, args: argparse.Namespace) -> None:
    """Refuse an option the command would ignore, in one line that says why (in the
    command's name for play and watch, whose every error starts ``tkshm play:``)."""
    command = args.command or "gui"
    parser = top.commands[command] if command in _OWN_PREFIX else top
    if args.key is not None and command not in _USES_KEY and not getattr(args, "qt", None):
        if command == "clean":
            parser.error(
                "clean removes every orphaned segment and takes no --key; "
                "'tkshm info --key KEY' tells whether one key's segment is orphaned"
            )
        parser.error(f"{command} takes no --key")
    if getattr(args, "trace", False) and command not in _USES_TRACE:
        if command == "demo":
            parser.error("the demo always shows the trace; it takes no --trace")
        parser.error(f"{command} takes no --trace")
    if args.lang is not None:
        if command not in _USES_LANG:
            parser.error(f"--lang chooses the language of the window; {command} opens none")
        language = _language(args.lang)
        if language is None:
            known = " and ".join(available_languages())
            parser.error(f"--lang {args.lang}: the window speaks {known} only")
        args.lang = language
    if command == "play":
        if (args.file is None) == (not args.pattern):
            parser.error("play takes a FILE or --pattern (one of them)")
        if not args.pattern and args.size is not None:
            parser.error("--size is the test pattern's; a file is played at its own size")
        if args.pattern and (args.speed is not None or args.start):
            option = "--speed" if args.speed is not None else "--start"
            parser.error(f"{option} is for a FILE; the test pattern's pace is --fps")
        if args.pattern and not args.loop:
            parser.error("the test pattern never ends; it takes no --once (--duration or --frames end it)")
        if args.pattern:
            problem = stream.pattern_size_problem(*(args.size or _PATTERN_SIZE))
            if problem is not None:
                parser.error(f"--size: {problem}")
    if command == "demo" and args.qt_example is not None and not args.with_qt:
        parser.error("--qt-example is the program --with-qt runs; add --with-qt")
    if command == "demo" and args.with_qt and args.key is not None:
        parser.error(f"Qt's example always uses key {qt.DEFAULT_KEY!r}; --with-qt takes no --key")
    if getattr(args, "qt", None) and command == "gui" and (args.follow or args.stream):
        option = "--follow" if args.follow else "--stream"
        parser.error(f"{option} is for tkshm's streams; Qt's segment has no generation to follow (--qt)")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tkshm`` console script."""
    try:
        try:
            return _run(argv)
        finally:
            # Flush here, inside the try: a reader that went away (``tkshm list | head -1``)
            # shows up as BrokenPipeError now, not as a traceback while Python exits. This
            # covers --help and usage errors too, which leave through SystemExit.
            if sys.stdout is not None:  # None in a Windows GUI process (tkshm-gui)
                sys.stdout.flush()
    except BrokenPipeError:
        return _reader_gone()


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # as parse_args says it, but in the subcommand's name for play and watch
        speaker = parser.commands[args.command] if args.command in _OWN_PREFIX else parser
        speaker.error(f"unrecognized arguments: {' '.join(extra)}")
    _check_options(parser, args)
    args.every_key = getattr(args, "every_key", False) and args.key is None
    if args.key is None and args.command != "demo":  # the demo makes a fresh key of its own
        args.key = qt.DEFAULT_KEY if getattr(args, "qt", None) else ipc.DEFAULT_KEY
    handler = _COMMANDS.get(args.command or "gui")
    assert handler is not None
    printer = trace.to_stream(sys.stderr) if getattr(args, "trace", False) else None
    prog = f"tkshm {args.command}" if args.command in _OWN_PREFIX else "tkshm"
    try:
        return handler(args)
    except SegmentNotFoundError as exc:
        if getattr(args, "qt", None):  # Qt's sentence names Qt's objects and Qt's example
            return _fail(str(exc), prog)
        # At a shell prompt, name the command that publishes (the window says Qt's sentence,
        # "Load an image first.").
        key = _printable(repr(exc.key))
        return _fail(f"nothing is published under key {key}; publish one with {_put_hint(exc.key)}.", prog)
    except TkshmError as exc:
        return _fail(str(exc), prog)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        if printer is not None:
            trace.stop(printer)


def _reader_gone() -> int:
    """Standard output's reader has exited: stop quietly, as the Python documentation's
    note on SIGPIPE recommends. Python ignores SIGPIPE, so a write to a closed pipe raises
    BrokenPipeError instead of ending the process as it ends a C program; the output still
    buffered is pointed at devnull, so that flushing it at exit cannot raise again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_ERROR


def _put_hint(key: str) -> str:
    command = "tkshm put IMAGE" if key == ipc.DEFAULT_KEY else f"tkshm put --key {shlex.quote(key)} IMAGE"
    return f"`{_printable(command)}`"


def gui_main() -> int:
    """Entry point of the ``tkshm-gui`` script (no console window on Windows)."""
    return main(["gui", *sys.argv[1:]])


def _printable(text: str) -> str:
    """Escape control characters, so that a file name or key can never break a line in two."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _fail(message: str, prog: str = "tkshm") -> int:
    print(f"{prog}: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_ERROR


def _frames(count: int) -> str:
    return "1 frame" if count == 1 else f"{count} frames"


def _put(args: argparse.Namespace) -> int:
    loaded = _load_quietly(args.image)
    if args.qt:
        return _put_qt(args, loaded)
    width, height = loaded.image.size
    # Ctrl+C, SIGTERM; on Windows also Ctrl+Break and closing the console (see _signals).
    # The segment's block is inside, so it is detached before a close handler lets go.
    with stop_requests() as stop, ipc.Segment.create(args.key, width * height * BYTES_PER_PIXEL) as segment:
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


def _put_qt(args: argparse.Namespace, loaded: LoadedImage) -> int:
    """put --qt: the image as Qt's example publishes it (a PNG in a QDataStream), held."""
    with stop_requests() as stop, qt.publish(loaded.image, args.key, args.qt) as published:
        width, height = loaded.image.size
        print(
            f"Published {_printable(args.image)} ({width}x{height}) in Qt {args.qt}'s format under Qt's "
            f"key {_printable(repr(args.key))}: {'; '.join(published.objects())}. Press Ctrl+C to detach.",
            flush=True,
        )
        while not stop.wait(0.5):  # as in _put
            pass
    return 0


@contextlib.contextmanager
def _decoder_output() -> Iterator[list[str]]:
    """Collect what C libraries write straight to file descriptor 2 while a file is decoded.

    libtiff, for one, prints its own complaints ("TIFFFillStrip: Read error on strip 0; ...")
    with ``fprintf(stderr)``, around Python's ``sys.stderr``. Pointing descriptor 2 at a
    temporary file for the duration keeps the CLI's promise of one line; the caller decides
    whether the text matters. Only the CLI does this: a library must not take a program's
    standard error away from its other threads.
    """
    lines: list[str] = []
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2 at all (a Windows GUI process): nothing to keep clean
        yield lines
        return
    try:
        with tempfile.TemporaryFile() as capture:
            os.dup2(capture.fileno(), 2)
            try:
                yield lines
            finally:
                os.dup2(saved, 2)
                capture.seek(0)
                text = capture.read(4096).decode("utf-8", "replace")
                lines.extend(line.strip() for line in text.splitlines() if line.strip())
    finally:
        os.close(saved)


def _load_quietly(path: str) -> LoadedImage:
    """load_image, with what decoders print folded into the error's one sentence."""
    with _decoding_quietly():
        return load_image(path)


@contextlib.contextmanager
def _decoding_quietly() -> Iterator[None]:
    """Run a block that decodes files, with what decoders print folded into the one sentence
    of an ImageError it raises (see _decoder_output)."""
    with _decoder_output() as printed:
        try:
            yield
        except ImageError as exc:
            error = exc
        else:
            return
    if printed:  # on success the decoder's chatter is dropped: the image is whole
        said = "; ".join(dict.fromkeys(line.rstrip(".") for line in printed))
        message = f"{str(error).rstrip('.')}; the decoder reported: {said}."
        raise ImageError(message, error.path) from error
    raise error


def _play(args: argparse.Namespace) -> int:
    # A video's decoding thread is stopped and its file closed however play ends.
    with contextlib.ExitStack() as closing:
        return _play_in(args, closing)


def _open_playable(path: str, start_s: float) -> stream.Animation | video.Video:
    """An animation through Pillow, or a video through PyAV: by the file's extension, else
    whichever reads it (Pillow first: an animated GIF, WebP or PNG is no video)."""
    if video.looks_like_video(path):
        return video.open_video(path, start_s)
    try:
        with _decoding_quietly():
            return stream.open_animation(path)
    except NotAnImageError:
        return video.open_video(path, start_s, chosen_by_name=False)


def _check_start(animation: stream.Animation, args: argparse.Namespace) -> None:
    """Refuse a --start past a decoded animation's end before anything is published (one
    decoded as it plays says so at its first pass, before its first frame is published)."""
    length = animation.length_s(args.fps)
    if args.start and length is not None and args.start > length - 1e-6:
        raise ImageError(
            f"{args.file} is {length:.2f} s long; --start {args.start:g} is past its last frame."
        )


def _play_in(args: argparse.Namespace, closing: contextlib.ExitStack) -> int:
    still = False
    if args.pattern:
        width, height = args.size or _PATTERN_SIZE
        fps = args.fps or _PATTERN_FPS
        # Each frame is stamped with the generation it is published as (Publisher below).
        frames = stream.TestPattern(width, height).frames(fps, lambda: publisher.next_generation())
        what = f"the test pattern ({width}x{height} at {fps:g} fps, stamped with its generation)"
        decoding: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    else:
        played_file = _open_playable(args.file, args.start)
        width, height = played_file.size
        speed = args.speed or 1.0
        rate = f" at {args.fps:g} fps" if args.fps else ""
        pace = (f", from {args.start:g} s" if args.start else "") + (
            f", at {speed:g}x speed" if speed != 1 else ""
        )
        how = "looping" if args.loop else "once"
        if isinstance(played_file, video.Video):
            closing.enter_context(played_file)
            length = f", {played_file.length_s:.2f} s" if played_file.length_s is not None else ""
            kind = f"{played_file.codec} video{length}"
            frames = played_file.frames(args.fps, loop=args.loop, speed=speed)
            decoding = contextlib.nullcontext()
        else:
            animation = played_file
            # One frame is a still: published once and held, as put holds it. Publishing it
            # again ten times a second would only wake every follower to copy the same pixels.
            still = animation.frame_count == 1 and args.loop
            _check_start(animation, args)
            kind = _frames(animation.frame_count)
            frames = animation.frames(args.fps, loop=args.loop and not still, speed=speed, start_s=args.start)
            # Frames too many to decode up front are decoded as they play: fold what a decoder
            # prints then into the error too (not with --trace: it writes to stderr all along).
            streaming = not animation.cached and not args.trace
            decoding = _decoding_quietly() if streaming else contextlib.nullcontext()
        what = f"{_printable(args.file)} ({width}x{height}, {kind}{rate}{pace}, {how})"
    if not args.force:
        other = stream.other_publisher(args.key)
        if other is not None:
            return _fail(
                f"process {other.pid} is already publishing under key {_printable(repr(args.key))} "
                f"(its newest frame is {other.age_s:.1f} s old), and two publishers mix their frames; "
                "stop it first, or pass --force to publish there anyway.",
                "tkshm play",
            )
    publisher = stream.Publisher(args.key)

    def publish(image: Image.Image) -> None:
        info = publisher.publish(image)
        if info is publisher.first:
            # One write (the demo's windows may share this output): see Dialog._event.
            key = _printable(repr(args.key))
            if still:
                line = (
                    f"{_printable(args.file)} ({width}x{height}) is a still image, not an animation: "
                    f"published once under key {key}, generation {info.generation}, and held "
                    "as tkshm put holds it. Press Ctrl+C to stop."
                )
            else:
                line = (
                    f"Playing {what} under key {key}, from generation {info.generation}. "
                    "Press Ctrl+C to stop."
                )
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    # As for put: the segment is detached inside the stop_requests block (see _put).
    with stop_requests() as stop:
        try:
            with decoding:
                played = stream.play(frames, publish, stop, most=args.frames, seconds=args.duration)
            if still and played.published and args.frames is None:
                _hold(stop, args.duration)
        finally:
            publisher.close()
    verb = "Stopped after publishing" if stop.is_set() else "Played"
    dropped = f", {played.dropped} dropped to keep time" if played.dropped else ""
    print(f"{verb} {_frames(played.published)}{dropped}.")
    return 0


def _hold(stop: threading.Event, seconds: float | None) -> None:
    """Keep a still published until Ctrl+C, or for ``seconds`` (``play --duration``)."""
    end = None if seconds is None else time.monotonic() + seconds
    while not stop.wait(0.5 if end is None else max(0.0, min(0.5, end - time.monotonic()))):
        if end is not None and time.monotonic() >= end:
            return  # a timed wait lets signal handlers run promptly, as in _put


def _watch(args: argparse.Namespace) -> int:
    def notice(text: str) -> None:
        print(f"tkshm watch: {text}.", file=sys.stderr, flush=True)

    with stop_requests() as stop:
        watching.watch(
            args.key, sys.stdout, stop, as_json=args.json, seconds=args.seconds, say=notice,
            publish_hint=_play_hint(args.key),
        )  # fmt: skip
    return 0


def _record(args: argparse.Namespace) -> int:
    def notice(text: str) -> None:
        print(f"tkshm record: {text}", file=sys.stderr, flush=True)

    recording.check_output(args.output)  # a file that cannot be written: said before any wait
    with stop_requests() as stop:
        done = recording.record(
            args.key, args.output, stop, notice, frames=args.frames, seconds=args.duration
        )
    if done.frames == 0:
        print("Recorded no frames; no file was written.")
        return 0
    print(f"Recorded {_frames(done.frames)} ({done.span_s:.2f} s) to {_printable(args.output)}.")
    if done.problem is not None:
        return _fail(done.problem, "tkshm record")
    return 0


def _play_hint(key: str) -> str:
    command = "tkshm play FILE" if key == ipc.DEFAULT_KEY else f"tkshm play --key {shlex.quote(key)} FILE"
    return f"`{_printable(command)}`"


@functools.cache
def _writable_extensions() -> list[str]:
    """The file extensions ``get`` can write an RGBA image to, found by asking Pillow.

    Each format Pillow has a writer for is tried on a 1x1 image, as RGBA or else as RGB
    (some, like JPEG, have no alpha channel): that leaves out writers that are only stubs
    (BUFR, WMF) and formats that hold only black and white (XBM).
    """
    Image.init()
    probe = Image.new("RGBA", (1, 1))
    writable: dict[str, bool] = {}
    found = []
    for extension, fmt in sorted(Image.registered_extensions().items()):
        if fmt not in Image.SAVE or fmt in _RESIZING_FORMATS:
            continue
        if fmt not in writable:
            writable[fmt] = any(_saves(probe.convert(mode), fmt) for mode in ("RGBA", "RGB"))
        if writable[fmt]:
            found.append(extension)
    return found


def _saves(image: Image.Image, fmt: str) -> bool:
    try:
        image.save(io.BytesIO(), fmt)
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


def _save_format(output: str, image: Image.Image) -> tuple[str | None, str | None]:
    """The Pillow format to write ``output`` in, or None and the sentence that refuses it."""
    extension = os.path.splitext(output)[1].lower()
    Image.init()
    fmt = Image.registered_extensions().get(extension)
    if fmt is None or fmt not in Image.SAVE or extension not in _writable_extensions():
        what = f"{extension!r} is not a format tkshm can write" if extension else "the name has no extension"
        known = ", ".join(_writable_extensions())
        return None, (
            f"Cannot save {output}: {what}; end the name with one of {known}, "
            "or use -o - for a PNG on standard output."
        )
    if fmt == "ICO" and max(image.size) > _ICO_MAX:
        return None, (
            f"Cannot save {output}: an ICO file holds at most {_ICO_MAX}x{_ICO_MAX} pixels and the "
            f"image is {image.width}x{image.height}; save it as .png to keep it whole."
        )
    return fmt, None


def _get(args: argparse.Namespace) -> int:
    output: str = args.output
    if output == "-":
        if sys.stdout.isatty():
            return _fail(
                "Refusing to write a PNG to the terminal; redirect it (-o - > copy.png) or name a file."
            )
        image = _read_for_get(args)
        image.save(sys.stdout.buffer, "PNG")
        return 0
    if os.path.isdir(output):
        example = os.path.join(output, "copy.png")
        return _fail(f"Cannot save to {output}: it is a directory; name a file in it, such as {example}.")
    image = _read_for_get(args)
    fmt, refusal = _save_format(output, image)
    if refusal is not None:
        return _fail(refusal)
    params: dict[str, object] = {"sizes": [image.size]} if fmt == "ICO" else {}  # whole, not shrunk
    note = ""
    try:
        try:
            image.save(output, fmt, **params)
        except (OSError, ValueError) as exc:
            if isinstance(exc, OSError) and exc.errno is not None:
                raise
            # The format has no alpha channel (JPEG, BMP, EPS): write the colours alone.
            image.convert("RGB").save(output, fmt, **params)
            if image.getchannel("A").getextrema() != (255, 255):  # there was transparency to lose
                note = f", without transparency ({fmt} cannot store it)"
    except OSError as exc:
        return _fail(f"Cannot save {output}: {exc.strerror or exc}.")
    except ValueError as exc:
        return _fail(f"Cannot save {output}: {exc}.")
    print(f"Saved {image.width}x{image.height} image to {_printable(output)}{note}.")
    return 0


def _read_for_get(args: argparse.Namespace) -> Image.Image:
    if args.qt:
        # Qt's payload is a PNG, decoded as a file is (not with --trace: it writes to stderr).
        with contextlib.nullcontext() if args.trace else _decoding_quietly():
            return qt.read_image(args.key, args.qt)
    return ipc.read_image(key=args.key)


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
    info = ipc.info(key=args.key)  # an orphan is reported, not removed
    if args.json:
        print(json.dumps(info.as_dict(), indent=2))
        return 0
    print(_describe(info))
    if not info.in_use:
        print(
            "No process is attached to this segment any more (its last holder was killed?): "
            "'tkshm clean' would remove it, and so would the next put, get or window under this key."
        )
    return 0


def _segments(count: int) -> str:
    return f"{count} segment" if count == 1 else f"{count} segments"


_LIST_ROW: Final = "{:<24} {:<8} {:<8} {:<11} {:>10}  {}"


def _list(args: argparse.Namespace) -> int:
    segments = ipc.list_segments()
    if not args.every_key:
        name = ipc.native_name(args.key)
        segments = [s for s in segments if s.name == name]
    if args.json:
        print(json.dumps([s.as_dict() for s in segments], indent=2))
    elif not segments:
        where = "" if args.every_key else f" under key {_printable(repr(args.key))}"
        print(f"No segments{where} in {ipc.segment_directory()}.")
    else:
        print(_LIST_ROW.format("KEY", "STATE", "IN USE", "IMAGE", "GENERATION", "PATH"))
        for s in segments:
            print(
                _LIST_ROW.format(
                    _printable(s.key or s.name), s.state, "yes" if s.in_use else "orphaned",
                    f"{s.width}x{s.height}", s.generation, s.path,
                )
            )  # fmt: skip
    return 0


def _clean(args: argparse.Namespace) -> int:
    if args.qt:
        done = qt.clean(args.key, args.qt)
        for line in done:
            print(f"{line}.")
        if not done:
            print(f"Nothing to repair under Qt's key {_printable(repr(args.key))}.")
        return 0
    removed = ipc.clean()
    for path in removed:
        print(f"Removed {path}")
    print(f"Removed {_segments(len(removed)).replace(' ', ' orphaned ', 1)}.")
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
            follow=getattr(args, "follow", False), stream=getattr(args, "stream", False),
            qt=getattr(args, "qt", None),
        )  # fmt: skip

    return _windowed(open_window)


def _demo(args: argparse.Namespace) -> int:
    def open_windows() -> int:
        from .demo import run_demo

        return run_demo(
            key=args.key, lang=args.lang, zoom=args.zoom, play=args.play, pattern=args.pattern,
            with_qt=args.with_qt, qt_path=args.qt_example,
        )  # fmt: skip

    return _windowed(open_windows)


def _desktop(args: argparse.Namespace) -> int:
    from . import desktop

    installing = args.command == "install-desktop"
    try:
        paths = desktop.install() if installing else desktop.uninstall()
    except OSError as exc:
        verb = "install" if installing else "remove"
        return _fail(f"Cannot {verb} the {desktop.WHAT}: {exc.strerror or exc} ({exc.filename}).")
    for path in paths:
        print(f"{'Installed' if installing else 'Removed'} {path}")
    if not paths:
        print(f"The {desktop.WHAT} was not installed; nothing to remove.")
    return 0


_COMMANDS = {
    "demo": _demo, "put": _put, "play": _play, "watch": _watch, "record": _record, "get": _get, "info": _info,
    "list": _list, "clean": _clean, "gui": _gui,
    "install-desktop": _desktop, "uninstall-desktop": _desktop,
}  # fmt: skip
