"""A stream into a video file: ``tkshm record --key K OUT.mp4``, the reverse of ``play``.

A recorder is a follower that encodes: it waits for each new frame under the key, wraps it
as a NumPy array where it lies (:meth:`tkshm.ipc.Segment.array`, no copy) and hands it to
FFmpeg's encoder through PyAV, which converts it to the codec's pixel format. Two ideas:

* **Time comes from the segment.** Each frame's presentation time is its header's write
  time (``time.time_ns()`` when its publish finished) minus the first frame's, in
  milliseconds: the file keeps the rhythm the stream had, dropped frames and pauses
  included, however late the recorder itself woke up. A frame the recorder missed (it was
  busy) is missing from the file, as it is from any follower's view.
* **A file is whole or is not there.** Frames go into ``OUT.partial`` beside ``OUT``, which
  is renamed only once the encoder has been flushed and the container closed: an MP4 needs
  its index written last, and a recorder killed half-way must not leave a file that looks
  like a video and does not play. ``OUT.partial`` is created new, exclusively and without
  following a link, and FFmpeg writes through that open file, so a link planted under either
  name never makes the recorder write anywhere else.

PyAV is optional (``pip install 'tkshm[video]'``), as for ``tkshm play``.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, BinaryIO, Final

from . import ipc
from .errors import ImageError, SegmentNotFoundError, TkshmError
from .video import INSTALL

if TYPE_CHECKING:
    from av.container import OutputContainer
    from av.video.stream import VideoStream


@dataclass(frozen=True)
class Kind:
    """How a kind of file is written: FFmpeg's container (named, since ``OUT.partial`` hides
    the extension FFmpeg would guess it from), the encoder, and its pixel format."""

    container: str
    codec: str
    pixel_format: str


_H264: Final = ("libx264", "yuv420p")
# Each kind of file by its extension; anything else is refused before a frame is read.
KINDS: Final = {
    ".mp4": Kind("mp4", *_H264), ".m4v": Kind("mp4", *_H264), ".mov": Kind("mov", *_H264),
    ".mkv": Kind("matroska", *_H264), ".webm": Kind("webm", "libvpx-vp9", "yuv420p"),
    ".avi": Kind("avi", "mjpeg", "yuvj420p"),
}  # fmt: skip
TIME_BASE: Final = Fraction(1, 1000)  # presentation times in milliseconds
# A publisher gone and nothing new for this long: the stream has ended.
ENDED_AFTER_S: Final = 1.0
POLL_S: Final = 0.25
# Looking for a key nothing is published under yet is one failed open(): cheap enough to do
# often, so that a stream that starts after the recorder loses no more than its first frame.
ATTACH_POLL_S: Final = 0.02
PARTIAL: Final = ".partial"


@dataclass
class Recorded:
    """How a recording went: frames written, and the time they span."""

    frames: int = 0
    span_s: float = 0.0
    problem: str | None = None  # why it ended early, in a sentence


def _av() -> Any:
    try:
        import av
    except ImportError as exc:
        raise TkshmError(f"Recording video needs PyAV: {INSTALL}.") from exc
    return av


def check_output(path: str) -> Kind:
    """How ``path`` is written, or an :class:`ImageError` saying why it cannot be."""
    extension = os.path.splitext(path)[1].lower()
    if extension not in KINDS:
        kinds = ", ".join(sorted(KINDS))
        raise ImageError(f"Cannot record to {path}: name a video file ending in one of {kinds}.", path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ImageError(f"Cannot record to {path}: the folder {folder} does not exist.", path)
    if not os.access(folder, os.W_OK):
        raise ImageError(f"Cannot record to {path}: the folder {folder} is not writable.", path)
    if os.path.isdir(path):
        raise ImageError(f"Cannot record to {path}: it is a folder.", path)
    return KINDS[extension]


class _Encoder:
    """One output file being written: opened at the first frame, whose size it takes."""

    def __init__(self, path: str, kind: Kind, width: int, height: int) -> None:
        av = _av()
        self.path, self.partial = path, path + PARTIAL
        # 4:2:0 needs even sizes: an odd last row or column is left out.
        self.width, self.height = width - width % 2, height - height % 2
        self.source_size = (width, height)
        self._file = _create(self.partial)
        try:
            self._container: OutputContainer = av.open(self._file, "w", format=kind.container)
        except BaseException:
            self._file.close()
            os.remove(self.partial)
            raise
        stream: VideoStream = self._container.add_stream(kind.codec)
        stream.width, stream.height, stream.pix_fmt = self.width, self.height, kind.pixel_format
        stream.codec_context.time_base = TIME_BASE
        self._stream = stream
        self._last_pts = -1
        self._frame_type = av.VideoFrame

    def add(self, pixels: Any, write_time_ns: int, first_ns: int) -> None:
        """Encode one RGBA frame (H x W x 4), presented at its write time."""
        frame = self._frame_type.from_ndarray(pixels[: self.height, : self.width], format="rgba")
        pts = max((write_time_ns - first_ns) // 1_000_000, self._last_pts + 1)  # strictly rising
        frame.pts, frame.time_base, self._last_pts = pts, TIME_BASE, pts
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def finish(self) -> None:
        """Flush the encoder, close the container, and only then give the file its name."""
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._file.close()
        os.replace(self.partial, self.path)  # (a rename: a link named OUT is replaced, not followed)

    def abandon(self) -> None:
        with contextlib.suppress(Exception):
            self._container.close()
        self._file.close()
        with contextlib.suppress(OSError):
            os.remove(self.partial)


def _create(partial: str) -> BinaryIO:
    """``OUT.partial``, made new by us: a leftover of a killed recording, or a link someone
    planted there, is removed (a link itself, never what it points to), and the file is
    created exclusively without following links, and handed, open, to FFmpeg."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(partial)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(partial, flags, 0o644)
    except OSError as exc:
        raise ImageError(f"Cannot record to {partial}: {exc.strerror}.", partial) from exc
    return os.fdopen(fd, "wb")


def record(
    key: str,
    path: str,
    stop: threading.Event,
    notice: Callable[[str], None],
    frames: int | None = None,
    seconds: float | None = None,
) -> Recorded:
    """Record the stream under ``key`` into ``path`` until ``stop`` is set, the stream ends
    (its publisher gone and nothing new for a second), ``frames`` are written or ``seconds``
    have passed since the first. Waits for the key if nothing is published there yet."""
    kind = check_output(path)
    _av()
    segment = _wait_for_segment(key, stop, notice)
    result = Recorded()
    if segment is None:
        return result
    encoder: _Encoder | None = None
    first_ns, quiet_since = 0, time.monotonic()
    generation = 0
    try:
        while not stop.is_set() and (frames is None or result.frames < frames):
            if seconds is not None and encoder is not None and result.span_s >= seconds:
                break
            if segment.wait_for_change(generation, POLL_S) <= generation:
                if time.monotonic() - quiet_since > ENDED_AFTER_S and not segment.publisher_alive():
                    break  # the publisher has gone: the stream is over
                continue
            quiet_since = time.monotonic()
            with segment.array() as pixels:
                shown = segment.last_frame
                assert shown is not None
                if encoder is None:
                    encoder = _Encoder(path, kind, shown.width, shown.height)
                    first_ns = shown.write_time_ns
                elif (shown.width, shown.height) != encoder.source_size:
                    result.problem = (
                        f"The stream changed size from {encoder.source_size[0]}x{encoder.source_size[1]} to "
                        f"{shown.width}x{shown.height}; the recording ends at the frame before."
                    )
                    break
                encoder.add(pixels, shown.write_time_ns, first_ns)
            generation = shown.generation
            result.frames += 1
            result.span_s = (shown.write_time_ns - first_ns) / 1e9
        if encoder is not None:
            encoder.finish()
            encoder = None
    finally:
        if encoder is not None:  # an error on the way: no half-written file under its name
            encoder.abandon()
        segment.detach()
    return result


def _wait_for_segment(key: str, stop: threading.Event, notice: Callable[[str], None]) -> ipc.Segment | None:
    """Attach to ``key``, waiting (and saying so once) while nothing is published there."""
    told = False
    while not stop.is_set():
        try:
            return ipc.Segment.attach(key)
        except SegmentNotFoundError:
            if not told:
                notice(f"Nothing is published under key {key!r} yet; waiting for it (Ctrl+C to stop).")
                told = True
        stop.wait(ATTACH_POLL_S)
    return None
