"""Named shared memory for images: Qt's ``QSharedMemory`` lesson, in Python.

A *segment* is a block of memory that several processes map at once, found by a *key*.
The protocol, in six lines:

1. **Attach** opens the segment named after the key (creating it if we publish) and marks
   us present; **detach** unmaps it, and the last process to detach removes it -- even when
   the others were killed, because presence is a lock the kernel drops on exit.
2. Every copy happens under an inter-process **lock**, with a timeout. A process that dies
   holding it releases it at once.
3. The writer marks a frame ``WRITING``, copies the pixels, then marks it ``READY`` with a
   new **generation**; a reader that finds ``WRITING`` knows the writer died half-way.
4. A bigger image grows the segment in place; it never shrinks under other processes.
5. Readers copy the pixels out before unlocking: nothing that points into the mapping
   outlives the lock (:meth:`Segment.view` is the one exception, and it ends with its block).
6. **Frames** (``tkshm.frames``): the pixels live in up to ``MAX_SLOTS`` (4) slots, each
   with a lock of its own. A reader locks only the slot the header names, shared, while it
   copies; the writer writes a slot nobody holds and then makes the header name it, so a
   slow, stopped or killed reader never makes it wait, and a writer that never pauses never
   starves a reader. A still nobody is reading is written in place in slot 0 -- Qt's one
   buffer under one lock -- so memory is one frame for a still and at most four for a
   stream. After each publish the writer wakes the readers waiting in
   :meth:`Segment.wait_for_change` (a datagram socket each, ``tkshm._wake``).

On Windows there is one frame under a readers-writer lock (the data lock): readers take it
shared, so there a stopped reader makes the writer wait (up to its timeout), and waiting
readers look at the generation (every 2 ms at first, 20 ms once nothing comes) instead of
being woken.

The header (``tkshm.header``) is a 76-byte record in the first page; pixels follow at 4096
(slot 0), and further slots after it:

=======  ====  ===============  ===================================================
offset   size  field            meaning
=======  ====  ===============  ===================================================
0        8     magic            ``b"TKSHMSEG"``
8        2     version          2
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
2048     256   slot records     where each frame slot's pixels are (``tkshm.frames``)
=======  ====  ===============  ===================================================

Where the segment lives: a file in ``/dev/shm/tkshm-<uid>/`` (0700) on Linux, the same in a
per-user temporary directory elsewhere on POSIX (``TKSHM_DIR`` overrides both), and named file
mappings (``CreateFileMapping`` through ``mmap``'s ``tagname``) on Windows, where a mapping
cannot grow in place: there a one-page directory mapping names the current data mapping, and
growing makes a successor that the others follow under the lock (``tkshm._windows``).

Errors all derive from :class:`TkshmError`; see :mod:`tkshm.errors` for the tree.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import re
import select
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from typing import Any, Final, TypeVar

from PIL import Image

from . import _locking, frames, trace
from .errors import (
    CorruptSegmentError,
    ImageError,
    ImageTooLargeError,
    IncompleteImageError,
    InvalidKeyError,
    LockTimeoutError,
    OutOfSharedMemoryError,
    SegmentNotFoundError,
    TkshmError,
    UnsafePathError,
)
from .frames import Slot
from .header import BYTES_PER_PIXEL, GENERATION_OFFSET, HEADER_SIZE, MAX_SLOTS, RECORD_SIZE, Header, State
from .images import fit_size, to_rgba

# The platform is decided once, here; nothing else in tkshm asks which OS it runs on.
if sys.platform == "win32":  # pragma: no cover - runs only in the Windows CI job
    from . import _windows as _backend
else:
    from . import _posix as _backend

__all__ = [
    "DEFAULT_KEY",
    "DEFAULT_TIMEOUT",
    "MAX_SLOTS",
    "CopyStats",
    "CorruptSegmentError",
    "FrameInfo",
    "ImageError",
    "ImageTooLargeError",
    "IncompleteImageError",
    "InvalidKeyError",
    "LockTimeoutError",
    "OutOfSharedMemoryError",
    "Segment",
    "SegmentInfo",
    "SegmentNotFoundError",
    "TkshmError",
    "UnsafePathError",
    "clean",
    "info",
    "list_segments",
    "native_name",
    "publish",
    "read_image",
    "remains",
    "segment_directory",
]

DEFAULT_KEY: Final = "tkshm"
# Long enough to ride out a writer copying an 8K image many times over; short enough that a
# stuck peer turns into a message instead of a frozen program.
DEFAULT_TIMEOUT: Final = 5.0
# Keys are names, not data: a bound keeps them printable and storable in the header page.
MAX_KEY_LENGTH: Final = 255
_KEY_OFFSET: Final = 128
_KEY_LENGTH: Final = struct.Struct("<H")
_GENERATION: Final = struct.Struct("<Q")
_SLUG_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_-]+")
_TIMER: Final = time.perf_counter
# Where no wake-up socket exists (Windows), a waiting reader looks at the generation: first
# after POLL_INTERVAL, then a quarter later each time, up to POLL_LONGEST. A stream's next frame
# is seen within a few ms; a reader of a silent segment wakes 50 times a second.
POLL_INTERVAL: Final = 0.002
POLL_LONGEST: Final = 0.02
# A header caught while the writer rewrites it fails its checksum; it is read again this often.
_TORN_RETRIES: Final = 20
T = TypeVar("T")


def native_name(key: str) -> str:
    """The OS-level name for a key: a readable slug plus a hash of the whole key.

    The key is never used as a path: ``../../etc/passwd`` becomes ``tkshm_etc_passwd_<hash>``,
    and two different keys share a segment only if 64 bits of their SHA-256 hashes collide
    (about one chance in 10^19 for any given pair).
    """
    if not isinstance(key, str) or not key:
        raise InvalidKeyError("The key must be a non-empty string, for example 'tkshm'.")
    if "\0" in key:
        raise InvalidKeyError("The key must not contain a NUL character.")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidKeyError(f"The key is {len(key):,} characters long; use at most {MAX_KEY_LENGTH}.")
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    slug = _SLUG_UNSAFE.sub("_", key).strip("_")[:32]
    return f"tkshm_{slug}_{digest}" if slug else f"tkshm_{digest}"


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
        self._lock_wait = 0.0
        self._attempts = 1
        # The file locks are per open file, so they cannot keep two threads of this process
        # apart; this lock does (a window's worker thread and its follow timer, say).
        self._thread_lock = threading.RLock()
        self._held: str | None = None  # "shared" or "exclusive" while we hold the data lock
        self._pinned: tuple[Header, Slot | None] | None = None  # the frame a reader holds
        self._waiter: Any = None  # the wake-up socket, made by the first wait
        self._views: list[tuple[Image.Image, memoryview]] = []  # open view() blocks
        trace.step("key %r -> native name %s", key, self.name)
        try:
            self._file = _backend.SegmentFile.open(self.name, key, create_capacity)
        except SegmentNotFoundError:
            trace.step("attach: no segment named %s: nothing is published under this key", self.name)
            raise
        _open_segments.add(self)
        if trace.on():
            how = "create: new segment" if self._file.created else "attach: existing segment"
            pixels = f"{self.size - HEADER_SIZE:,}"
            trace.step("%s %s, header + %s bytes for pixels; attached", how, self.path, pixels)

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
                _close_view(*self._views.pop())
            if self._waiter is not None:
                self._waiter.close()
                self._waiter = None
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
        if self._file.map is None:
            raise TkshmError(f"Segment {self.key!r} is detached; attach to it again.")
        return self._file.map

    @contextmanager
    def lock(self, exclusive: bool = True, timeout: float = DEFAULT_TIMEOUT) -> Iterator[None]:
        """Hold the segment's inter-process lock (``QSharedMemory::lock``).

        Shared, it holds the newest frame for reading: nothing can change it until the block
        ends, yet the writer goes on writing other frames into other slots. Exclusive, it keeps
        other writers out and waits for the readers that are copying. Both are advisory file
        locks, so the kernel releases them the moment their holder exits or is killed -- no
        stale lock survives a crash. Raises :class:`LockTimeoutError` after ``timeout`` seconds.
        """
        with self._thread_lock:
            if self._held is not None or self._pinned is not None:
                # Nested inside our own lock (e.g. read_image in a ``with lock()`` block).
                # A second flock on the same open file would *convert* the lock, and its
                # unlock would end the outer block's protection too; so reuse what we hold.
                if exclusive and self._held != "exclusive":
                    raise TkshmError(
                        f"Segment {self.key!r} is locked for reading here; release that lock before writing."
                    )
                yield
                return
            if not exclusive:
                with self._frame(timeout):
                    yield
                return
            with self._writing(timeout):
                leased = self._lease_all(timeout)
                self._all_leased = True
                try:
                    yield
                finally:
                    self._all_leased = False
                    for index in leased:
                        self._release(index)

    def _locked(self, exclusive: bool, timeout: float) -> Iterator[None]:
        self._mapping()
        kind = "exclusive" if exclusive else "shared"
        trace.step("lock requested (%s)", kind)
        fd = self._file.lock_fd
        waited = _locking.wait_for(lambda: _backend.try_lock(fd, exclusive), timeout)
        if waited is None:
            trace.step("lock not granted after %g s: another process holds it", timeout)
            raise LockTimeoutError(self.key, timeout)
        self._lock_wait = waited
        self._held = kind
        trace.step("lock granted (%s) after %.2f ms", kind, self._lock_wait * 1000)
        try:
            self._file.remap(exclusive)  # another process may have grown the segment
            yield
        finally:
            self._held = None
            if self._file.lock_fd >= 0:  # detached inside the block: closing it unlocked it
                _backend.unlock(self._file.lock_fd)
            trace.step("unlock (%s)", kind)

    @contextmanager
    def _writing(self, timeout: float) -> Iterator[None]:
        """The data lock, exclusive: writers take turns under it. Readers never take it on
        POSIX (they lease frame slots), so a reader cannot keep a writer waiting."""
        with self._thread_lock:
            if self._held is not None:
                if self._held != "exclusive":
                    raise TkshmError(
                        f"Segment {self.key!r} is locked for reading here; release that lock before writing."
                    )
                yield
                return
            if self._pinned is not None:
                raise TkshmError(
                    f"Segment {self.key!r} is locked for reading here; release that lock before writing."
                )
            yield from self._locked(True, timeout)

    # -- frame slots: a lease is a lock on one slot's file ------------------------------
    def _try_lease(self, index: int, exclusive: bool) -> bool:
        return _backend.try_lock(self._file.slot_lock_fd(index), exclusive)

    def _release(self, index: int) -> None:
        if self._file.map is not None:  # detached inside the block: closing it unlocked it
            _backend.unlock(self._file.slot_lock_fd(index))

    def _lease_all(self, timeout: float) -> list[int]:
        """Every slot, exclusively, waiting for the readers that are copying (POSIX)."""
        if not _backend.SLOT_LOCKS:
            return []  # Windows: the exclusive data lock already keeps readers out
        leased: list[int] = []
        try:
            for index in range(MAX_SLOTS):
                if _locking.wait_for(lambda i=index: self._try_lease(i, True), timeout) is None:  # type: ignore[misc]
                    raise LockTimeoutError(self.key, timeout)
                leased.append(index)
        except BaseException:
            for index in leased:
                self._release(index)
            raise
        return leased

    # -- header and pixels ------------------------------------------------------------
    def _header(self) -> Header:
        mapping = self._mapping()
        # Slicing an mmap copies 76 bytes; a memoryview would stay exported inside the
        # traceback of a CorruptSegmentError and make the mapping impossible to close.
        return Header.unpack(mapping[:RECORD_SIZE], len(mapping))

    def _fresh_header(self, started: float, timeout: float) -> Header:
        """The header, read without a lock: mapped again if the file grew, and read again if
        it was caught half-rewritten. A header that fails its checksum while a writer holds
        the data lock is being written (wait, up to ``timeout``); with no writer, damaged."""
        misses = 0
        while True:
            if _backend.SLOT_LOCKS:
                self._file.remap()  # a writer may have grown the file (cheap: one fstat)
            try:
                return self._header()
            except CorruptSegmentError:
                fd = self._file.lock_fd
                if _backend.try_lock(fd, False):  # no writer: damaged, unless it was just now
                    _backend.unlock(fd)
                    misses += 1
                    if misses >= _TORN_RETRIES:
                        raise
                elif _TIMER() - started >= timeout:
                    trace.step("lock not granted after %g s: a writer is rewriting the header", timeout)
                    raise LockTimeoutError(self.key, timeout) from None
            time.sleep(0.0002)

    def _slot_of(self, header: Header) -> Slot | None:
        """The slot record the header names (under its lease), or None for an empty segment."""
        if header.state is State.EMPTY:
            return None
        mapping = self._mapping()
        slot = frames.read_slot(mapping, header.slot, len(mapping))
        if not slot.allocated or slot.generation == 0:
            # A segment written before the slots were filled in: the pixels after the header.
            return Slot(header.slot, header.state, header.generation, header.width, header.height,
                        HEADER_SIZE, header.capacity, header.write_time_ns, header.writer_pid)  # fmt: skip
        return slot

    @contextmanager
    def _frame(self, timeout: float) -> Iterator[tuple[Header, Slot | None]]:
        """Hold the newest frame for reading: its header and slot, which no write can change
        until the block ends. The trace calls it the lock, shared: it is the reader's lock."""
        with self._thread_lock:
            if self._pinned is not None:
                yield self._pinned
                return
            if self._held is not None or not _backend.SLOT_LOCKS:
                # Under our own exclusive lock, or on Windows under the shared data lock.
                held = _nothing() if self._held is not None else contextmanager(self._locked)(False, timeout)
                with held:
                    self._attempts = 1
                    self._pinned = header_slot = self._newest_unleased()
                    try:
                        yield header_slot
                    finally:
                        self._pinned = None
                return
            header, slot = self._lease_newest(timeout)
            self._pinned = (header, slot)
            try:
                yield header, slot
            finally:
                self._pinned = None
                self._release(header.slot)
                trace.step("unlock (shared)")

    def _newest_unleased(self) -> tuple[Header, Slot | None]:
        header = self._header()
        return header, self._slot_of(header)

    def _lease_newest(self, timeout: float) -> tuple[Header, Slot | None]:
        """Take a shared lease on the slot the header names; follow the header if the writer
        moved on before we got it. Never takes the data lock, so it never waits for a writer
        that is writing some other slot."""
        self._mapping()
        trace.step("lock requested (shared)")
        started = _TIMER()
        pause = 0.0002
        self._attempts = 0
        while True:
            self._attempts += 1
            header = self._fresh_header(started, timeout)
            if self._try_lease(header.slot, False):
                try:
                    self._file.remap()  # the slot may lie beyond what we had mapped
                    frames.note_lease(self._mapping())
                    slot = self._slot_of(header)
                    if slot is None or slot.state is State.READY or self._header().slot == slot.index:
                        # Empty, a complete frame, or one its writer left half-written.
                        self._lock_wait = _TIMER() - started
                        trace.step("lock granted (shared) after %.2f ms", self._lock_wait * 1000)
                        return header, slot
                except BaseException:
                    self._release(header.slot)
                    raise
                self._release(header.slot)  # emptied while we looked: the header names another
            else:
                frames.note_lease(self._mapping(), missed=True)  # keep the frames apart from now on
            waited = _TIMER() - started
            if waited >= timeout:
                trace.step("lock not granted after %g s: another process holds it", timeout)
                raise LockTimeoutError(self.key, timeout)
            time.sleep(min(pause, timeout - waited))
            pause = min(pause * 2, 0.005)

    def peek_generation(self) -> int:
        """Read the generation counter without locking: a cheap "has anything changed?" for
        followers to poll. A torn read only causes one extra, properly locked, read."""
        self._mapping()  # detached: say so
        if not _backend.SLOT_LOCKS:
            # Windows: another process may have grown the segment into a successor mapping;
            # the directory says which (a CRC-checked record, read without the lock).
            with self._thread_lock, contextlib.suppress(SegmentNotFoundError):
                if self._pinned is None and self._held is None:  # (never under a held frame)
                    self._file.remap()
        return int(_GENERATION.unpack_from(self._mapping(), GENERATION_OFFSET)[0])

    def info(self, timeout: float = DEFAULT_TIMEOUT) -> SegmentInfo:
        """The newest frame's header fields, read under the reader's lock; no pixels are copied."""
        with self._frame(timeout) as (header, slot):
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
        pid = self._fresh_header(_TIMER(), DEFAULT_TIMEOUT).writer_pid
        return pid == os.getpid() or _backend.process_alive(pid)

    def write_image(self, image: Image.Image, timeout: float = DEFAULT_TIMEOUT) -> SegmentInfo:
        """Copy an image into the segment as its newest frame, growing the segment if needed.

        Any Pillow mode is converted to RGBA first (outside the lock). Writers take turns
        under the exclusive data lock; readers never hold it (POSIX), so a slow or stopped
        reader cannot keep us waiting: we write into a slot that no reader holds and only
        then make the header name it. A still that nobody is reading is written in place,
        with the header saying ``WRITING`` for the whole copy, so if we die half-way readers
        see an incomplete image rather than a torn one; the next write repairs it.
        """
        rgba = to_rgba(image)
        width, height = rgba.size
        if width < 1 or height < 1:
            raise ImageError("The image is empty (0 pixels); load another image.")
        nbytes = width * height * BYTES_PER_PIXEL
        deadline = _TIMER() + timeout
        with self._writing(timeout):
            started = _TIMER()
            try:
                old = self._header()
            except CorruptSegmentError:
                old = None  # a damaged or hostile header: this write repairs it
            slot, leased, in_place = self._choose_slot(old, nbytes, deadline, timeout)
            try:
                header, slot = self._fill(old, slot, rgba, in_place)
            finally:
                if leased:
                    self._release(slot.index)  # before the header names it: readers find it free
            mapping = self._mapping()
            mapping[:RECORD_SIZE] = header.pack()
            self._file.notify(header.generation)  # first: a waiting reader's latency starts here
            self.last_stats = CopyStats(self._lock_wait, _TIMER() - started, nbytes)
            self.last_frame = FrameInfo.of(slot)
            self._trace_copy("into", header)
        return _info_from_header(header, self.key, self.name, self.path, True)

    def _fill(self, old: Header | None, slot: Slot, rgba: Image.Image, in_place: bool) -> tuple[Header, Slot]:
        """Write the frame into ``slot`` (ours alone); return the header that will name it.

        In place (the slot the header names), the header says ``WRITING`` during the copy."""
        mapping = self._mapping()
        generation = (old.generation if old is not None else 0) + 1
        in_place = in_place or old is None or old.state is State.EMPTY
        slot = replace(slot, state=State.WRITING, generation=generation, width=rgba.width,
                       height=rgba.height, write_time_ns=0, writer_pid=os.getpid())  # fmt: skip
        frames.write_slot(mapping, slot)
        header = Header(
            State.WRITING, generation, rgba.width, rgba.height, len(mapping) - HEADER_SIZE,
            os.getpid(), time.time_ns(), slot=slot.index,
        )  # fmt: skip
        if in_place:
            mapping[:RECORD_SIZE] = header.pack()
            trace.step("header says WRITING, generation %d", header.generation)
        else:
            assert old is not None
            trace.step("writing frame slot %d; the header still names slot %d, which readers may be copying",
                       slot.index, old.slot)  # fmt: skip
        self._write_key(mapping)
        _copy_into(mapping, slot.offset, rgba)
        slot = replace(slot, state=State.READY, write_time_ns=time.time_ns())
        frames.write_slot(mapping, slot)
        return replace(header, state=State.READY, write_time_ns=slot.write_time_ns), slot

    def _choose_slot(
        self, old: Header | None, nbytes: int, deadline: float, timeout: float
    ) -> tuple[Slot, bool, bool]:
        """Pick the slot for the next frame and lease it exclusively; return it, whether we
        took a lease (the exclusive data lock is the lease on Windows and under ``lock()``),
        and whether it is written in place (the header then says ``WRITING``).

        A still nobody reads goes in place into slot 0, as one buffer under one lock. While
        readers are reading, a frame goes into a slot that is neither the newest nor held by
        a reader (the oldest such first), a new slot is added if there is none, and only if
        every slot is held do we wait -- for the first reader to finish its copy.
        """
        mapping = self._mapping()
        if not _backend.SLOT_LOCKS or self._all_leased:
            return self._in_place(nbytes), False, True
        if not frames.keep_apart(mapping, frames.read_table(mapping, len(mapping))):
            slot = self._compact(nbytes)
            if slot is not None:
                return slot, True, True
        newest = old.slot if old is not None and old.state is not State.EMPTY else None
        pause = 0.0002
        while True:
            slot = self._free_slot(newest, nbytes)
            if slot is not None:
                return slot, True, slot.index == newest
            now = _TIMER()
            if now >= deadline:
                trace.step("no frame slot free after %g s: every slot is being read", timeout)
                raise LockTimeoutError(self.key, timeout)
            time.sleep(min(pause, deadline - now))
            pause = min(pause * 2, 0.002)

    _all_leased = False  # True while lock(exclusive=True) holds every slot

    def _in_place(self, nbytes: int) -> Slot:
        """Slot 0 over the whole segment, grown if the image needs more; the other slots are
        forgotten (call with every slot ours: their readers would see slot 0's pixels)."""
        if HEADER_SIZE + nbytes > len(self._mapping()):
            self._grow_trace(nbytes)
            self._file.grow(HEADER_SIZE + nbytes)
        mapping = self._mapping()
        slot = Slot(0, offset=HEADER_SIZE, capacity=len(mapping) - HEADER_SIZE)
        frames.write_slot(mapping, replace(slot, state=State.WRITING, generation=1))  # never an empty table
        for index in range(1, MAX_SLOTS):
            frames.write_slot(mapping, Slot(index))
        return slot

    def _grow_trace(self, nbytes: int) -> None:
        if trace.on():
            trace.step(
                "grow: the image needs %s bytes, the segment holds %s; growing it",
                f"{nbytes:,}", f"{len(self._mapping()) - HEADER_SIZE:,}",
            )  # fmt: skip

    def _compact(self, nbytes: int) -> Slot | None:
        """If no reader holds any slot, go back to one frame in place: lease them all, keep
        slot 0 and forget the others. None if some reader holds one."""
        leased: list[int] = []
        try:
            # A reader can hold only slot 0 or a slot in use (it checks the slot after leasing).
            for slot in frames.read_table(self._mapping(), len(self._mapping())):
                if slot.index == 0 or slot.allocated:
                    if not self._try_lease(slot.index, True):
                        return None
                    leased.append(slot.index)
            slot = self._in_place(nbytes)
            leased.remove(0)
            return slot
        finally:
            for index in leased:
                self._release(index)

    def _free_slot(self, newest: int | None, nbytes: int) -> Slot | None:
        """A slot no reader holds, leased exclusively, with room for ``nbytes``; or None."""
        mapping = self._mapping()
        table = frames.read_table(mapping, len(mapping))
        # The oldest frames first, then unused slots, and the newest frame only as a last resort.
        order = sorted((s for s in table if s.index != newest), key=lambda s: (not s.allocated, s.generation))
        for slot in [*order, *(table[newest : newest + 1] if newest is not None else [])]:
            if not self._try_lease(slot.index, True):
                continue
            if slot.capacity >= nbytes:
                return slot
            try:
                return self._allocate(slot.index, nbytes)
            except BaseException:
                self._release(slot.index)
                raise
        return None

    def _allocate(self, index: int, nbytes: int) -> Slot:
        """Room for slot ``index`` at the end of the segment, which grows (never shrinks)."""
        offset = frames.page_round(len(self._mapping()))
        capacity = frames.page_round(nbytes)
        trace.step("slot %d: %s bytes at offset %s", index, f"{capacity:,}", f"{offset:,}")
        self._file.grow(offset + capacity)
        return Slot(index, offset=offset, capacity=capacity)

    def _write_key(self, mapping: Any) -> None:
        raw = self.key.encode("utf-8", "surrogatepass")
        mapping[_KEY_OFFSET : _KEY_OFFSET + 2 + len(raw)] = _KEY_LENGTH.pack(len(raw)) + raw

    def _complete(self, header: Header, slot: Slot | None) -> Slot:
        if slot is None:
            trace.step("header says EMPTY: no image has been written yet")
            raise SegmentNotFoundError(self.key)
        if slot.state is not State.READY:
            trace.step("header says WRITING: the writer stopped half-way; nothing copied")
            raise IncompleteImageError(self.key)
        self.last_frame = FrameInfo.of(slot)
        return slot

    def _trace_copy(
        self, direction: str, header: Header | Slot, preview: tuple[int, int] | None = None
    ) -> None:
        """The trace line of the copy just made (built only if someone listens)."""
        stats = self.last_stats
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

    def read_image(self, timeout: float = DEFAULT_TIMEOUT, into: Image.Image | None = None) -> Image.Image:
        """Copy the newest frame out under the reader's lock and return it as an RGBA image.

        The copy is ours: the returned image holds no reference to the mapping, so it stays
        intact after we unlock, after others write, and after we detach. With ``into``, an
        RGBA image of the frame's size, the pixels are copied into it in place and it is
        returned: a stream reader that keeps one image allocates nothing per frame.
        """
        with self._frame(timeout) as (header, found):
            started = _TIMER()
            slot = self._complete(header, found)
            if into is not None:
                _check_target(into, slot)
                _copy_out_into(self._mapping(), slot.offset, into)
                image = into
            else:
                image = _copy_out(self._mapping(), slot.offset, slot.width, slot.height)
            elapsed = _TIMER() - started
            self.last_stats = CopyStats(self._lock_wait, elapsed, slot.payload_length, self._attempts)
            self._trace_copy("out of", slot)
        return image

    def read_preview(self, box: tuple[int, int], timeout: float = DEFAULT_TIMEOUT) -> Image.Image:
        """A quick copy scaled down to fit ``box`` (aspect kept, never enlarged), sampled
        straight from the mapping under the reader's lock.

        Nearest-neighbour sampling reads only the pixels it keeps: a preview of a 4K image
        costs a fraction of a millisecond, where copying all 33 MB out costs several. A viewer
        shows this at once and fetches the full image with :meth:`read_image` afterwards.
        """
        with self._frame(timeout) as (header, found):
            started = _TIMER()
            slot = self._complete(header, found)
            size = fit_size((slot.width, slot.height), box)
            image = _through_pixels(
                self._mapping(), slot.offset, slot.width, slot.height,
                lambda pixels: pixels.resize(size, Image.Resampling.NEAREST),
            )  # fmt: skip
            nbytes = image.width * image.height * BYTES_PER_PIXEL
            self.last_stats = CopyStats(self._lock_wait, _TIMER() - started, nbytes)
            self._trace_copy("out of", slot, image.size)
        return image

    @contextmanager
    def view(self, timeout: float = DEFAULT_TIMEOUT) -> Iterator[Image.Image]:
        """The newest frame as a read-only RGBA image over shared memory itself: no copy.

        The reader's lock is held for the whole block, so no write can change these pixels
        while it runs; the writer meanwhile writes other slots (POSIX), so even a holder that
        is stopped cannot stall it. After the block the image is closed: using it raises
        ``ValueError``. Copy what you need to keep (``numpy.asarray(image)`` copies too).
        """
        with self._frame(timeout) as (header, found):
            slot = self._complete(header, found)
            buffer = memoryview(self._mapping())[slot.offset : slot.offset + slot.payload_length]
            image = Image.frombuffer("RGBA", (slot.width, slot.height), buffer, "raw", "RGBA", 0, 1)  # type: ignore[arg-type]
            opened = (image, buffer)
            self._views.append(opened)
            del image, buffer
            try:
                yield opened[0]
            finally:
                if opened in self._views:  # (unless detach() ended it already)
                    self._views.remove(opened)
                    _close_view(*opened)

    # -- waiting for the next frame ---------------------------------------------------
    def _wake_socket(self) -> Any:
        with self._thread_lock:
            if self._waiter is None and _backend.SLOT_LOCKS:
                self._mapping()
                try:
                    self._waiter = self._file.waiter()
                except OSError as exc:  # a directory too deep for a socket path: poll instead
                    trace.step("no wake-up socket (%s); polling the generation instead", exc.strerror or exc)
                    self._waiter = False
            return self._waiter or None

    def wake_fileno(self) -> int | None:
        """A descriptor that becomes readable after each publish, for ``select`` or Tk's
        ``createfilehandler`` (then call :meth:`drain_wakeups`). None where there is no such
        thing (Windows): poll :meth:`peek_generation` there."""
        waiter = self._wake_socket()
        return None if waiter is None else int(waiter.fileno())

    def drain_wakeups(self) -> None:
        """Take the pending wake-ups off :meth:`wake_fileno`, so it is readable again only on
        the next publish."""
        waiter = self._wake_socket()
        if waiter is not None:
            waiter.drain()

    def wait_for_change(self, after_generation: int, timeout: float | None = None) -> int:
        """Sleep until a frame newer than ``after_generation`` is published; return its
        generation. After ``timeout`` seconds, return the current generation, which is then
        not newer than ``after_generation``: that is how a timeout shows.

        The writer wakes us itself (a datagram to our socket after each publish), so we
        neither spin nor poll a timer (POSIX). On Windows we look at the generation, every
        ``POLL_INTERVAL`` at first and less often the longer nothing comes (``POLL_LONGEST``).
        """
        deadline = None if timeout is None else _TIMER() + timeout
        waiter = self._wake_socket()  # registered before we look, so no publish is missed
        woken = False
        pause = POLL_INTERVAL
        while True:
            generation = self.peek_generation()
            if generation > after_generation:
                return generation  # a wake-up left unread is drained by the next wait
            if woken:  # woken for an older frame (or before we looked): drain, then sleep again
                waiter.drain()
            left = None if deadline is None else deadline - _TIMER()
            if left is not None and left <= 0:
                return generation
            if waiter is None:
                time.sleep(pause if left is None else min(pause, left))
                pause = min(pause * 1.25, POLL_LONGEST)
                continue
            woken = bool(select.select([waiter], [], [], left)[0])


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _close_view(image: Image.Image, buffer: memoryview) -> None:
    image.close()  # drops Pillow's hold on the buffer...
    buffer.release()  # ...so that the mapping can be closed again


def _check_target(into: Image.Image, slot: Slot) -> None:
    if into.mode != "RGBA" or into.size != (slot.width, slot.height):
        raise ImageError(
            f"Cannot read the {slot.width}x{slot.height} frame into a {into.width}x{into.height} "
            f"{into.mode} image; pass an RGBA image of the frame's size."
        )


def _through_pixels(mapping: Any, offset: int, width: int, height: int, use: Callable[[Image.Image], T]) -> T:
    """Call ``use`` on the mapping's pixels wrapped as a Pillow image, without copying them.

    ``frombuffer`` makes an image whose rows *are* the shared memory. It must not outlive
    this call (the mapping cannot be closed while it exists, and its pixels change with the
    next write), so ``use`` gets it as a temporary and must return something else.
    """
    view = memoryview(mapping)[offset : offset + width * height * BYTES_PER_PIXEL]
    try:
        return use(Image.frombuffer("RGBA", (width, height), view, "raw", "RGBA", 0, 1))  # type: ignore[arg-type]
    finally:
        view.release()


def _paste(rgba: Image.Image) -> Callable[[Image.Image], None]:
    def paste(target: Image.Image) -> None:
        # frombuffer marks its images read-only to protect the buffer, and paste() would then
        # copy the target first; here writing through is the point. (``readonly`` is an
        # attribute of Pillow's Image class, not a documented API: the cross-process tests
        # would catch a Pillow that changed it.)
        target.readonly = 0
        target.paste(rgba, (0, 0))

    return paste


def _copy_into(mapping: Any, offset: int, rgba: Image.Image) -> None:
    """Copy RGBA pixels into the mapping with one pass of memcpy.

    ``Image.tobytes()`` encodes in small chunks and joins them (about twice the cost of a
    copy). Instead we wrap the mapping itself as a Pillow image and ``paste`` into it, which
    copies row by row straight into shared memory.
    """
    _through_pixels(mapping, offset, rgba.width, rgba.height, _paste(rgba))


def _copy_out(mapping: Any, offset: int, width: int, height: int) -> Image.Image:
    """Copy RGBA pixels out of the mapping into a new image, with one pass of memcpy.

    ``copy()`` takes its memory from Pillow's own allocator, which can recycle the blocks of
    images freed earlier (``PILLOW_BLOCKS_MAX``) instead of asking the kernel for fresh
    pages: memory touched for the first time costs more than the copy itself.
    """
    return _through_pixels(mapping, offset, width, height, Image.Image.copy)


def _copy_out_into(mapping: Any, offset: int, into: Image.Image) -> None:
    """Copy the pixels into an image the caller keeps, with one pass of memcpy and no
    allocation: ``paste`` writes into ``into``'s own memory."""
    _through_pixels(mapping, offset, into.width, into.height, lambda pixels: into.paste(pixels, (0, 0)))


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
    such, and ``clean`` or the next attach or create removes it. A segment being written
    right now is listed as ``writing``; a file still being created as ``temporary``.
    """
    return _listed(None)


def _listed(only: str | None) -> list[SegmentInfo]:
    """The segments :func:`list_segments` reports; with ``only``, just the one of that name."""
    found: list[SegmentInfo] = []
    for name, path, size, in_use, page in _backend.list_entries(only):
        trace.step("list: %s is %s", path, "in use" if in_use else "orphaned: no process is attached to it")
        if page is None:  # a writer holds the lock (or, on Windows, only a lock file is left)
            state, key = ("writing" if in_use else "gone"), None
        else:
            key = _stored_key(page)
            try:
                header = Header.unpack(page[:RECORD_SIZE], size)
            except CorruptSegmentError:
                state = "temporary" if name.endswith(_backend.TEMP_SUFFIX) else "damaged"
            else:
                found.append(_info_from_header(header, key, name, path, in_use))
                continue
        found.append(SegmentInfo(key, name, path, state, 0, 0, 0, 0, 0, 0, 0, in_use))
    return found


def _stored_key(raw: bytes) -> str | None:
    if len(raw) < _KEY_OFFSET + 2:
        return None
    (length,) = _KEY_LENGTH.unpack_from(raw, _KEY_OFFSET)
    data = raw[_KEY_OFFSET + 2 : _KEY_OFFSET + 2 + length]
    return data.decode("utf-8", "replace") if 0 < length == len(data) else None


def remains(key: str) -> list[str]:
    """What the operating system still holds for ``key``: files (POSIX), or the lock file and
    named mappings (Windows). Empty once the last holder has detached -- the lifetime promise
    that tests (and :mod:`tkshm.testing`) check."""
    return _backend.remains(native_name(key))


def clean() -> list[str]:
    """Remove this user's orphaned segments (no process attached); never one in use."""
    return _backend.remove_orphans()
