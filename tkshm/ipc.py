"""Named shared memory for images: Qt's ``QSharedMemory`` lesson, in Python.

A *segment* is a block of memory that several processes map at once, found by a *key*.
The protocol, in six lines:

1. **Attach** opens the segment named after the key (creating it if we publish) and marks
   us present; **detach** unmaps it, and the last process to detach removes it -- even when
   the others were killed, because presence is a lock the kernel drops on exit.
2. Every copy happens under an inter-process **lock**, with a timeout. A process that dies
   holding it releases it at once.
3. The writer marks a frame ``WRITING``, copies the pixels, marks it ``READY`` with a new
   **generation**, and only then makes the header (kept twice) name it: a writer killed at
   any moment leaves the last complete frame. Only a first frame, with nothing to keep, is
   written in place: a reader that finds it ``WRITING`` knows the writer died half-way.
4. A bigger image grows the segment in place; it never shrinks under other processes.
5. Readers copy the pixels out before unlocking: nothing that points into the mapping
   outlives the lock (:meth:`Segment.view` is the one exception, and it ends with its block).
6. **Frames** (``tkshm.frames``, ``tkshm.ring``): the pixels live in up to ``MAX_SLOTS``
   (4) slots, each with a lock of its own. A reader locks only the slot the header names,
   shared, while it copies; the writer writes a slot nobody holds and then makes the header
   name it, so a slow, stopped or killed reader never makes it wait, and a writer that never
   pauses never starves a reader. The newest complete frame is never written over, so
   memory is one frame for a still written once, two once it is written again or streamed
   (two slots take turns, as OBS's game capture does), and at most four while readers are
   reading. After each publish the writer wakes the readers waiting in
   :meth:`Segment.wait_for_change` (``tkshm.waiting``; a datagram socket each, ``tkshm._wake``).

On Windows the slots' locks are single bytes of the lock file (``LockFileEx``, as the data
lock), so there too no reader makes the writer wait; waiting readers are woken by a named
event each (``tkshm._events``) instead of a socket.

The header (``tkshm.header``) is a 76-byte record in the first page; pixels follow at 4096
(slot 0), and further slots after it:

=======  ====  ===============  ===================================================
offset   size  field            meaning
=======  ====  ===============  ===================================================
0        8     magic            ``b"TKSHMSEG"``
8        2     version          3
10       2     header_size      4096, the offset of the first pixel
12       4     state            0 EMPTY, 1 WRITING, 2 READY
16       8     generation       bumped on every write
24       8     width, height    pixels (u32 each)
32       4     pixel_format     1 = RGBA, 8 bits per channel
36       4     stride           ``width * 4``
40       8     payload_length   ``stride * height``
48       8     capacity         bytes available for pixels
56       4     writer_pid       last writer
60       4     slot             the frame slot of the newest frame
64       8     write_time_ns    when the write finished
72       4     crc32            of bytes 0..71
128      2+n   key              UTF-8 key, for ``tkshm list`` (not trusted)
1536     76    backup           bytes 0..75 again, written just before them
2048     256   slot records     where each frame slot's pixels are (``tkshm.frames``)
=======  ====  ===============  ===================================================

Where the segment lives: a file in ``/dev/shm/tkshm-<uid>/`` (0700) on Linux, the same in a
per-user temporary directory elsewhere on POSIX (``TKSHM_DIR`` overrides both), and named file
mappings (``CreateFileMapping``) on Windows, where a mapping cannot grow: a directory mapping
names the current one, and growing makes a successor that the others follow (``tkshm._windows``).

This module is the face, read like ``QSharedMemory``: :class:`Segment`'s create, attach,
detach, lock, read and write. Behind it, one job a module: ``tkshm.ring`` (the locks, the
leases and which slot a frame goes into), ``tkshm.pixels`` (Pillow's copies at the mapping's
edge), ``tkshm.arrays`` (NumPy's: :meth:`Segment.array`, ``read_array``, ``write_array``),
``tkshm.waiting`` (sleeping until the next frame), ``tkshm.header`` and ``tkshm.frames`` (the
bytes), and a backend per platform, chosen once below.

Errors all derive from :class:`TkshmError`; see :mod:`tkshm.errors` for the tree.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from typing import Any, Final

from PIL import Image

from . import arrays, pixels, trace
from .arrays import Channels, Pixels
from .errors import (
    ArrayError,
    CorruptSegmentError,
    ImageError,
    ImageTooLargeError,
    IncompleteImageError,
    InvalidKeyError,
    LockTimeoutError,
    NotAnImageError,
    OutOfSharedMemoryError,
    SegmentInUseError,
    SegmentNotFoundError,
    TkshmError,
    UnsafePathError,
)
from .frames import Slot
from .header import BYTES_PER_PIXEL, HEADER_SIZE, MAX_SLOTS, Header, read_header, read_key
from .images import fit_size, to_rgba
from .ring import Leases, Locking, Ring, complete
from .waiting import Waiter, Wakeups

# The platform is decided once, here; nothing else in tkshm asks which OS it runs on.
if sys.platform == "win32":  # pragma: no cover - runs only in the Windows CI job
    from . import _windows as _backend
else:
    from . import _posix as _backend
# How this platform's backend locks: the ring of frame slots (``tkshm.ring``) runs on it.
_LOCKING: Final = Locking(_backend.try_lock, _backend.unlock, _backend.SLOT_LOCKS)

__all__ = [
    "DEFAULT_KEY", "DEFAULT_TIMEOUT", "MAX_SLOTS", "ArrayError", "CopyStats", "CorruptSegmentError",
    "FrameInfo", "ImageError", "ImageTooLargeError", "IncompleteImageError", "InvalidKeyError",
    "LockTimeoutError", "NotAnImageError", "OutOfSharedMemoryError", "Segment", "SegmentInUseError",
    "SegmentInfo", "SegmentNotFoundError", "TkshmError", "UnsafePathError", "check_key", "clean", "info",
    "list_segments", "native_name", "publish", "publish_array", "read_array", "read_image", "remains",
    "segment_directory",
]  # fmt: skip

DEFAULT_KEY: Final = "tkshm"
# Long enough to ride out a writer copying an 8K image many times over; short enough that a
# stuck peer turns into a message instead of a frozen program.
DEFAULT_TIMEOUT: Final = 5.0
# Keys are names, not data: a bound keeps them printable and storable in the header page.
MAX_KEY_LENGTH: Final = 255
_SLUG_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_-]+")
_TIMER: Final = time.perf_counter


def native_name(key: str) -> str:
    """The OS-level name for a key: a readable slug plus a hash of the whole key.

    The key is never used as a path: ``../../etc/passwd`` becomes ``tkshm_etc_passwd_<hash>``,
    and two different keys share a segment only if 64 bits of their SHA-256 hashes collide
    (about one chance in 10^19 for any given pair).
    """
    check_key(key)
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    slug = _SLUG_UNSAFE.sub("_", key).strip("_")[:32]
    return f"tkshm_{slug}_{digest}" if slug else f"tkshm_{digest}"


def check_key(key: str, example: str = DEFAULT_KEY) -> None:
    """Refuse, with InvalidKeyError, a key that cannot name anything: not a string, empty,
    with a NUL (C strings end there), or longer than :data:`MAX_KEY_LENGTH`."""
    if not isinstance(key, str) or not key:
        raise InvalidKeyError(f"The key must be a non-empty string, for example {example!r}.")
    if "\0" in key:
        raise InvalidKeyError("The key must not contain a NUL character.")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidKeyError(f"The key is {len(key):,} characters long; use at most {MAX_KEY_LENGTH}.")


def segment_directory() -> str:
    """Where this user's segments live (POSIX); ``TKSHM_DIR`` overrides it."""
    return _backend.segment_directory()


@dataclass(frozen=True)
class CopyStats:
    """How long the last copy took: the lesson a teacher wants on screen."""

    lock_wait_s: float
    copy_s: float
    nbytes: int
    attempts: int = 1  # how many tries the reader's lock took (1: it was free at once)


@dataclass(frozen=True)
class FrameInfo:
    """The frame a read or write just handled: which one, and when it was published."""

    generation: int
    width: int
    height: int
    write_time_ns: int  # ``time.time_ns()`` when it was complete: latency is now minus this
    writer_pid: int
    slot: int

    @classmethod
    def of(cls, slot: Slot) -> FrameInfo:
        return cls(slot.generation, slot.width, slot.height, slot.write_time_ns, slot.writer_pid, slot.index)


@dataclass(frozen=True)
class SegmentInfo:
    """What a segment's header says, without its pixels."""

    key: str | None
    name: str
    path: str
    # "empty", "writing", "ready"; in listings also "damaged", "temporary" (POSIX: a file still
    # being created) or "gone" (Windows: the mapping is gone and only its lock file is left)
    state: str
    generation: int
    width: int
    height: int
    payload_bytes: int
    capacity: int
    writer_pid: int
    write_time_ns: int
    in_use: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _info_from_header(header: Header, key: str | None, name: str, path: str, in_use: bool) -> SegmentInfo:
    return SegmentInfo(
        key, name, path, header.state.name.lower(), header.generation, header.width,
        header.height, header.payload_length, header.capacity, header.writer_pid,
        header.write_time_ns, in_use,
    )  # fmt: skip


_open_segments: set[Segment] = set()


@atexit.register
def _detach_all() -> None:
    # A normal exit detaches cleanly, so the last holder removes the files right away.
    # (After a crash the next attach, create or clean removes them instead.)
    for segment in list(_open_segments):
        segment.close()


class Segment:
    """An attached segment: ``QSharedMemory`` after ``create()`` or ``attach()``.

    Use :meth:`create` (create or join) or :meth:`attach` (join only); ``close()``/``detach()``
    or the end of a ``with`` block detaches. The segment lives while any process is attached.
    """

    def __init__(self, key: str, create_capacity: int | None) -> None:
        self.key = key
        self.name = native_name(key)
        self.last_stats: CopyStats | None = None
        self.last_frame: FrameInfo | None = None
        # The file locks cannot keep two threads of this process apart; this lock does.
        self._thread_lock = threading.RLock()
        self._views: list[tuple[Image.Image, memoryview]] = []  # open view() blocks
        trace.step("key %r -> native name %s", key, self.name)
        try:
            self._file = _backend.SegmentFile.open(self.name, key, create_capacity)
        except SegmentNotFoundError:
            trace.step("attach: no segment named %s: nothing is published under this key", self.name)
            raise
        self._leases = Leases(key, self._file, _LOCKING, self._thread_lock)
        self._ring = Ring(self._leases)
        self._wakeups = Wakeups(self._new_waiter, self.peek_generation, self._thread_lock)
        _open_segments.add(self)
        if trace.on():
            how = "create: new segment" if self._file.created else "attach: existing segment"
            room = f"{self.size - HEADER_SIZE:,}"
            trace.step("%s %s, header + %s bytes for pixels; attached", how, self.path, room)

    @classmethod
    def create(cls, key: str = DEFAULT_KEY, capacity: int = 0) -> Segment:
        """Create the segment with room for ``capacity`` bytes of pixels, or attach to the
        existing one (which a later write grows if needed)."""
        return cls(key, max(0, capacity))

    @classmethod
    def attach(cls, key: str = DEFAULT_KEY) -> Segment:
        """Attach to an existing segment; raise :class:`SegmentNotFoundError` if none."""
        return cls(key, None)

    # -- the QSharedMemory vocabulary -------------------------------------------------
    @property
    def path(self) -> str:
        """The file (POSIX) or mapping name (Windows) behind the segment."""
        return self._file.path

    @property
    def is_attached(self) -> bool:
        return self._file.map is not None

    @property
    def size(self) -> int:
        """Bytes mapped, header included (``QSharedMemory::size``)."""
        return len(self._mapping())

    def detach(self) -> bool:
        """Unmap and leave; return True if we were the last holder and removed the segment.

        Idempotent: detaching twice is harmless.
        """
        _open_segments.discard(self)
        with self._thread_lock:
            while self._views:  # a view still open (its block never ended): it ends here
                pixels.close_view(*self._views.pop())
            self._wakeups.close()
            attached = self._file.map is not None
            removed = self._file.close()
        if not attached:
            return removed
        if removed:
            trace.step("detach: unmapped; we were the last process attached, so the segment was removed")
        elif any(other.name == self.name and other.is_attached for other in list(_open_segments)):
            # Our own other handle (a window's published image, say) holds a presence lock too.
            trace.step("detach: unmapped; the segment stays: this process is still attached to it")
        else:
            trace.step("detach: unmapped; the segment stays while other processes are attached")
        return removed

    close = detach

    def __enter__(self) -> Segment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def __repr__(self) -> str:
        state = "attached" if self.is_attached else "detached"
        return f"<Segment key={self.key!r} {state} path={self.path!r}>"

    def _mapping(self) -> Any:
        return self._leases.mapping()

    @contextmanager
    def lock(self, exclusive: bool = True, timeout: float = DEFAULT_TIMEOUT) -> Iterator[None]:
        """Hold the segment's inter-process lock (``QSharedMemory::lock``).

        Shared, it holds the newest frame for reading: nothing can change it until the block
        ends, yet the writer goes on writing other frames into other slots. Exclusive, it keeps
        other writers out and waits for the readers that are copying. Both are advisory file
        locks, so the kernel releases them the moment their holder exits or is killed -- no
        stale lock survives a crash. Raises :class:`LockTimeoutError` after ``timeout`` seconds.
        """
        with self._leases.lock(exclusive, timeout):
            yield

    # -- writing ------------------------------------------------------------------------
    def write_image(self, image: Image.Image, timeout: float = DEFAULT_TIMEOUT) -> SegmentInfo:
        """Copy an image into the segment as its newest frame, growing the segment if needed.

        Any Pillow mode is converted to RGBA first (outside the lock). Writers take turns
        under the exclusive data lock; readers never hold it (POSIX), so a slow or stopped
        reader cannot keep us waiting: we write into a slot that no reader holds and only
        then make the header name it (``tkshm.ring``). A still that nobody is reading is
        written in place, with the header saying ``WRITING`` for the whole copy, so if we die
        half-way readers see an incomplete image rather than a torn one; the next write
        repairs it.
        """
        rgba = to_rgba(image)
        width, height = rgba.size
        if width < 1 or height < 1:
            raise ImageError("The image is empty (0 pixels); load another image.")
        return self._write(
            width, height, lambda mapping, offset: pixels.copy_into(mapping, offset, rgba), timeout
        )

    def write_array(
        self, array: Pixels, channels: Channels | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> SegmentInfo:
        """Copy a NumPy array into the segment as its newest frame, as :meth:`write_image`
        does an image, without going through Pillow.

        ``array`` is ``uint8``: height x width x 4 (``channels="rgba"``, the default, or
        ``"bgra"``), height x width x 3 (``"rgb"``, the default, or ``"bgr"``, what OpenCV
        hands you) or height x width (gray). Any strides will do. An RGBA array is one memcpy
        into the mapping; the others are filled in channel by channel, alpha opaque. A bad
        array raises :class:`ArrayError` before anything is locked.
        """
        height, width, how = arrays.check(array, channels)
        return self._write(
            width, height, lambda mapping, offset: arrays.copy_into(mapping, offset, array, how), timeout
        )

    def _write(
        self, width: int, height: int, copy: Callable[[Any, int], None], timeout: float
    ) -> SegmentInfo:
        """Write one frame: ``copy(mapping, offset)`` puts its pixels at ``offset``."""
        deadline = _TIMER() + timeout
        with self._leases.writing(timeout):
            started = _TIMER()

            def fill(offset: int) -> None:  # the mapping as it is then: making room may grow it
                copy(self._mapping(), offset)

            header, slot = self._ring.write(width, height, deadline, timeout, fill)
            self._file.notify(header.generation)  # first: a waiting reader's latency starts here
            self.last_stats = CopyStats(self._leases.lock_wait, _TIMER() - started, slot.payload_length)
            self.last_frame = FrameInfo.of(slot)
            _trace_copy(self.last_stats, "into", header)
        return _info_from_header(header, self.key, self.name, self.path, True)

    # -- reading ------------------------------------------------------------------------
    @contextmanager
    def _complete_frame(self, timeout: float) -> Iterator[Slot]:
        """The newest frame, held for reading, if it is complete (else the error says why)."""
        with self._leases.frame(timeout) as (_, found):
            slot = complete(self.key, found)
            self.last_frame = FrameInfo.of(slot)
            yield slot

    def read_image(self, timeout: float = DEFAULT_TIMEOUT, into: Image.Image | None = None) -> Image.Image:
        """Copy the newest frame out under the reader's lock and return it as an RGBA image.

        The copy is ours: the returned image holds no reference to the mapping, so it stays
        intact after we unlock, after others write, and after we detach. With ``into``, an
        RGBA image of the frame's size, the pixels are copied into it in place and it is
        returned: a stream reader that keeps one image allocates nothing per frame.
        """
        with self._complete_frame(timeout) as slot:
            started = _TIMER()
            if into is not None:
                pixels.check_target(into, slot)
                pixels.copy_out_into(self._mapping(), slot.offset, into)
                image = into
            else:
                image = pixels.copy_out(self._mapping(), slot.offset, slot.width, slot.height)
            self._copied(started, slot.payload_length)
            _trace_copy(self.last_stats, "out of", slot)
        return image

    def read_preview(self, box: tuple[int, int], timeout: float = DEFAULT_TIMEOUT) -> Image.Image:
        """A quick copy scaled down to fit ``box`` (aspect kept, never enlarged), sampled
        straight from the mapping under the reader's lock.

        Nearest-neighbour sampling reads only the pixels it keeps: a preview of a 4K image
        costs a fraction of a millisecond, where copying all 33 MB out costs several. A viewer
        shows this at once and fetches the full image with :meth:`read_image` afterwards.
        """
        with self._complete_frame(timeout) as slot:
            started = _TIMER()
            size = fit_size((slot.width, slot.height), box)
            image = pixels.through_pixels(
                self._mapping(), slot.offset, slot.width, slot.height,
                lambda frame: frame.resize(size, Image.Resampling.NEAREST),
            )  # fmt: skip
            self._copied(started, image.width * image.height * BYTES_PER_PIXEL, attempts=1)
            _trace_copy(self.last_stats, "out of", slot, image.size)
        return image

    @contextmanager
    def view(self, timeout: float = DEFAULT_TIMEOUT) -> Iterator[Image.Image]:
        """The newest frame as a read-only RGBA image over shared memory itself: no copy.

        The reader's lock is held for the whole block, so no write can change these pixels
        while it runs; the writer meanwhile writes other slots (POSIX), so even a holder that
        is stopped cannot stall it. After the block the image is closed: using it raises
        ``ValueError``. Copy what you need to keep (``numpy.asarray(image)`` copies too).
        """
        with self._complete_frame(timeout) as slot:
            opened = pixels.view(self._mapping(), slot)
            self._views.append(opened)
            try:
                yield opened[0]
            finally:
                if opened in self._views:  # (unless detach() ended it already)
                    self._views.remove(opened)
                    pixels.close_view(*opened)

    def read_array(self, timeout: float = DEFAULT_TIMEOUT, into: Pixels | None = None) -> Pixels:
        """Copy the newest frame out as a NumPy array (height x width x 4, ``uint8``, RGBA),
        as :meth:`read_image` does an image: one copy, made under the reader's lease, that
        stays whole whatever is written next. With ``into`` (an array of that shape) the
        pixels go into it in place, so a stream reader allocates nothing per frame."""
        with self._complete_frame(timeout) as slot:
            started = _TIMER()
            array = arrays.copy_out(self._mapping(), slot, into)
            self._copied(started, slot.payload_length)
            _trace_copy(self.last_stats, "out of", slot)
        return array

    @contextmanager
    def array(self, timeout: float = DEFAULT_TIMEOUT) -> Iterator[Pixels]:
        """The newest frame as a read-only NumPy array that *is* the frame in shared memory:
        no copy (``numpy.shares_memory`` with the mapping), on the terms of :meth:`view`.

        The frame is leased for the whole block, so no write changes it while the block runs,
        and the writer never waits for it: it writes other slots. After the block the lease is
        gone and the writer may reuse the slot, so the array must not be used any more: NumPy
        cannot revoke an array, so it stays readable (its pages stay mapped while it lives,
        and reading it never crashes), but what it shows may be a newer frame or half of one.
        Copy what you keep inside the block (``a.copy()``, or :meth:`read_array`).
        """
        with self._complete_frame(timeout) as slot:
            yield arrays.view(self._mapping(), slot)

    def _copied(self, started: float, nbytes: int, attempts: int | None = None) -> None:
        leases = self._leases
        tries = leases.attempts if attempts is None else attempts
        self.last_stats = CopyStats(leases.lock_wait, _TIMER() - started, nbytes, tries)

    def info(self, timeout: float = DEFAULT_TIMEOUT) -> SegmentInfo:
        """The newest frame's header fields, read under the reader's lock; no pixels are copied."""
        with self._leases.frame(timeout) as (header, slot):
            if slot is not None:
                header = replace(
                    header, state=slot.state, generation=slot.generation, width=slot.width,
                    height=slot.height, writer_pid=slot.writer_pid, write_time_ns=slot.write_time_ns,
                )  # fmt: skip
            trace.step(
                "read the header: %s, %dx%d, generation %d",
                header.state.name, header.width, header.height, header.generation,
            )  # fmt: skip
        return _info_from_header(header, self.key, self.name, self.path, True)

    def publisher_alive(self) -> bool:
        """Whether the process that published the newest frame is still running: a viewer
        that gets no new frame can tell a paused stream from a publisher that died."""
        pid = self._leases.fresh_header(_TIMER(), DEFAULT_TIMEOUT).writer_pid
        return pid == os.getpid() or _backend.process_alive(pid)

    # -- waiting for the next frame ---------------------------------------------------
    def peek_generation(self) -> int:
        """Read the generation counter without locking: a cheap "has anything changed?" for
        followers to poll. A torn read only causes one extra, properly locked, read."""
        return self._leases.peek_generation()

    def wake_fileno(self) -> int | None:
        """A descriptor that becomes readable after each publish, for ``select`` or Tk's
        ``createfilehandler`` (then call :meth:`drain_wakeups`). None where there is no such
        thing (Windows): poll :meth:`peek_generation` there."""
        return self._wakeups.fileno()

    def drain_wakeups(self) -> None:
        """Take the pending wake-ups off :meth:`wake_fileno`, so it is readable again only on
        the next publish."""
        self._wakeups.drain()

    def wait_for_change(self, after_generation: int, timeout: float | None = None) -> int:
        """Sleep until a frame newer than ``after_generation`` is published; return its
        generation. After ``timeout`` seconds, return the current generation, which is then
        not newer than ``after_generation``: that is how a timeout shows.

        The writer wakes us itself (a datagram to our socket after each publish on POSIX, our
        event set on Windows), so we neither spin nor poll a timer (``tkshm.waiting``).
        """
        return self._wakeups.wait(after_generation, timeout)

    def _new_waiter(self) -> Waiter:
        self._mapping()  # detached: say so
        waiter: Waiter = self._file.waiter()
        return waiter


def _trace_copy(
    stats: CopyStats | None, direction: str, header: Header | Slot, preview: tuple[int, int] | None = None
) -> None:
    """The trace line of the copy just made (built only if someone listens)."""
    if stats is None or not trace.on():
        return
    what = f"{header.width}x{header.height}"
    if preview is not None and preview != (header.width, header.height):
        what = f"a {preview[0]}x{preview[1]} preview of {what}"
    then = "; header says READY" if direction == "into" else ""  # a write has just finished
    trace.step(
        "copied %s bytes (%s, generation %d) %s the segment in %.1f ms%s",
        f"{stats.nbytes:,}", what, header.generation, direction, stats.copy_s * 1000, then,
    )  # fmt: skip


# -- module-level conveniences: the API most scripts need ------------------------------
def publish(image: Image.Image, key: str = DEFAULT_KEY, timeout: float = DEFAULT_TIMEOUT) -> Segment:
    """Publish an image under ``key`` and return the handle that keeps it alive.

    The segment exists while the handle (or any other process) stays attached: ``close()``
    it or use ``with publish(img, key="k"):``. Publishing again, from any process, overwrites.
    """
    width, height = image.size
    segment = Segment.create(key, width * height * BYTES_PER_PIXEL)
    try:
        segment.write_image(image, timeout=timeout)
    except BaseException:
        segment.close()
        raise
    return segment


def read_image(
    key: str = DEFAULT_KEY, timeout: float = DEFAULT_TIMEOUT, into: Image.Image | None = None
) -> Image.Image:
    """Attach, lock, copy the image out, unlock, detach: the Qt example's display button.

    With ``into`` (an RGBA image of the frame's size) the pixels go into it, in place."""
    with Segment.attach(key) as segment:
        return segment.read_image(timeout=timeout, into=into)


def publish_array(
    array: Pixels, key: str = DEFAULT_KEY, channels: Channels | None = None, timeout: float = DEFAULT_TIMEOUT
) -> Segment:
    """:func:`publish` for a NumPy array (see :meth:`Segment.write_array` for the shapes):
    returns the handle that keeps the segment alive."""
    height, width, _ = arrays.check(array, channels)
    segment = Segment.create(key, width * height * BYTES_PER_PIXEL)
    try:
        segment.write_array(array, channels, timeout=timeout)
    except BaseException:
        segment.close()
        raise
    return segment


def read_array(
    key: str = DEFAULT_KEY, timeout: float = DEFAULT_TIMEOUT, into: Pixels | None = None
) -> Pixels:
    """:func:`read_image` for NumPy: attach, copy the newest frame out as a height x width x 4
    RGBA array (or into ``into``), detach."""
    with Segment.attach(key) as segment:
        return segment.read_array(timeout=timeout, into=into)


def info(key: str = DEFAULT_KEY, timeout: float = DEFAULT_TIMEOUT) -> SegmentInfo:
    """The header of the segment under ``key``, read under the shared lock.

    Read-only, also for an orphan (every holder gone): it is reported as it is, with
    ``in_use`` False, and left for ``clean`` or the next attach or create to remove -- where
    attaching, as :func:`read_image` does, would remove it and then find nothing.
    """
    for found in _listed(native_name(key)):  # probes presence without waiting, removes nothing
        if not found.in_use:
            return replace(found, key=key)
    with Segment.attach(key) as segment:
        return segment.info(timeout=timeout)


def list_segments() -> list[SegmentInfo]:
    """This user's segments, in use or orphaned, from their headers (never waiting on a lock).

    An orphan is a segment whose every holder has gone (killed, typically); it is listed as
    such, and ``clean`` or the next attach or create removes it. While a writer writes, a
    segment is listed with its newest complete frame (``writing`` only while its very first
    is being written); a file still being created is ``temporary``.
    """
    return _listed(None)


def _listed(only: str | None) -> list[SegmentInfo]:
    """The segments :func:`list_segments` reports; with ``only``, just the one of that name."""
    found: list[SegmentInfo] = []
    for name, path, size, in_use, page in _backend.list_entries(only):
        trace.step("list: %s is %s", path, "in use" if in_use else "orphaned: no process is attached to it")
        if page is None:  # (Windows) only a lock file is left, or a header caught half-written
            state, key = ("writing" if in_use else "gone"), None
        else:
            key = read_key(page)
            try:
                header = read_header(page, size)
            except CorruptSegmentError:
                state = "temporary" if name.endswith(_backend.TEMP_SUFFIX) else "damaged"
            else:
                found.append(_info_from_header(header, key, name, path, in_use))
                continue
        found.append(SegmentInfo(key, name, path, state, 0, 0, 0, 0, 0, 0, 0, in_use))
    return found


def remains(key: str) -> list[str]:
    """What the operating system still holds for ``key``: files (POSIX), or the lock file and
    named mappings (Windows). Empty once the last holder has detached -- the lifetime promise
    that tests (and :mod:`tkshm.testing`) check."""
    return _backend.remains(native_name(key))


def clean() -> list[str]:
    """Remove this user's orphaned segments (no process attached); never one in use."""
    return _backend.remove_orphans()
