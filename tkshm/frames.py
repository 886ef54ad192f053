"""The frame slots: how one segment holds several frames, so that nobody waits.

One lock around one buffer is Qt's lesson, and it is enough for a still image. For a stream
it is not: a reader that copies (or is stopped while it copies) keeps the writer out, and a
writer that never pauses keeps the readers out. So the pixels live in up to
:data:`~tkshm.header.MAX_SLOTS` *slots*, each with a lock of its own (a ``.slotN`` file
beside the segment):

* a **reader** reads the header (which names the newest complete slot), takes that slot's
  lock *shared* -- a lease -- copies, and lets go. The lease is an advisory file lock, so the
  kernel drops it if the reader dies;
* the **writer** (writers take turns under the segment's data lock) picks a slot that no
  reader holds, takes its lock *exclusively* without waiting, writes the frame there, lets
  go of the slot, and only then makes the header name it: a reader that follows the header
  finds the slot free and complete;
* a still image, which nobody is reading, is written in place in slot 0, exactly as one
  buffer under one lock. Slots are added once a reader has found the newest slot taken (the
  header page holds the time of the latest such miss, and of the latest lease), and kept
  while readers keep reading: memory is one frame for a still and at most ``MAX_SLOTS``
  frames for a stream -- never one per reader or per frame.

The slot table sits in the header page, after the key:

=======  ====  ===============  ========================================================
offset   size  field            meaning
=======  ====  ===============  ========================================================
2048     64n   slot record n    one per slot, ``MAX_SLOTS`` of them (all zero: unused)
 +0      4     state            0 EMPTY, 1 WRITING, 2 READY
 +8      8     generation       of the frame in the slot
 +16     8     width, height    pixels (u32 each)
 +24     8     offset           where its pixels start in the segment (page-aligned)
 +32     8     capacity         bytes reserved for its pixels
 +40     8     write_time_ns    when its frame was complete (``time.time_ns()``)
 +48     4     writer_pid       the process that wrote it
 +52     4     crc32            of the 52 bytes before
3072     8     last_lease_ns    ``time.monotonic_ns()`` of the latest reader lease
3136     8     last_miss_ns     the same, of the latest lease a reader could not take
=======  ====  ===============  ========================================================
"""

from __future__ import annotations

import struct
import time
import zlib
from dataclasses import dataclass
from typing import Final

from .errors import CorruptSegmentError
from .header import BYTES_PER_PIXEL, HEADER_SIZE, MAX_SLOTS, State

TABLE_OFFSET: Final = 2048
RECORD_STRIDE: Final = 64
LEASE_TIME_OFFSET: Final = 3072
MISS_TIME_OFFSET: Final = 3136  # a cache line of its own: readers write both
# After a reader missed a lease the writer keeps frames apart for this long, and after that
# for as long as readers keep taking leases; then a frame is written in place again.
AFTER_MISS_NS: Final = 5_000_000_000
READERS_ACTIVE_NS: Final = 1_000_000_000
PAGE: Final = 4096
_FIELDS: Final = struct.Struct("<I4xQIIQQQI")
_CRC: Final = struct.Struct("<I")
_LEASE_TIME: Final = struct.Struct("<Q")
_UNUSED: Final = bytes(_FIELDS.size + _CRC.size)


def page_round(size: int) -> int:
    """Round up to whole pages: slots start page-aligned, so copies run on aligned memory."""
    return -(-size // PAGE) * PAGE


@dataclass(frozen=True)
class Slot:
    """One slot record: where a frame's pixels are, and what they are."""

    index: int
    state: State = State.EMPTY
    generation: int = 0
    width: int = 0
    height: int = 0
    offset: int = 0
    capacity: int = 0
    write_time_ns: int = 0
    writer_pid: int = 0

    @property
    def allocated(self) -> bool:
        return self.capacity > 0

    @property
    def payload_length(self) -> int:
        return self.width * self.height * BYTES_PER_PIXEL

    @property
    def end(self) -> int:
        return self.offset + self.capacity

    def pack(self) -> bytes:
        fields = _FIELDS.pack(
            int(self.state), self.generation, self.width, self.height, self.offset,
            self.capacity, self.write_time_ns, self.writer_pid,
        )  # fmt: skip
        return fields + _CRC.pack(zlib.crc32(fields))


def read_slot(mapping: bytes | memoryview | object, index: int, mapping_size: int) -> Slot:
    """Decode and check slot ``index``: its pixels must lie inside the mapping, after the header.

    Raises :class:`CorruptSegmentError` otherwise, so a caller may slice with what it returns.
    """
    start = TABLE_OFFSET + index * RECORD_STRIDE
    raw = bytes(mapping[start : start + _FIELDS.size + _CRC.size])  # type: ignore[index]
    if raw == _UNUSED:
        return Slot(index)
    state, generation, width, height, offset, capacity, write_time_ns, writer_pid = _FIELDS.unpack_from(raw)
    (crc,) = _CRC.unpack_from(raw, _FIELDS.size)
    problem = None
    if crc != zlib.crc32(raw[: _FIELDS.size]):
        problem = "its checksum does not match"
    elif state not in State.__members__.values():
        problem = f"its state {state} is unknown"
    elif offset < HEADER_SIZE or offset % PAGE or offset + capacity > mapping_size:
        problem = "its pixels lie outside the segment"
    elif state != State.EMPTY and (width < 1 or height < 1 or width * height * BYTES_PER_PIXEL > capacity):
        problem = f"its image size {width}x{height} does not fit it"
    if problem is not None:
        raise CorruptSegmentError(
            f"The shared memory segment is damaged: frame slot {index}: {problem}. "
            "Load the image again to repair it."
        )
    return Slot(index, State(state), generation, width, height, offset, capacity, write_time_ns, writer_pid)


def write_slot(mapping: object, slot: Slot) -> None:
    start = TABLE_OFFSET + slot.index * RECORD_STRIDE
    mapping[start : start + _FIELDS.size + _CRC.size] = slot.pack()  # type: ignore[index]


def read_table(mapping: object, mapping_size: int) -> list[Slot]:
    """Every slot record; a damaged one counts as unused (the writer is about to repair it)."""
    slots = []
    for index in range(MAX_SLOTS):
        try:
            slots.append(read_slot(mapping, index, mapping_size))
        except CorruptSegmentError:
            slots.append(Slot(index))
    return slots


def clear_table(mapping: object) -> None:
    mapping[TABLE_OFFSET : TABLE_OFFSET + MAX_SLOTS * RECORD_STRIDE] = bytes(MAX_SLOTS * RECORD_STRIDE)  # type: ignore[index]


def note_lease(mapping: object, missed: bool = False) -> None:
    """Say in the header page that a reader took a lease, or could not (``missed``)."""
    offset = MISS_TIME_OFFSET if missed else LEASE_TIME_OFFSET
    _LEASE_TIME.pack_into(mapping, offset, time.monotonic_ns())  # type: ignore[arg-type]


def keep_apart(mapping: object, table: list[Slot]) -> bool:
    """Whether the next frame should go into a slot of its own rather than in place: a reader
    missed a lease lately, or several slots are in use and readers are still reading.

    Plain 8-byte reads of what readers wrote: a torn one is harmless, it only decides where
    one frame goes (any slot the writer holds is safe)."""
    now = time.monotonic_ns()
    (missed,) = _LEASE_TIME.unpack_from(mapping, MISS_TIME_OFFSET)  # type: ignore[arg-type]
    if missed and now - missed < AFTER_MISS_NS:
        return True
    (leased,) = _LEASE_TIME.unpack_from(mapping, LEASE_TIME_OFFSET)  # type: ignore[arg-type]
    ring = any(slot.allocated for slot in table[1:])
    return ring and bool(leased) and now - leased < READERS_ACTIVE_NS
