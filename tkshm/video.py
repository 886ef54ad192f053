"""A video file as timed frames: what ``tkshm play`` plays through PyAV (FFmpeg).

Anything FFmpeg decodes (MP4, WebM, MKV, MOV, AVI, ...) becomes the same
:class:`~tkshm.stream.TimedFrame` sequence an animated GIF does, so the deadline schedule of
:func:`tkshm.stream.play` paces it. Three ideas carry it:

* **Time comes from the file.** Frame *n* stays up for pts(n+1) - pts(n): a variable frame
  rate (a phone's video, a screen recording) keeps its rhythm; a frame rate read from the
  header would not.
* **Decoding runs ahead** on a thread, a few frames into a bounded queue: a frame that is
  slow to decode (a key frame) is absorbed by the frames already waiting, instead of making
  the stream late. The queue's bound is the memory the lead costs.
* **Pixels are FFmpeg's own** ``to_ndarray(format="rgba")``, whatever the file's pixel
  format (and its colour matrix); turned upright when the file says it was filmed on its
  side (the display matrix), then wrapped, not copied, as the Pillow image the publisher
  writes.

PyAV is optional (``pip install 'tkshm[video]'``): it is imported only when a video is
opened, and its absence is a sentence, not a traceback.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Final

from PIL import Image

from .errors import ImageError, ImageTooLargeError
from .header import BYTES_PER_PIXEL
from .images import MAX_PIXELS, check_regular_file
from .stream import DEFAULT_DURATION_S, START_SLACK_S, TimedFrame

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from av.container import InputContainer
    from av.video.frame import VideoFrame
    from av.video.stream import VideoStream

INSTALL: Final = "pip install 'tkshm[video]'"
# Files these end in go to FFmpeg straight away; any other file Pillow cannot identify as
# an image is tried as a video too, so a video with no extension (or an odd one) still plays.
VIDEO_EXTENSIONS: Final = frozenset(
    {
        ".mp4", ".m4v", ".mov", ".qt", ".webm", ".mkv", ".mk3d", ".avi", ".mpg", ".mpeg", ".m2v",
        ".ts", ".mts", ".m2ts", ".flv", ".ogv", ".wmv", ".asf", ".3gp", ".3g2", ".y4m", ".nut",
        ".mxf", ".dv", ".h264", ".264", ".hevc", ".265", ".ivf", ".mjpeg", ".mjpg",
    }
)  # fmt: skip
# How far decoding may run ahead: a few frames absorb a slow one; the byte bound keeps an 8K
# video's lead to a few hundred megabytes.
AHEAD_FRAMES: Final = 6
AHEAD_BYTES: Final = 256 * 1024 * 1024
# A decoder that has not stopped this long after it was asked to is left to the process's
# exit (its thread is a daemon): stopping must never hang.
STOP_TIMEOUT_S: Final = 5.0
# A file whose frames end this much before the duration its header gives was cut short.
_SHORT_BY_S: Final = 0.25


def looks_like_video(path: str) -> bool:
    """Whether ``path``'s extension names a video container (chosen by name, not content)."""
    return os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS


@dataclass(frozen=True)
class Picture:
    """One decoded frame: RGBA pixels (H x W x 4, C-contiguous) and when it is presented."""

    pixels: npt.NDArray[np.uint8]
    time_s: float  # from the start of the video (its first frame is at 0)
    duration_s: float | None  # what the file says of this frame alone, if anything

    def image(self) -> Image.Image:
        """The pixels as a Pillow image sharing their memory: no copy before the publish's own.
        The image holds a reference to the array, which lives as long as it does."""
        height, width = self.pixels.shape[:2]
        return Image.frombuffer("RGBA", (width, height), self.pixels, "raw", "RGBA", 0, 1)


@dataclass(frozen=True)
class _Damaged:
    """Where decoding stopped: the frames before it played; this is the sentence after them."""

    error: ImageError


_END_OF_PASS: Final = object()


class _Source:
    """The container and its video stream, decoded one Picture at a time (by one thread at
    a time: :func:`open_video` for the first frame, then the decoding thread)."""

    def __init__(self, path: str, container: InputContainer, stream: VideoStream) -> None:
        self.path = path
        self.container = container
        self.stream = stream
        self.origin = _origin(stream)
        self.average_s = _average_duration(stream)
        self.length_s = _length(container, stream)
        self._frames: Iterator[VideoFrame] = container.decode(stream)
        self.decoded = 0  # in this pass, for the sentence that says where damage was
        self.end_s = 0.0  # where this pass's last decoded frame ends
        self._skip_before = 0.0  # frames before this time are decoded, not shown (--start)

    def seek(self, start_s: float) -> None:
        """Begin a pass at ``start_s``: the next picture is the first at or after it."""
        import av

        if start_s > 0 or self.decoded:
            time_base = self.stream.time_base or Fraction(1, 1_000_000)
            target = int((self.origin + start_s) / time_base)
            try:  # to the key frame at or before it: the decoder needs it for what follows
                self.container.seek(max(0, target), stream=self.stream, backward=True, any_frame=False)
            except av.FFmpegError as exc:
                raise ImageError(
                    f"{self.path} cannot seek to {start_s:.2f} s ({_words(exc)}).", self.path
                ) from exc
            self._frames = self.container.decode(self.stream)
        self.decoded, self.end_s, self._skip_before = 0, start_s, start_s

    def pictures(self) -> Iterator[Picture]:
        """The pictures from here to the end of the file. Damage after the first frame of a
        pass raises :class:`_Stopped`; before it, ImageError."""
        while True:
            try:
                frame = next(self._frames, None)
            except Exception as exc:  # FFmpeg's errors, and whatever else a decoder raises
                if not self.decoded:
                    raise ImageError(
                        f"{self.path} is damaged and cannot be decoded ({_words(exc)}).", self.path
                    ) from exc
                raise self._damaged() from exc
            if frame is None:
                return
            time_s = frame.time - self.origin if frame.time is not None else self.end_s
            if time_s < self._skip_before - START_SLACK_S:
                continue  # decoded from the key frame before --start, only to reach it
            self._skip_before = -math.inf
            if frame.width == 0 or frame.height == 0:
                raise ImageError(
                    f"{self.path} has frames of {frame.width}x{frame.height} pixels; nothing to show.",
                    self.path,
                )
            _check_size(self.path, frame.width, frame.height)
            duration = _frame_duration(frame)
            self.decoded += 1
            self.end_s = time_s + (duration or self.average_s)
            yield Picture(_rgba(frame), time_s, duration)

    def check_whole(self) -> None:
        """A pass that ended quietly well before the header's duration was a file cut short:
        FFmpeg's demuxers take a truncated Matroska or WebM file's end for the end."""
        short_by = max(_SHORT_BY_S, 2 * self.average_s)
        if self.decoded and self.length_s is not None and self.end_s < self.length_s - short_by:
            raise self._damaged()

    def _damaged(self) -> _Stopped:
        return _Stopped(
            ImageError(
                f"{self.path} is damaged after {self.end_s:.2f} s (frame {self.decoded}); "
                "played what decoded.",
                self.path,
            )
        )


class _Stopped(Exception):
    """Decoding failed part of the way through a pass: ``error`` says where."""

    def __init__(self, error: ImageError) -> None:
        super().__init__(str(error))
        self.error = error


class Video:
    """A video file opened for playing: what it is, and a way to its timed frames.

    Made by :func:`open_video`, which has decoded the first frame already. Close it (or use
    it as a context manager) to stop the decoding thread and close the file.
    """

    def __init__(self, source: _Source, first: Picture, start_s: float) -> None:
        self.path = source.path
        self.codec = source.stream.codec_context.name
        height, width = first.pixels.shape[:2]
        self.size = (width, height)  # upright: a turned video's width and height are swapped
        self.start_s = start_s
        self.length_s = source.length_s
        self._source = source
        self._first: Picture | None = first
        self._decoder: _Decoder | None = None

    def frames(self, fps: float | None, loop: bool, speed: float = 1.0) -> Iterator[TimedFrame]:
        """The timed frames of one pass (from ``start_s``), or of endless passes with
        ``loop``, each seeking back to ``start_s``. A frame stays up until the next one's
        presentation time (``1/fps`` with ``fps``), divided by ``speed``. Damage raises
        ImageError after the frames before it have been yielded. One call per Video."""
        first = self._first
        if first is None:
            raise RuntimeError("a Video plays once; open the file again to play it again")
        self._first = None
        decoder = self._decoder = _Decoder(self._source, first, self.start_s, loop, self.size)
        try:
            pending: Picture | None = None
            previous = self._source.average_s
            for item in decoder.items():
                if isinstance(item, Picture):
                    if pending is not None:
                        gap = item.time_s - pending.time_s
                        previous = gap if 0 < gap < math.inf else previous
                        yield _timed(pending, previous, fps, speed)
                    pending = item
                    continue
                if pending is not None:  # a pass's last frame: as the file says, or as the one before
                    yield _timed(pending, pending.duration_s or previous, fps, speed)
                    pending = None
                if isinstance(item, _Damaged):
                    raise item.error
        finally:
            decoder.stop()

    def close(self) -> None:
        """Stop decoding and close the file (once the decoder has let go of it); idempotent."""
        self._first = None
        if self._decoder is not None and not self._decoder.stop():
            return  # still inside FFmpeg: closing the file under it could crash; exit ends both
        self._source.container.close()

    def __enter__(self) -> Video:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _timed(picture: Picture, duration_s: float, fps: float | None, speed: float) -> TimedFrame:
    seconds = (1.0 / fps if fps is not None else duration_s) / speed
    image = picture.image()
    return TimedFrame(seconds, lambda: image)


class _Decoder:
    """The thread that decodes ahead, into a bounded queue the player takes frames from.

    It queues Pictures, an end-of-pass marker after each pass, a :class:`_Damaged` if
    decoding failed, and last the end marker. It looks at the stop request between frames
    and while the queue is full, so stopping takes one frame's decoding at most.
    """

    def __init__(
        self, source: _Source, first: Picture, start_s: float, loop: bool, size: tuple[int, int]
    ) -> None:
        self._source = source
        self._start_s = start_s
        self._loop = loop
        frame_bytes = max(1, size[0] * size[1] * BYTES_PER_PIXEL)
        self._queue: queue.Queue[object] = queue.Queue(max(1, min(AHEAD_FRAMES, AHEAD_BYTES // frame_bytes)))
        self._stop = threading.Event()
        self._queue.put(first)
        self._thread = threading.Thread(target=self._run, name="tkshm-video-decoder", daemon=True)
        self._thread.start()

    def items(self) -> Iterator[object]:
        """What the thread decoded, in order, up to its end marker."""
        while (item := self._queue.get()) is not _END:
            yield item

    def stop(self) -> bool:
        """Ask the thread to stop and wait for it, a bounded wait; whether it has stopped."""
        self._stop.set()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while self._thread.is_alive() and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):  # room, so that a waiting put sees the stop
                while True:
                    self._queue.get_nowait()
            self._thread.join(0.01)
        return not self._thread.is_alive()

    def _put(self, item: object) -> bool:
        """Queue ``item``, waiting while the queue is full; False: stop instead."""
        while not self._stop.is_set():
            with contextlib.suppress(queue.Full):
                self._queue.put(item, timeout=0.05)
                return True
        return False

    def _run(self) -> None:
        source = self._source
        try:
            first_pass = True
            while not self._stop.is_set():
                if not first_pass:
                    source.seek(self._start_s)
                for picture in source.pictures():
                    if not self._put(picture):
                        return
                if not source.decoded:
                    raise ImageError(
                        f"{source.path}: no frame decoded after seeking back to the start.", source.path
                    )
                source.check_whole()
                first_pass = False
                if not self._put(_END_OF_PASS) or not self._loop:
                    break
        except _Stopped as stopped:
            self._put(_Damaged(stopped.error))
        except ImageError as exc:
            self._put(_Damaged(exc))
        except Exception as exc:  # whatever else FFmpeg or NumPy raise: a sentence still
            self._put(
                _Damaged(ImageError(f"{source.path} could not be decoded further ({exc}).", source.path))
            )
        finally:
            self._put(_END)  # nobody takes it once stopped: then nobody waits for it either


_END: Final = object()


def open_video(path: str, start_s: float = 0.0, chosen_by_name: bool = True) -> Video:
    """Open ``path`` with PyAV, pick its first video stream, seek to ``start_s`` and decode
    the first frame there; raise ImageError (a sentence) if any of it fails.

    Everything that can make a file unplayable is found here, before anything is published:
    no PyAV, not a video, no video stream, too many pixels (from the header, before a frame
    is decoded), nothing decodable. ``chosen_by_name``: the file was taken for a video by its
    extension; else because Pillow did not know it as an image, and the sentences say so.
    """
    check_regular_file(path)
    try:
        import av
        import numpy  # noqa: F401  (to_ndarray needs it)
    except ImportError:
        if chosen_by_name:
            raise ImageError(f"{path} is a video; playing video needs PyAV: {INSTALL}.", path) from None
        raise ImageError(
            f"{path} is not an image that tkshm can read; "
            f"if it is a video, playing it needs PyAV: {INSTALL}.",
            path,
        ) from None
    try:
        container = av.open(path, "r")
    except av.FFmpegError as exc:
        what = "a video" if chosen_by_name else "an image or a video"
        raise ImageError(f"{path} is not {what} that tkshm can read ({_words(exc)}).", path) from exc
    try:
        stream = _video_stream(container, path, chosen_by_name)
        context = stream.codec_context
        _check_size(path, context.width, context.height)
        context.thread_type = "AUTO"  # frame threads too: decoding keeps up on every core
        source = _Source(path, container, stream)
        source.seek(start_s)
        first = next(source.pictures(), None)
        if first is None:
            if start_s > 0:
                long = (
                    f"is {source.length_s:.2f} s long"
                    if source.length_s is not None
                    else "has no frame there"
                )
                raise ImageError(f"{path} {long}; --start {start_s:g} is past its last frame.", path)
            raise ImageError(f"{path} has no video frame that decodes.", path)
    except _Stopped as stopped:
        container.close()
        raise stopped.error from None
    except BaseException:
        container.close()
        raise
    return Video(source, first, start_s)


def _video_stream(container: InputContainer, path: str, chosen_by_name: bool) -> VideoStream:
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams})
        has = f"only {' and '.join(kinds)}" if kinds else "no streams at all"
        if not chosen_by_name:
            raise ImageError(f"{path} is neither an image nor a video (FFmpeg finds {has} in it).", path)
        raise ImageError(f"{path} holds no video stream ({has}).", path)
    return container.streams.video[0]


def _check_size(path: str, width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise ImageTooLargeError(
            f"{path} is a {width}x{height} video, more than the {MAX_PIXELS:,} pixels a frame of "
            "tkshm may have; it was not decoded.",
            path,
        )


def _rgba(frame: VideoFrame) -> npt.NDArray[np.uint8]:
    """FFmpeg's own conversion to RGBA (so colours are exactly what FFmpeg shows), turned as
    the display matrix says, in one C-contiguous block a Pillow image can wrap."""
    import numpy

    pixels = frame.to_ndarray(format="rgba")
    # The angle to turn the picture counter-clockwise to show it upright (a phone filming
    # upright records landscape pixels and says -90); np.rot90 turns counter-clockwise too.
    turns = round(getattr(frame, "rotation", 0) / 90) % 4
    if turns:
        pixels = numpy.rot90(pixels, turns)
    return numpy.ascontiguousarray(pixels)


def _frame_duration(frame: VideoFrame) -> float | None:
    duration = getattr(frame, "duration", None)
    time_base = frame.time_base
    if not duration or time_base is None:
        return None
    return float(duration * time_base)


def _origin(stream: VideoStream) -> float:
    """The presentation time of the video's start: times are counted from here."""
    if stream.start_time is None or stream.time_base is None:
        return 0.0
    return float(stream.start_time * stream.time_base)


def _average_duration(stream: VideoStream) -> float:
    """One frame's time at the stream's average rate (for a frame the file gives none)."""
    rate = stream.average_rate or stream.guessed_rate
    return float(1 / rate) if rate else DEFAULT_DURATION_S


def _length(container: InputContainer, stream: VideoStream) -> float | None:
    """How long the video is, as its header says; None if it does not say (for the video
    alone: a container's duration can be its longer sound track's)."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and len(container.streams) == 1:
        return container.duration / 1_000_000 - _origin(stream)
    return None


def _words(exc: BaseException) -> str:
    """FFmpeg's words for an error, without PyAV's errno and the path it repeats."""
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).rstrip(".")
