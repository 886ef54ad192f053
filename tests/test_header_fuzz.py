"""Property tests for the header parser, on plain bytes and on real segment files.

The parser is the one place where bytes written by *another* process (maybe a crashed one,
maybe a hostile one) turn into sizes that this process slices and allocates with. So:
``Header.unpack(buf, mapping_size)`` must either return a header whose every size fits
inside ``mapping_size``, or raise :class:`CorruptSegmentError` -- never anything else, for
random bytes, for valid headers with bits flipped, and for headers whose fields are
hostile but whose checksum is right (a checksum proves nothing against someone who can
compute CRC-32).

The hostile bytes go into real segments through the file on POSIX and through a view of the
named mapping on Windows (tests/platforms.py): the same neighbour, by each system's means.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import tracemalloc
import zlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from patterns import pattern, seed_of
from platforms import overwrite_header

from tkshm import ipc
from tkshm.errors import CorruptSegmentError, SegmentNotFoundError
from tkshm.header import BYTES_PER_PIXEL, HEADER_SIZE, MAGIC, RECORD_SIZE, VERSION, Header, State

_FIELDS = struct.Struct("<8sHHIQIIIIQQIIQ")  # the documented layout, restated on purpose
U16, U32, U64 = (1 << 16) - 1, (1 << 32) - 1, (1 << 64) - 1
MAPPING_SIZES = st.one_of(
    st.integers(0, U64),
    st.integers(0, 3 * HEADER_SIZE),
    st.integers(HEADER_SIZE, HEADER_SIZE + (1 << 20)),
)
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _with_crc(fields: bytes) -> bytes:
    return fields + struct.pack("<I", zlib.crc32(fields))


def _small_or_any(bits: int) -> st.SearchStrategy[int]:
    top = (1 << bits) - 1
    return st.one_of(
        st.integers(0, 4), st.integers(0, 5000), st.integers(0, top), st.sampled_from([top, top - 1])
    )


@st.composite
def checksummed_headers(draw: st.DrawFn) -> bytes:
    """Headers with a correct CRC and arbitrary (often nearly valid) fields."""
    width = draw(_small_or_any(32))
    height = draw(_small_or_any(32))
    consistent = draw(st.booleans())
    stride = width * BYTES_PER_PIXEL if consistent else draw(_small_or_any(32))
    payload = stride * height if consistent else draw(_small_or_any(64))
    fields = _FIELDS.pack(
        draw(st.sampled_from([MAGIC, MAGIC, b"TKSHMSEF", bytes(8)])),
        draw(st.sampled_from([VERSION, VERSION, 0, 2, U16])),
        draw(st.sampled_from([HEADER_SIZE, HEADER_SIZE, 0, 76, U16])),
        draw(st.one_of(st.sampled_from(list(State)), st.integers(0, U32))),
        draw(_small_or_any(64)),  # generation
        width, height,
        draw(st.sampled_from([1, 1, 0, 2, U32])),  # pixel format
        stride & U32, payload & U64,
        draw(_small_or_any(64)),  # capacity
        draw(_small_or_any(32)), draw(_small_or_any(32)), draw(_small_or_any(64)),
    )  # fmt: skip
    return _with_crc(fields)


@st.composite
def valid_headers(draw: st.DrawFn) -> bytes:
    state = draw(st.sampled_from([State.WRITING, State.READY]))
    width, height = draw(st.integers(1, 4000)), draw(st.integers(1, 4000))
    capacity = width * height * BYTES_PER_PIXEL + draw(st.integers(0, 1 << 20))
    return Header(state, draw(st.integers(0, U64)), width, height, capacity, 1, 2).pack()


@st.composite
def mutated_headers(draw: st.DrawFn) -> bytes:
    """A valid header with a few bytes changed, the CRC fixed up afterwards or not."""
    raw = bytearray(draw(st.one_of(valid_headers(), st.just(Header.empty(4096, 1).pack()))))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, RECORD_SIZE - 1))
        raw[at] = draw(st.one_of(st.integers(0, 255), st.just(raw[at] ^ (1 << draw(st.integers(0, 7))))))
    if draw(st.booleans()):
        raw[-4:] = struct.pack("<I", zlib.crc32(bytes(raw[:-4])))
    return bytes(raw)


HOSTILE_HEADERS = st.one_of(
    st.binary(min_size=RECORD_SIZE, max_size=RECORD_SIZE), checksummed_headers(), mutated_headers()
)


def check_unpack(buf: bytes, mapping_size: int) -> Header | None:
    """The parser's contract; returns the header if it was accepted."""
    try:
        header = Header.unpack(buf, mapping_size)
    except CorruptSegmentError as exc:
        message = str(exc)
        assert message.endswith("."), message
        assert "damaged" in message or "too short" in message, message
        return None
    room = mapping_size - HEADER_SIZE
    assert room >= 0
    assert header.capacity <= room, "capacity larger than the mapping"
    # Every size a caller might slice or allocate with, whatever the state says.
    assert header.width * header.height * BYTES_PER_PIXEL <= header.capacity, "image larger than capacity"
    assert header.payload_length <= header.capacity
    assert header.stride == header.width * BYTES_PER_PIXEL
    assert header.payload_length == header.stride * header.height
    return header


# ---------------------------------------------------------------------------- plain bytes
@FUZZ
@given(buf=st.binary(max_size=3 * RECORD_SIZE), mapping_size=MAPPING_SIZES)
def test_random_bytes_are_rejected_or_fit_the_mapping(buf: bytes, mapping_size: int) -> None:
    check_unpack(buf, mapping_size)


@FUZZ
@given(buf=mutated_headers(), mapping_size=MAPPING_SIZES)
def test_mutated_headers_are_rejected_or_fit_the_mapping(buf: bytes, mapping_size: int) -> None:
    check_unpack(buf, mapping_size)


@FUZZ
@given(buf=checksummed_headers(), mapping_size=MAPPING_SIZES)
def test_hostile_fields_with_a_valid_checksum_are_rejected_or_fit(buf: bytes, mapping_size: int) -> None:
    # Every state, EMPTY included: an empty segment may not claim an image size either.
    check_unpack(buf, mapping_size)


@given(buf=valid_headers())
@settings(max_examples=100, deadline=None)
def test_valid_header_round_trips(buf: bytes) -> None:
    header = Header.unpack(buf, HEADER_SIZE + struct.unpack_from("<Q", buf, 48)[0])
    assert header.pack() == buf


def test_parser_reads_only_the_record_it_is_given() -> None:
    # A header record sliced from a longer buffer: nothing past RECORD_SIZE matters.
    record = Header(State.READY, 1, 2, 2, 16, 1, 1).pack()
    for tail in (b"", b"\0" * 100, os.urandom(100)):
        assert Header.unpack(record + tail, HEADER_SIZE + 16) == Header.unpack(record, HEADER_SIZE + 16)
    for short in range(RECORD_SIZE):
        with pytest.raises(CorruptSegmentError):
            Header.unpack(record[:short], HEADER_SIZE + 16)


# ---------------------------------------------------------------------------- real segments
def _measured(call: Any) -> tuple[Any, int]:
    """Run ``call()``; return (its result or the exception it raised, peak bytes allocated)."""
    tracemalloc.start()
    try:
        result = call()
    except Exception as exc:
        result = exc
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return result, peak


# Pillow, the Segment object and the exception machinery: far below any image size.
_OVERHEAD = 256 * 1024


def segment_property(key: str, examples: int) -> None:
    """Hostile headers written into a real segment file, then read through the public API.

    Runs in a child process (see the test below), so that whatever a failing example leaves
    behind -- a handle that cannot detach, a lock -- dies with the child.
    """

    @settings(max_examples=examples, deadline=None, database=None)
    @given(raw=HOSTILE_HEADERS)
    def hostile_header_in_a_real_segment(raw: bytes) -> None:
        width, height = 16, 8
        with ipc.publish(pattern(width, height, 5), key=key) as segment:
            file_size = segment.size  # the mapping: the file's size on POSIX
            overwrite_header(segment, raw)
            image, peak = _measured(lambda: ipc.read_image(key=key))
            if isinstance(image, Exception):
                assert isinstance(image, (CorruptSegmentError, SegmentNotFoundError)), repr(image)
            else:
                assert image.width * image.height * BYTES_PER_PIXEL <= file_size - HEADER_SIZE
            assert peak <= file_size + _OVERHEAD, f"allocated {peak:,} bytes for a {file_size:,}-byte segment"
            info, peak = _measured(lambda: ipc.info(key=key))
            if isinstance(info, Exception):
                assert isinstance(info, CorruptSegmentError), repr(info)
            else:
                assert info.payload_bytes <= file_size - HEADER_SIZE
            assert peak <= file_size + _OVERHEAD
            listed = [s for s in ipc.list_segments() if s.path == segment.path]
            assert len(listed) == 1  # a damaged header is listed as "damaged", never a crash
            # The next write repairs whatever was there.
            segment.write_image(pattern(width, height, 6))
            assert seed_of(ipc.read_image(key=key)) == 6

    hostile_header_in_a_real_segment()


def test_segment_with_hostile_header_is_refused_without_reading_outside_it(
    key: str, isolated_dir: str
) -> None:
    child = subprocess.run(
        [sys.executable, os.path.abspath(__file__), key, "100"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    left = ipc.clean()  # a failing child may leave an orphan behind; the fixtures check the rest
    assert child.returncode == 0, child.stdout[-3000:] + child.stderr[-6000:]
    assert left == []


def test_info_refuses_an_empty_header_that_claims_an_image_size(key: str, isolated_dir: str) -> None:
    with ipc.publish(pattern(4, 4, 1), key=key) as segment:
        fields = _FIELDS.pack(MAGIC, VERSION, HEADER_SIZE, State.EMPTY, 0, U32, U32, 1, 0, 0, 0, 1, 0, 0)
        overwrite_header(segment, _with_crc(fields))
        with pytest.raises(ipc.CorruptSegmentError, match="no image yet claims an image size"):
            ipc.info(key=key)


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("capacity", 1 << 40, "more capacity than the segment holds"),
        ("payload", 1 << 40, "do not match the image size"),
        ("size", (1 << 20, 1 << 20), "larger than the segment"),
        ("crc", None, "checksum does not match"),
        ("magic", b"NOTTKSHM", "not a tkshm segment"),
    ],
)
def test_damaged_header_gives_one_line_cli_error(
    key: str, isolated_dir: str, field: str, value: Any, says: str
) -> None:
    with ipc.publish(pattern(4, 4, 1), key=key) as segment:
        good = segment.info()
        width, height = value if field == "size" else (good.width, good.height)
        payload = value if field == "payload" else width * height * 4
        fields = _FIELDS.pack(
            value if field == "magic" else MAGIC, VERSION, HEADER_SIZE, State.READY, good.generation,
            width, height, 1, (width * 4) & U32, payload & U64,
            value if field == "capacity" else good.capacity, 1, 0, 0,
        )  # fmt: skip
        raw = _with_crc(fields)
        if field == "crc":
            raw = raw[:-4] + bytes(b ^ 0xFF for b in raw[-4:])
        overwrite_header(segment, raw)
        for command in ("info", "get"):
            args = ["-o", os.path.join(isolated_dir, "out.png")] if command == "get" else []
            run = subprocess.run(
                [sys.executable, "-m", "tkshm", command, "--key", key, *args],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert run.returncode == 1, run
            lines = run.stderr.splitlines()
            assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
            assert says in lines[0] and "damaged" in lines[0], lines[0]


if __name__ == "__main__":
    sys.exit(segment_property(sys.argv[1], int(sys.argv[2])))
