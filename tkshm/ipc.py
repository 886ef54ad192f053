"""Named shared memory for images: Qt's ``QSharedMemory`` lesson, in Python.

A *segment* is a block of memory that several processes map at once, found by a *key*.
The protocol, in five lines:

1. **Attach** opens the segment named after the key (creating it if we publish) and marks
   us present; **detach** unmaps it, and the last process to detach removes it -- even when
   the others were killed, because presence is a lock the kernel drops on exit.
2. Every copy happens under an inter-process **lock**: shared for readers, exclusive for
   the writer, with a timeout. A process that dies holding it releases it at once.
3. The writer marks the header ``WRITING``, copies the pixels, then marks it ``READY`` with
   a new **generation**; a reader that finds ``WRITING`` knows the writer died half-way.
4. A bigger image grows the segment in place; it never shrinks under other processes.
5. Readers copy the pixels out before unlocking: nothing that points into the mapping
   outlives the lock.

The header (``tkshm.header``) is a 76-byte record in the first page; pixels follow at 4096:

=======  ====  ===============  ===================================================
offset   size  field            meaning
=======  ====  ===============  ===================================================
0        8     magic            ``b"TKSHMSEG"``
8        2     version          1
10       2     header_size      4096, the offset of the first pixel
12       4     state            0 EMPTY, 1 WRITING, 2 READY
16       8     generation       bumped on every write
24       8     width, height    pixels (u32 each)
32       4     pixel_format     1 = RGBA, 8 bits per channel
36       4     stride           ``width * 4``
40       8     payload_length   ``stride * height``
48       8     capacity         bytes available for pixels
56       4     writer_pid       last writer
60       4     flags            reserved
64       8     write_time_ns    when the write finished
72       4     crc32            of bytes 0..71
128      2+n   key              UTF-8 key, for ``tkshm list`` (not trusted)
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
import hashlib
import os
import re
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from typing import Any, Final, TypeVar

from PIL import Image

from . import _locking, trace
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
from .header import BYTES_PER_PIXEL, GENERATION_OFFSET, HEADER_SIZE, RECORD_SIZE, Header, State
from .images import fit_size, to_rgba

# The platform is decided once, here; nothing else in tkshm asks which OS it runs on.
if sys.platform == "win32":  # pragma: no cover - runs only in the Windows CI job
    from . import _windows as _backend
else:
    from . import _posix as _backend

__all__ = [
    "DEFAULT_KEY",
    "DEFAULT_TIMEOUT",
    "CopyStats",
    "CorruptSegmentError",
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
        self._lock_wait = 0.0
        # The file lock is per open file, so it cannot keep two threads of this process
        # apart; this lock does (a window's worker thread and its follow timer, say).
        self._thread_lock = threading.RLock()
        self._held: str | None = None  # "shared" or "exclusive" while we hold the file lock
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

        Shared locks let many readers copy at once; the exclusive lock keeps everyone else
        out while a writer changes the bytes. It is an advisory file lock, so the kernel
        releases it the moment its holder exits or is killed -- no stale lock survives a
        crash. Raises :class:`LockTimeoutError` after ``timeout`` seconds.
        """
        with self._thread_lock:
            if self._held is not None:
                # Nested inside our own lock (e.g. read_image in a ``with lock()`` block).
                # A second flock on the same open file would *convert* the lock, and its
                # unlock would end the outer block's protection too; so reuse what we hold.
                if exclusive and self._held == "shared":
                    raise TkshmError(
                        f"Segment {self.key!r} is locked for reading here; release that lock before writing."
                    )
                yield
                return
            yield from self._locked(exclusive, timeout)

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

    # -- header and pixels ------------------------------------------------------------
    def _header(self) -> Header:
        mapping = self._mapping()
        # Slicing an mmap copies 76 bytes; a memoryview would stay exported inside the
        # traceback of a CorruptSegmentError and make the mapping impossible to close.
        return Header.unpack(mapping[:RECORD_SIZE], len(mapping))

    def peek_generation(self) -> int:
        """Read the generation counter without locking: a cheap "has anything changed?" for
        followers to poll. A torn read only causes one extra, properly locked, read."""
        return int(_GENERATION.unpack_from(self._mapping(), GENERATION_OFFSET)[0])

    def info(self, timeout: float = DEFAULT_TIMEOUT) -> SegmentInfo:
        """The header's fields, read under the shared lock; no pixels are copied."""
        with self.lock(exclusive=False, timeout=timeout):
            header = self._header()
            trace.step(
                "read the header: %s, %dx%d, generation %d",
                header.state.name, header.width, header.height, header.generation,
            )  # fmt: skip
        return _info_from_header(header, self.key, self.name, self.path, True)

    def write_image(self, image: Image.Image, timeout: float = DEFAULT_TIMEOUT) -> SegmentInfo:
        """Copy an image into the segment under the exclusive lock, growing it if needed.

        Any Pillow mode is converted to RGBA first (outside the lock). The header says
        ``WRITING`` for the whole copy, so if we die half-way readers see an incomplete
        image rather than a torn one; the next write repairs it.
        """
        rgba = to_rgba(image)
        width, height = rgba.size
        if width < 1 or height < 1:
            raise ImageError("The image is empty (0 pixels); load another image.")
        nbytes = width * height * BYTES_PER_PIXEL
        with self.lock(exclusive=True, timeout=timeout):
            started = _TIMER()
            try:
                generation = self._header().generation
            except CorruptSegmentError:
                generation = 0  # a damaged or hostile header: this write repairs it
            if HEADER_SIZE + nbytes > len(self._mapping()):
                if trace.on():
                    trace.step(
                        "grow: the image needs %s bytes, the segment holds %s; growing it",
                        f"{nbytes:,}", f"{len(self._mapping()) - HEADER_SIZE:,}",
                    )  # fmt: skip
                self._file.grow(HEADER_SIZE + nbytes)
            mapping = self._mapping()
            header = Header(
                State.WRITING, generation + 1, width, height, len(mapping) - HEADER_SIZE,
                os.getpid(), time.time_ns(),
            )  # fmt: skip
            mapping[:RECORD_SIZE] = header.pack()
            trace.step("header says WRITING, generation %d", header.generation)
            self._write_key(mapping)
            _copy_into(mapping, rgba)
            header = replace(header, state=State.READY, write_time_ns=time.time_ns())
            mapping[:RECORD_SIZE] = header.pack()
            self.last_stats = CopyStats(self._lock_wait, _TIMER() - started, nbytes)
            self._trace_copy("into", header)
        return _info_from_header(header, self.key, self.name, self.path, True)

    def _write_key(self, mapping: Any) -> None:
        raw = self.key.encode("utf-8", "surrogatepass")
        mapping[_KEY_OFFSET : _KEY_OFFSET + 2 + len(raw)] = _KEY_LENGTH.pack(len(raw)) + raw

    def _complete_header(self) -> Header:
        header = self._header()
        if header.state is State.EMPTY:
            trace.step("header says EMPTY: no image has been written yet")
            raise SegmentNotFoundError(self.key)
        if header.state is State.WRITING:
            trace.step("header says WRITING: the writer stopped half-way; nothing copied")
            raise IncompleteImageError(self.key)
        return header

    def _trace_copy(self, direction: str, header: Header, preview: tuple[int, int] | None = None) -> None:
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

    def read_image(self, timeout: float = DEFAULT_TIMEOUT) -> Image.Image:
        """Copy the image out under the shared lock and return it as a new RGBA image.

        The copy is ours: the returned image holds no reference to the mapping, so it stays
        intact after we unlock, after others write, and after we detach.
        """
        with self.lock(exclusive=False, timeout=timeout):
            started = _TIMER()
            header = self._complete_header()
            image = _copy_out(self._mapping(), header.width, header.height)
            self.last_stats = CopyStats(self._lock_wait, _TIMER() - started, header.payload_length)
            self._trace_copy("out of", header)
        return image

    def read_preview(self, box: tuple[int, int], timeout: float = DEFAULT_TIMEOUT) -> Image.Image:
        """A quick copy scaled down to fit ``box`` (aspect kept, never enlarged), sampled
        straight from the mapping under the shared lock.

        Nearest-neighbour sampling reads only the pixels it keeps: a preview of a 4K image
        costs a fraction of a millisecond, where copying all 33 MB out costs several. A viewer
        shows this at once and fetches the full image with :meth:`read_image` afterwards.
        """
        with self.lock(exclusive=False, timeout=timeout):
            started = _TIMER()
            header = self._complete_header()
            size = fit_size((header.width, header.height), box)
            image = _through_pixels(
                self._mapping(), header.width, header.height,
                lambda pixels: pixels.resize(size, Image.Resampling.NEAREST),
            )  # fmt: skip
            nbytes = image.width * image.height * BYTES_PER_PIXEL
            self.last_stats = CopyStats(self._lock_wait, _TIMER() - started, nbytes)
            self._trace_copy("out of", header, image.size)
        return image


def _through_pixels(mapping: Any, width: int, height: int, use: Callable[[Image.Image], T]) -> T:
    """Call ``use`` on the mapping's pixels wrapped as a Pillow image, without copying them.

    ``frombuffer`` makes an image whose rows *are* the shared memory. It must not outlive
    this call (the mapping cannot be closed while it exists, and its pixels change with the
    next write), so ``use`` gets it as a temporary and must return something else.
    """
    view = memoryview(mapping)[HEADER_SIZE : HEADER_SIZE + width * height * BYTES_PER_PIXEL]
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


def _copy_into(mapping: Any, rgba: Image.Image) -> None:
    """Copy RGBA pixels into the mapping with one pass of memcpy.

    ``Image.tobytes()`` encodes in small chunks and joins them (about twice the cost of a
    copy). Instead we wrap the mapping itself as a Pillow image and ``paste`` into it, which
    copies row by row straight into shared memory.
    """
    _through_pixels(mapping, rgba.width, rgba.height, _paste(rgba))


def _copy_out(mapping: Any, width: int, height: int) -> Image.Image:
    """Copy RGBA pixels out of the mapping into a new image, with one pass of memcpy.

    ``copy()`` takes its memory from Pillow's own allocator, which can recycle the blocks of
    images freed earlier (``PILLOW_BLOCKS_MAX``) instead of asking the kernel for fresh
    pages: memory touched for the first time costs more than the copy itself.
    """
    return _through_pixels(mapping, width, height, Image.Image.copy)


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


def read_image(key: str = DEFAULT_KEY, timeout: float = DEFAULT_TIMEOUT) -> Image.Image:
    """Attach, lock, copy the image out, unlock, detach: the Qt example's display button."""
    with Segment.attach(key) as segment:
        return segment.read_image(timeout=timeout)


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
