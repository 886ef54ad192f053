"""The segment header: a fixed little-endian record in front of the pixels.

Kept apart from the mapping code so that it can be tested on plain bytes: ``unpack`` must
reject any header (random, mutated or hostile) *before* anyone trusts a size read from it.

The record is kept twice, at 0 and at ``BACKUP_OFFSET``. A writer stores the backup first
and then the main copy, so a writer killed in the microsecond it rewrites one of them leaves
the other whole: a reader that finds the main copy half-written (its checksum does not
match) reads the backup, which names the same frame (:func:`read_header`).

=======  ====  ===============  ========================================================
offset   size  field            meaning
=======  ====  ===============  ========================================================
0        8     magic            ``b"TKSHMSEG"``: this is a tkshm segment
8        2     version          format version, 3 (2 added the frame slots, 3 the backup)
10       2     header_size      offset of the first pixel (4096: one page, so pixels
                                start page-aligned)
12       4     state            0 EMPTY, 1 WRITING, 2 READY (of the newest frame)
16       8     generation       bumped on every write; followers poll it
24       4     width            pixels of the newest frame
28       4     height           pixels of the newest frame
32       4     pixel_format     1 = RGBA, 8 bits per channel, not premultiplied
36       4     stride           bytes per row (``width * 4``: rows are packed)
40       8     payload_length   bytes of pixels (``stride * height``)
48       8     capacity         bytes available for pixels (the file grows, never shrinks)
56       4     writer_pid       process that wrote the image last
60       4     slot             the frame slot that holds the newest frame (``tkshm.frames``)
64       8     write_time_ns    when the write finished (``time.time_ns()``)
72       4     crc32            CRC-32 of bytes 0..71
128      2+n   key              length (u16) and UTF-8 bytes of the key, for ``tkshm list``
                                (never trusted: the name is derived from the key, not this)
1536     76    backup           the same record again (``BACKUP_OFFSET``)
=======  ====  ===============  ========================================================
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass
from typing import Final

from .errors import CorruptSegmentError

MAGIC: Final = b"TKSHMSEG"
VERSION: Final = 3
# Frames live in up to this many slots (``tkshm.frames``): the newest, the ones readers are
# copying, and one to write next.
MAX_SLOTS: Final = 4
# One page: the pixels start page-aligned, which keeps the big copy on aligned memory.
HEADER_SIZE: Final = 4096
PIXEL_FORMAT_RGBA: Final = 1
BYTES_PER_PIXEL: Final = 4
_FIELDS: Final = struct.Struct("<8sHHIQIIIIQQIIQ")
_CRC: Final = struct.Struct("<I")
RECORD_SIZE: Final = _FIELDS.size + _CRC.size  # 76 bytes
KEY_OFFSET: Final = 128
# After the longest key (2 + 255 * 4 bytes of UTF-8 from 128) and before the slot table.
BACKUP_OFFSET: Final = 1536
_KEY_LENGTH: Final = struct.Struct("<H")
# The generation counter sits at a fixed, 8-byte-aligned offset so followers can poll it cheaply.
GENERATION_OFFSET: Final = 16


class State(enum.IntEnum):
    """Where the segment is in its write cycle."""

    EMPTY = 0  # created, nothing published yet
    WRITING = 1  # a writer holds (or held, then died holding) the exclusive lock
    READY = 2  # a complete image


@dataclass(frozen=True)
class Header:
    """One decoded header. Build with :meth:`empty`, change with :func:`dataclasses.replace`."""

    state: State
    generation: int
    width: int
    height: int
    capacity: int
    writer_pid: int
    write_time_ns: int
    pixel_format: int = PIXEL_FORMAT_RGBA
    slot: int = 0

    @property
    def stride(self) -> int:
        return self.width * BYTES_PER_PIXEL

    @property
    def payload_length(self) -> int:
        return self.stride * self.height

    @classmethod
    def empty(cls, capacity: int, writer_pid: int) -> Header:
        return cls(State.EMPTY, 0, 0, 0, capacity, writer_pid, 0)

    def pack(self) -> bytes:
        fields = _FIELDS.pack(
            MAGIC, VERSION, HEADER_SIZE, int(self.state), self.generation, self.width,
            self.height, self.pixel_format, self.stride, self.payload_length, self.capacity,
            self.writer_pid, self.slot, self.write_time_ns,
        )  # fmt: skip
        return fields + _CRC.pack(zlib.crc32(fields))

    @classmethod
    def unpack(cls, buf: bytes | memoryview, mapping_size: int) -> Header:
        """Decode and validate a header against the real size of the mapping behind it.

        Raises :class:`CorruptSegmentError` unless every size in the header fits inside
        ``mapping_size``; so a caller may trust ``payload_length`` for slicing and allocating.
        """
        if len(buf) < RECORD_SIZE or mapping_size < HEADER_SIZE:
            raise CorruptSegmentError(
                "The shared memory segment is too short to hold a tkshm header. "
                "Close every program using it (or run 'tkshm clean') and load the image again."
            )
        raw = bytes(buf[:RECORD_SIZE])
        (magic, version, header_size, state, generation, width, height, pixel_format,
         stride, payload_length, capacity, writer_pid, slot, write_time_ns,
         ) = _FIELDS.unpack_from(raw)  # fmt: skip
        (crc,) = _CRC.unpack_from(raw, _FIELDS.size)
        problem = None
        if magic != MAGIC:
            problem = "it is not a tkshm segment (wrong magic number)"
        elif version != VERSION:
            problem = f"it uses header version {version}, this tkshm reads version {VERSION}"
        elif header_size != HEADER_SIZE:
            problem = f"its header size is {header_size} bytes, not {HEADER_SIZE}"
        elif crc != zlib.crc32(raw[: _FIELDS.size]):
            problem = "its header checksum does not match"
        elif state not in State.__members__.values():
            problem = f"its state {state} is unknown"
        elif slot >= MAX_SLOTS:
            problem = f"its frame slot {slot} does not exist"
        elif HEADER_SIZE + capacity > mapping_size:
            problem = "its header claims more capacity than the segment holds"
        elif state == State.EMPTY:
            if (width, height, stride, payload_length) != (0, 0, 0, 0):
                problem = "it has no image yet claims an image size"
        else:
            if pixel_format != PIXEL_FORMAT_RGBA:
                problem = f"its pixel format {pixel_format} is unknown"
            elif width < 1 or height < 1:
                problem = f"its image size {width}x{height} is empty"
            elif stride != width * BYTES_PER_PIXEL or payload_length != stride * height:
                problem = "its row and payload lengths do not match the image size"
            elif payload_length > capacity:
                problem = "its image is larger than the segment"
        if problem is not None:
            raise CorruptSegmentError(
                f"The shared memory segment is damaged: {problem}. Load the image again to repair it."
            )
        return cls(
            State(state), generation, width, height, capacity, writer_pid, write_time_ns,
            pixel_format, slot,
        )  # fmt: skip


def write_key(mapping: object, key: str) -> None:
    """Store the key in the header page, so that a listing can say whose segment it is."""
    raw = key.encode("utf-8", "surrogatepass")
    mapping[KEY_OFFSET : KEY_OFFSET + 2 + len(raw)] = _KEY_LENGTH.pack(len(raw)) + raw  # type: ignore[index]


def read_key(page: bytes) -> str | None:
    """The key a header page says it belongs to, or None if it holds none (or a bad one)."""
    if len(page) < KEY_OFFSET + 2:
        return None
    (length,) = _KEY_LENGTH.unpack_from(page, KEY_OFFSET)
    data = page[KEY_OFFSET + 2 : KEY_OFFSET + 2 + length]
    return data.decode("utf-8", "replace") if 0 < length == len(data) else None


def read_header(page: bytes | memoryview | object, mapping_size: int) -> Header:
    """The header of a segment whose first page is ``page``: the main copy, or the backup if
    the main copy was caught half-written (its checksum fails). A header that is whole but
    wrong is damage, and its error is raised, as is the main copy's when both fail."""
    raw = bytes(page[:RECORD_SIZE])  # type: ignore[index]
    try:
        return Header.unpack(raw, mapping_size)
    except CorruptSegmentError:
        if len(raw) < RECORD_SIZE or _crc_matches(raw):
            raise
        backup = bytes(page[BACKUP_OFFSET : BACKUP_OFFSET + RECORD_SIZE])  # type: ignore[index]
        try:
            return Header.unpack(backup, mapping_size)
        except CorruptSegmentError:
            pass
        raise


def write_header(mapping: object, header: Header) -> None:
    """Store the header: the backup first, then the main copy (see the module docstring)."""
    raw = header.pack()
    mapping[BACKUP_OFFSET : BACKUP_OFFSET + RECORD_SIZE] = raw  # type: ignore[index]
    mapping[:RECORD_SIZE] = raw  # type: ignore[index]


def _crc_matches(raw: bytes) -> bool:
    (crc,) = _CRC.unpack_from(raw, _FIELDS.size)
    return bool(crc == zlib.crc32(raw[: _FIELDS.size]))
