"""The ring of frame slots: the locks that keep readers and writers apart, and which slot
each of them uses.

:mod:`tkshm.frames` says what a slot record *is* (its bytes in the header page); this module
says how processes *share* the slots. It knows nothing of Pillow: it hands out slot records
(an offset and a size in the mapping), and :mod:`tkshm.ipc` copies the pixels.

Two objects, one job each:

* :class:`Leases` holds this process's locks on one attached segment: the *data lock*
  (writers take turns under it, exclusively) and a *lease* per frame slot (a reader holds the
  newest slot's lease, shared, while it copies). Both are advisory file locks the kernel drops
  when their holder dies. It also finds the newest frame for a reader and pins it.
* :class:`Ring` is the writer's policy: a first frame goes in place into slot 0 (Qt's one
  buffer under one lock); after it the newest complete frame is never written over, so that a
  writer killed at any moment leaves it: two slots take turns, and while readers read, each
  frame goes into a slot nobody holds. Only then does the header name it.

A backend plugs in with its mapping and its lock per slot (:class:`Backing`: a lock file each
on POSIX, a byte of the lock file on Windows) and the way it takes the data lock
(:class:`Locking`). A backend without a lock per slot would make the shared data lock the one
lease: the frames would sit under a readers-writer lock.
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Final, Protocol

from . import _locking, frames, trace
from .errors import (
    CorruptSegmentError,
    IncompleteImageError,
    LockTimeoutError,
    SegmentNotFoundError,
    TkshmError,
)
from .frames import Slot
from .header import (
    BYTES_PER_PIXEL,
    GENERATION_OFFSET,
    HEADER_SIZE,
    MAX_SLOTS,
    Header,
    State,
    read_header,
    write_header,
    write_key,
)

# A header caught while the writer rewrites it fails its checksum; it is read again this often.
_TORN_RETRIES: Final = 20
_GENERATION: Final = struct.Struct("<Q")
_TIMER: Final = time.perf_counter
# Pinned: the header and slot of the frame a reader holds (the slot is None while empty).
Pinned = tuple[Header, Slot | None]
# Copies a frame's pixels to the offset its slot starts at (``tkshm.pixels`` does it).
Fill = Callable[[int], None]


class Backing(Protocol):
    """What the ring needs of a backend's attached segment (``tkshm._posix``, ``_windows``)."""

    map: Any  # the mapping (``mmap.mmap``), None once detached
    lock_fd: int  # the data lock's file
    successors: bool  # growing makes a new mapping elsewhere, which the others follow (Windows)

    def try_lease(self, index: int, exclusive: bool) -> bool:
        """Lock frame slot ``index`` (shared: a reader copying it; exclusive: a writer filling
        it), never waiting; False if another process holds it the other way."""
        ...

    def release_lease(self, index: int) -> None: ...

    def remap(self, exclusive: bool = False) -> None: ...

    def refresh(self) -> None:
        """Follow, cheaply, what another process did to the segment: a grown (or cut) file on
        POSIX, a successor mapping the directory names on Windows."""
        ...

    def grow(self, size: int) -> None: ...


@dataclass(frozen=True)
class Locking:
    """How a backend takes its advisory locks: ``flock`` on POSIX, ``LockFileEx`` on Windows."""

    try_lock: Callable[[int, bool], bool]  # (fd, exclusive) -> taken, never waiting
    unlock: Callable[[int], None]
    per_slot: bool  # a lock per frame slot; else the shared data lock is the readers' lease


def _busy(key: str) -> TkshmError:
    return TkshmError(f"Segment {key!r} is locked for reading here; release that lock before writing.")


class Leases:
    """The locks this process holds on one attached segment, and the frame a reader pins.

    The file locks are per open file, so they cannot keep two threads of this process apart;
    ``thread_lock`` does (a window's worker thread and its follow timer, say).
    """

    def __init__(self, key: str, file: Backing, locking: Locking, thread_lock: threading.RLock) -> None:
        self.key = key
        self.file = file
        self.locking = locking
        self.thread_lock = thread_lock
        self.held: str | None = None  # "shared" or "exclusive" while we hold the data lock
        self.pinned: Pinned | None = None  # the frame a reader holds
        self.all_leased = False  # True while lock(exclusive=True) holds every slot
        self.lock_wait = 0.0  # how long the last lock or lease took
        self.attempts = 1  # how many tries the last lease took (1: it was free at once)

    def mapping(self) -> Any:
        if self.file.map is None:
            raise TkshmError(f"Segment {self.key!r} is detached; attach to it again.")
        return self.file.map

    # -- the data lock -------------------------------------------------------------------
    @contextmanager
    def lock(self, exclusive: bool, timeout: float) -> Iterator[None]:
        """``Segment.lock``: shared, the newest frame pinned; exclusive, the data lock and
        every slot, which waits for the readers that are copying."""
        with self.thread_lock:
            if self.held is not None or self.pinned is not None:
                # Nested inside our own lock (e.g. read_image in a ``with lock()`` block).
                # A second flock on the same open file would *convert* the lock, and its
                # unlock would end the outer block's protection too; so reuse what we hold.
                if exclusive and self.held != "exclusive":
                    raise _busy(self.key)
                yield
                return
            if not exclusive:
                with self.frame(timeout):
                    yield
                return
            with self.writing(timeout):
                leased = self._lease_all(timeout)
                self.all_leased = True
                try:
                    yield
                finally:
                    self.all_leased = False
                    for index in leased:
                        self.release(index)

    def _locked(self, exclusive: bool, timeout: float) -> Iterator[None]:
        self.mapping()
        kind = "exclusive" if exclusive else "shared"
        trace.step("lock requested (%s)", kind)
        fd = self.file.lock_fd
        waited = _locking.wait_for(lambda: self.locking.try_lock(fd, exclusive), timeout)
        if waited is None:
            trace.step("lock not granted after %g s: another process holds it", timeout)
            raise LockTimeoutError(self.key, timeout)
        self.lock_wait = waited
        self.held = kind
        trace.step("lock granted (%s) after %.2f ms", kind, self.lock_wait * 1000)
        try:
            self.file.remap(exclusive)  # another process may have grown the segment
            yield
        finally:
            self.held = None
            if self.file.lock_fd >= 0:  # detached inside the block: closing it unlocked it
                self.locking.unlock(self.file.lock_fd)
            trace.step("unlock (%s)", kind)

    @contextmanager
    def writing(self, timeout: float) -> Iterator[None]:
        """The data lock, exclusive: writers take turns under it. Readers never take it
        where slots have locks of their own, so a reader cannot keep a writer waiting."""
        with self.thread_lock:
            if self.held is not None:
                if self.held != "exclusive":
                    raise _busy(self.key)
                yield
                return
            if self.pinned is not None:
                raise _busy(self.key)
            yield from self._locked(True, timeout)

    # -- leases: a lease is the backend's lock on one slot -----------------------------------
    def try_lease(self, index: int, exclusive: bool) -> bool:
        return self.file.try_lease(index, exclusive)

    def release(self, index: int) -> None:
        if self.file.map is not None:  # detached inside the block: closing it unlocked it
            self.file.release_lease(index)

    def _lease_all(self, timeout: float) -> list[int]:
        """Every slot, exclusively, waiting for the readers that are copying."""
        if not self.locking.per_slot:
            return []  # the exclusive data lock already keeps readers out
        leased: list[int] = []
        try:
            for index in range(MAX_SLOTS):
                if _locking.wait_for(lambda i=index: self.try_lease(i, True), timeout) is None:  # type: ignore[misc]
                    raise LockTimeoutError(self.key, timeout)
                leased.append(index)
        except BaseException:
            for index in leased:
                self.release(index)
            raise
        return leased

    # -- the header, read without a lock ---------------------------------------------------
    def header(self) -> Header:
        mapping = self.mapping()
        # Slicing an mmap copies 76 bytes; a memoryview would stay exported inside the
        # traceback of a CorruptSegmentError and make the mapping impossible to close.
        return read_header(mapping, len(mapping))

    def fresh_header(self, started: float, timeout: float) -> Header:
        """The header, read without a lock: mapped again if the file grew, and read again if
        it was caught half-rewritten. A header that fails its checksum while a writer holds
        the data lock is being written (wait, up to ``timeout``); with no writer, damaged."""
        misses = 0
        while True:
            self._follow(self.file.refresh)
            try:
                return self.header()
            except CorruptSegmentError:
                if self._follow(self.file.remap):
                    continue  # the file grew: a header sized for it fails against our mapping
                fd = self.file.lock_fd
                if self.locking.try_lock(fd, False):  # no writer: damaged, unless it was just now
                    self.locking.unlock(fd)
                    misses += 1
                    if misses >= _TORN_RETRIES:
                        raise
                elif _TIMER() - started >= timeout:
                    trace.step("lock not granted after %g s: a writer is rewriting the header", timeout)
                    raise LockTimeoutError(self.key, timeout) from None
            time.sleep(0.0002)

    def peek_generation(self) -> int:
        """The generation counter, read without a lock (see ``Segment.peek_generation``)."""
        self.mapping()  # detached: say so
        if self.file.successors:  # (a file that grew keeps its generation where it was)
            with contextlib.suppress(SegmentNotFoundError):  # (a read then says so, in words)
                self._follow(self.file.refresh)
        return int(_GENERATION.unpack_from(self.mapping(), GENERATION_OFFSET)[0])

    def _follow(self, remap: Callable[[], None]) -> bool:
        """Map again where another process has grown the segment; return whether we did.
        Never while this process holds a frame (another thread may be copying out of the
        mapping, which cannot be closed under it): that frame stays valid where it is."""
        with self.thread_lock:
            if self.pinned is not None or self.held is not None:
                return False
            before = self.file.map
            remap()
            return self.file.map is not before

    def _slot_mapped(self, header: Header) -> Slot | None:
        """``slot_of``, mapping again first if the slot lies beyond what we have mapped (the
        writer moved it to the end of a grown file after we read the header)."""
        try:
            return self.slot_of(header)
        except CorruptSegmentError:
            if not self._follow(self.file.remap):
                raise
            return self.slot_of(header)

    def slot_of(self, header: Header) -> Slot | None:
        """The slot record the header names (under its lease), or None for an empty segment."""
        if header.state is State.EMPTY:
            return None
        mapping = self.mapping()
        slot = frames.read_slot(mapping, header.slot, len(mapping))
        if not slot.allocated or slot.generation == 0:
            # A segment written before the slots were filled in: the pixels after the header.
            return Slot(header.slot, header.state, header.generation, header.width, header.height,
                        HEADER_SIZE, header.capacity, header.write_time_ns, header.writer_pid)  # fmt: skip
        return slot

    # -- a reader's hold on the newest frame -----------------------------------------------
    @contextmanager
    def frame(self, timeout: float) -> Iterator[Pinned]:
        """Hold the newest frame for reading: its header and slot, which no write can change
        until the block ends. The trace calls it the lock, shared: it is the reader's lock."""
        with self.thread_lock:
            if self.pinned is not None:
                yield self.pinned
                return
            if self.held is not None or not self.locking.per_slot:
                # Under our own exclusive lock, or (no slot locks) under the shared data lock.
                mine = self.held is not None
                with contextlib.nullcontext() if mine else contextmanager(self._locked)(False, timeout):
                    self.attempts = 1
                    header = self.header()
                    self.pinned = header_slot = header, self.slot_of(header)
                    try:
                        yield header_slot
                    finally:
                        self.pinned = None
                return
            header, slot = self._lease_newest(timeout)
            self.pinned = (header, slot)
            try:
                yield header, slot
            finally:
                self.pinned = None
                self.release(header.slot)
                trace.step("unlock (shared)")

    def _lease_newest(self, timeout: float) -> Pinned:
        """Take a shared lease on the slot the header names; follow the header if the writer
        moved on before we got it. Never takes the data lock, so it never waits for a writer
        that is writing some other slot."""
        self.mapping()
        trace.step("lock requested (shared)")
        started = _TIMER()
        pause = 0.0002
        self.attempts = 0
        while True:
            self.attempts += 1
            header = self.fresh_header(started, timeout)
            if self.try_lease(header.slot, False):
                try:
                    frames.note_lease(self.mapping())
                    slot = self._slot_mapped(header)
                    if slot is None or slot.state is State.READY or self.header().slot == slot.index:
                        # Empty, a complete frame, or one its writer left half-written.
                        self.lock_wait = _TIMER() - started
                        trace.step("lock granted (shared) after %.2f ms", self.lock_wait * 1000)
                        return header, slot
                except BaseException:
                    self.release(header.slot)
                    raise
                self.release(header.slot)  # emptied while we looked: the header names another
            else:
                frames.note_lease(self.mapping(), missed=True)  # keep the frames apart from now on
            waited = _TIMER() - started
            if waited >= timeout:
                trace.step("lock not granted after %g s: another process holds it", timeout)
                raise LockTimeoutError(self.key, timeout)
            time.sleep(min(pause, timeout - waited))
            pause = min(pause * 2, 0.005)


def complete(key: str, slot: Slot | None) -> Slot:
    """The pinned frame's slot if it holds a complete image; else the error that says why."""
    if slot is None:
        trace.step("header says EMPTY: no image has been written yet")
        raise SegmentNotFoundError(key)
    if slot.state is not State.READY:
        trace.step("header says WRITING: the writer stopped half-way; nothing copied")
        raise IncompleteImageError(key)
    return slot


def _beside(newest: int | None) -> int:
    """The slot a frame goes into when every slot is free: the other of slots 0 and 1."""
    return 1 if newest == 0 else 0


class Ring:
    """The writer's policy: which slot the next frame goes into (data lock held, exclusive)."""

    def __init__(self, leases: Leases) -> None:
        self.leases = leases

    def write(
        self, width: int, height: int, deadline: float, timeout: float, fill: Fill
    ) -> tuple[Header, Slot]:
        """Write one frame: choose its slot, mark it WRITING, have ``fill`` copy the pixels to
        the slot's offset, mark it READY and make the header name it. Return both records.

        The header names the new frame only once it is complete, so a writer killed at any
        moment leaves the last complete frame and a header that names it. Only the first
        frame is written in place (there is nothing to keep), with the header saying
        ``WRITING`` during the copy: readers then see an incomplete image, never a torn one.
        """
        leases = self.leases
        try:
            old: Header | None = leases.header()
        except CorruptSegmentError:
            old = None  # a damaged or hostile header: this write repairs it
        slot, leased, in_place = self._choose(old, width * height * BYTES_PER_PIXEL, deadline, timeout)
        try:
            header, slot = self._fill(old, slot, (width, height), in_place, fill)
        finally:
            if leased:
                leases.release(slot.index)  # before the header names it: readers find it free
        write_header(leases.mapping(), header)
        return header, slot

    def _fill(
        self, old: Header | None, slot: Slot, size: tuple[int, int], in_place: bool, fill: Fill
    ) -> tuple[Header, Slot]:
        width, height = size
        mapping = self.leases.mapping()
        generation = (old.generation if old is not None else 0) + 1
        slot = replace(slot, state=State.WRITING, generation=generation, width=width,
                       height=height, write_time_ns=0, writer_pid=os.getpid())  # fmt: skip
        frames.write_slot(mapping, slot)
        header = Header(
            State.WRITING, generation, width, height, len(mapping) - HEADER_SIZE,
            os.getpid(), time.time_ns(), slot=slot.index,
        )  # fmt: skip
        if in_place:
            write_header(mapping, header)
            trace.step("header says WRITING, generation %d", header.generation)
        else:
            assert old is not None
            trace.step("writing frame slot %d; the header still names slot %d, the last complete frame",
                       slot.index, old.slot)  # fmt: skip
        write_key(mapping, self.leases.key)
        fill(slot.offset)
        slot = replace(slot, state=State.READY, write_time_ns=time.time_ns())
        frames.write_slot(mapping, slot)
        return replace(header, state=State.READY, write_time_ns=slot.write_time_ns), slot

    def _choose(
        self, old: Header | None, nbytes: int, deadline: float, timeout: float
    ) -> tuple[Slot, bool, bool]:
        """Pick the slot for the next frame and lease it exclusively; return it, whether we
        took a lease (the exclusive data lock is the lease without slot locks, and under
        ``lock()``), and whether it is written in place (the header then says ``WRITING``).

        The newest complete frame is never written over, so two slots take turns for a still
        loaded again or a stream nobody reads (OBS's game capture keeps two the same way),
        and only the first frame goes in place. While readers are reading, a frame goes into a
        slot that is neither the newest nor held by a reader (the oldest such first), a new
        slot is added if there is none; only if readers hold every other slot is the newest
        written over (in place), and only if they hold that one too do we wait, for the first
        reader to finish its copy.
        """
        leases = self.leases
        newest = self._newest_complete(old)
        if not leases.locking.per_slot or leases.all_leased:  # every slot is ours already
            return self._lay_out(newest, nbytes), False, newest is None
        mapping = leases.mapping()
        if not frames.keep_apart(mapping, frames.read_table(mapping, len(mapping))):
            slot = self._compact(newest, nbytes)
            if slot is not None:
                return slot, True, newest is None
        pause = 0.0002
        while True:
            slot = self._free_slot(newest, nbytes)
            if slot is not None:
                return slot, True, newest is None or slot.index == newest  # (nothing to keep: in place)
            now = _TIMER()
            if now >= deadline:
                trace.step("no frame slot free after %g s: every slot is being read", timeout)
                raise LockTimeoutError(self.leases.key, timeout)
            time.sleep(min(pause, deadline - now))
            pause = min(pause * 2, 0.002)

    def _newest_complete(self, old: Header | None) -> int | None:
        """The slot of the newest complete frame, the one a write must keep; None if there is
        none (nothing written yet, a damaged header, or a first frame its writer left half-way)."""
        if old is None or old.state is State.EMPTY:
            return None
        slot = self.leases.slot_of(old)
        return old.slot if slot is not None and slot.state is State.READY else None

    def _lay_out(self, newest: int | None, nbytes: int) -> Slot:
        """The slot for the next frame when every slot is ours (no reader holds one): the
        newest complete frame stays where it is, the other slots are forgotten, and the frame
        goes beside it -- before it if it fits there, else after it, growing the segment.
        With nothing to keep, slot 0 over the whole segment, written in place (Qt's one buffer)."""
        mapping = self.leases.mapping()
        if newest is None:
            if HEADER_SIZE + nbytes > len(mapping):
                self._grow(HEADER_SIZE + nbytes, nbytes)
            room, capacity = frames.page_round(nbytes), len(self.leases.mapping()) - HEADER_SIZE
            if 2 * room <= capacity:  # a segment made for two frames: the next one goes after it
                capacity = room
            kept: Slot | None = None
            slot = Slot(0, offset=HEADER_SIZE, capacity=capacity)
        else:
            kept = frames.read_slot(mapping, newest, len(mapping))
            index = _beside(newest)
            room = frames.page_round(nbytes)
            if HEADER_SIZE + room <= kept.offset:
                slot = Slot(index, offset=HEADER_SIZE, capacity=kept.offset - HEADER_SIZE)
            else:
                offset = frames.page_round(kept.end)
                if offset + room > len(mapping):
                    self._grow(offset + room, nbytes)
                slot = Slot(index, offset=offset, capacity=len(self.leases.mapping()) - offset)
        mapping = self.leases.mapping()
        for index in range(MAX_SLOTS):
            if kept is None or index != kept.index:
                frames.write_slot(mapping, Slot(index))
        # Never an empty table: a slot record being written says so (``read_table``).
        frames.write_slot(mapping, replace(slot, state=State.WRITING, generation=1))
        return slot

    def _grow(self, size: int, nbytes: int) -> None:
        if trace.on():
            trace.step(
                "grow: the image needs %s bytes, the segment holds %s; growing it",
                f"{nbytes:,}", f"{len(self.leases.mapping()) - HEADER_SIZE:,}",
            )  # fmt: skip
        self.leases.file.grow(size)

    def _compact(self, newest: int | None, nbytes: int) -> Slot | None:
        """If no reader holds any slot, lay the frames out afresh (:meth:`_lay_out`): lease
        them all, keep the newest complete frame, forget the others. None if some reader
        holds one.

        The newest frame's lease is only tried, then let go at once: the lay-out never
        touches that frame, and a writer stopped half-way (SIGSTOP, a debugger) must not keep
        readers from it. Trying it still finds a reader that leased it a moment ago and has
        not yet said so in the segment (``frames.note_lease``)."""
        leases = self.leases
        leased: list[int] = []
        try:
            # A reader can hold only slot 0 or a slot in use (it checks the slot after leasing).
            for slot in frames.read_table(leases.mapping(), len(leases.mapping())):
                if slot.index in (0, _beside(newest)) or slot.allocated:
                    if not leases.try_lease(slot.index, True):
                        return None
                    leased.append(slot.index)
            if newest in leased:
                leased.remove(newest)
                leases.release(newest)
            slot = self._lay_out(newest, nbytes)
            leased.remove(slot.index)
            return slot
        finally:
            for index in leased:
                leases.release(index)

    def _free_slot(self, newest: int | None, nbytes: int) -> Slot | None:
        """A slot no reader holds, leased exclusively, with room for ``nbytes``; or None."""
        mapping = self.leases.mapping()
        table = frames.read_table(mapping, len(mapping))
        # The oldest frames first, then unused slots, and the newest frame only as a last resort
        # (readers hold every other slot: at least three of them, each with a frame right now).
        order = sorted((s for s in table if s.index != newest), key=lambda s: (not s.allocated, s.generation))
        for slot in [*order, *(table[newest : newest + 1] if newest is not None else [])]:
            if not self.leases.try_lease(slot.index, True):
                continue
            if slot.capacity >= nbytes:
                return slot
            try:
                return self._allocate(slot.index, nbytes)
            except BaseException:
                self.leases.release(slot.index)
                raise
        return None

    def _allocate(self, index: int, nbytes: int) -> Slot:
        """Room for slot ``index`` at the end of the segment, which grows (never shrinks)."""
        offset = frames.page_round(len(self.leases.mapping()))
        capacity = frames.page_round(nbytes)
        trace.step("slot %d: %s bytes at offset %s", index, f"{capacity:,}", f"{offset:,}")
        self.leases.file.grow(offset + capacity)
        return Slot(index, offset=offset, capacity=capacity)
