"""Unit tests of the pieces under the IPC core: the header record, key names, mode conversion,
SegmentInfo and the small print of the Segment API. One process; real files in /dev/shm (named
mappings on Windows)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time

import pytest
from conftest import files_for
from hypothesis import given, settings
from hypothesis import strategies as st
from patterns import pattern
from PIL import Image
from platforms import capacity_for, segment_path

from tkshm import errors, frames, ipc
from tkshm.header import (
    GENERATION_OFFSET,
    HEADER_SIZE,
    MAGIC,
    RECORD_SIZE,
    Header,
    State,
)
from tkshm.images import to_rgba

SAFE_NAME = re.compile(r"tkshm_[A-Za-z0-9_-]+")


# -- the header record -------------------------------------------------------------------
HEADERS = [
    Header.empty(0, 1),
    Header.empty(123, 4242),
    Header(State.WRITING, 7, 1, 1, 4, 99, 0),
    Header(State.READY, 2**64 - 1, 7680, 4320, 7680 * 4320 * 4, 2**32 - 1, 2**64 - 1, slot=3),
]


@pytest.mark.parametrize("header", HEADERS, ids=lambda h: f"{h.state.name}-{h.width}x{h.height}")
def test_header_survives_pack_and_unpack(header: Header) -> None:
    raw = header.pack()
    assert len(raw) == RECORD_SIZE == 76
    assert raw[:8] == MAGIC
    assert int.from_bytes(raw[GENERATION_OFFSET : GENERATION_OFFSET + 8], "little") == header.generation
    assert Header.unpack(raw, HEADER_SIZE + header.capacity) == header
    assert Header.unpack(memoryview(raw + bytes(100)), HEADER_SIZE + header.capacity + 1) == header


@settings(max_examples=200, deadline=None)
@given(
    state=st.sampled_from([State.WRITING, State.READY]),
    generation=st.integers(0, 2**64 - 1),
    width=st.integers(1, 10_000),
    height=st.integers(1, 10_000),
    spare=st.integers(0, 2**20),
    writer_pid=st.integers(0, 2**32 - 1),
    write_time_ns=st.integers(0, 2**64 - 1),
)
def test_any_valid_header_survives_pack_and_unpack(
    state: State, generation: int, width: int, height: int, spare: int, writer_pid: int, write_time_ns: int
) -> None:
    capacity = width * height * 4 + spare
    header = Header(state, generation, width, height, capacity, writer_pid, write_time_ns)
    assert Header.unpack(header.pack(), HEADER_SIZE + capacity) == header


def _damaged(raw: bytes, offset: int, value: bytes) -> bytes:
    return raw[:offset] + value + raw[offset + len(value) :]


@pytest.mark.parametrize(
    ("raw", "mapping_size", "problem"),
    [
        (HEADERS[2].pack()[:40], HEADER_SIZE + 4, "too short"),
        (HEADERS[2].pack(), HEADER_SIZE - 1, "too short"),
        (_damaged(HEADERS[2].pack(), 0, b"NOTTKSHM"), HEADER_SIZE + 4, "not a tkshm segment"),
        (_damaged(HEADERS[2].pack(), 72, b"\0\0\0\0"), HEADER_SIZE + 4, "checksum"),
        (_damaged(HEADERS[2].pack(), 17, b"\1"), HEADER_SIZE + 4, "checksum"),
        (HEADERS[2].pack(), HEADER_SIZE + 3, "more capacity than the segment holds"),
        (Header(State.READY, 1, 10, 10, 399, 1, 1).pack(), HEADER_SIZE + 399, "larger than the segment"),
        (Header(State.READY, 1, 0, 10, 400, 1, 1).pack(), HEADER_SIZE + 400, "is empty"),
    ],
    ids=["short-buffer", "short-mapping", "magic", "crc", "flipped-bit", "capacity", "payload", "no-pixels"],
)
def test_header_that_does_not_fit_is_refused_with_a_sentence(
    raw: bytes, mapping_size: int, problem: str
) -> None:
    with pytest.raises(ipc.CorruptSegmentError, match=problem) as raised:
        Header.unpack(raw, mapping_size)
    assert str(raised.value).endswith(".")


# -- key names -----------------------------------------------------------------------------
def test_native_name_is_readable_stable_and_safe() -> None:
    name = ipc.native_name("holiday photos")
    assert name.startswith("tkshm_holiday_photos_")
    assert name == ipc.native_name("holiday photos")
    assert SAFE_NAME.fullmatch(name)
    assert SAFE_NAME.fullmatch(ipc.native_name("../../etc/passwd"))
    assert SAFE_NAME.fullmatch(ipc.native_name("图像"))  # no ASCII in the slug: hash only


def test_keys_that_look_alike_get_different_names() -> None:
    keys = ["a/b", "a_b", "a b", "a.b", "a\\b", "a__b", "_a_b_", "x" * 40 + "1", "x" * 40 + "2", "K", "k"]
    assert len({ipc.native_name(k) for k in keys}) == len(keys)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=ipc.MAX_KEY_LENGTH).filter(lambda k: "\0" not in k), min_size=2))
def test_distinct_keys_always_get_distinct_safe_names(keys: list[str]) -> None:
    keys = list(dict.fromkeys(keys))
    names = [ipc.native_name(k) for k in keys]
    assert len(set(names)) == len(keys)
    assert all(SAFE_NAME.fullmatch(n) and len(n) <= 64 for n in names)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "non-empty"),
        ("a\0b", "NUL"),
        ("\0", "NUL"),
        ("k" * (ipc.MAX_KEY_LENGTH + 1), "at most 255"),
        (None, "non-empty string"),
        (b"tkshm", "non-empty string"),
    ],
    ids=["empty", "nul-inside", "nul", "too-long", "none", "bytes"],
)
def test_key_that_cannot_name_a_segment_is_refused(key: object, message: str) -> None:
    with pytest.raises(ipc.InvalidKeyError, match=message):
        ipc.native_name(key)  # type: ignore[arg-type]


def test_longest_allowed_key_is_accepted() -> None:
    assert SAFE_NAME.fullmatch(ipc.native_name("k" * ipc.MAX_KEY_LENGTH))


# -- to_rgba, mode by mode, with the exact pixels expected ------------------------------------
def _palette_image(transparent: int | None = None) -> Image.Image:
    image = Image.new("P", (3, 1))
    image.putpalette([10, 20, 30, 40, 50, 60, 70, 80, 90])
    image.putdata([0, 1, 2])
    if transparent is not None:
        image.info["transparency"] = transparent
    return image


def _rgba_palette_image() -> Image.Image:
    image = Image.new("P", (2, 1))
    image.putpalette([10, 20, 30, 255, 40, 50, 60, 99], "RGBA")
    image.putdata([0, 1])
    return image


def _palette_alpha_image() -> Image.Image:
    image = Image.new("PA", (2, 1))
    image.putpalette([10, 20, 30, 40, 50, 60, 70, 80, 90])
    image.putpixel((0, 0), (2, 77))
    image.putpixel((1, 0), (0, 0))
    return image


def _one_row(mode: str, values: list[object]) -> Image.Image:
    image = Image.new(mode, (len(values), 1))
    for x, value in enumerate(values):
        image.putpixel((x, 0), value)  # type: ignore[arg-type]
    return image


CONVERSIONS = {
    "RGB": (_one_row("RGB", [(10, 20, 30), (255, 0, 128)]), [(10, 20, 30, 255), (255, 0, 128, 255)]),
    "RGBX": (_one_row("RGBX", [(10, 20, 30, 0)]), [(10, 20, 30, 255)]),
    "L": (_one_row("L", [0, 77, 255]), [(0, 0, 0, 255), (77, 77, 77, 255), (255, 255, 255, 255)]),
    "LA": (_one_row("LA", [(9, 77), (200, 0)]), [(9, 9, 9, 77), (200, 200, 200, 0)]),
    "P-transparency": (_palette_image(1), [(10, 20, 30, 255), (40, 50, 60, 0), (70, 80, 90, 255)]),
    "P-opaque": (_palette_image(), [(10, 20, 30, 255), (40, 50, 60, 255), (70, 80, 90, 255)]),
    "P-rgba-palette": (_rgba_palette_image(), [(10, 20, 30, 255), (40, 50, 60, 99)]),
    "PA": (_palette_alpha_image(), [(70, 80, 90, 77), (10, 20, 30, 0)]),
    # 16 bits become 8 by scaling (v / 256), not by clipping at 255.
    "I;16": (
        _one_row("I;16", [0, 255, 256, 32768, 65280, 65535]),
        [(v, v, v, 255) for v in (0, 0, 1, 128, 255, 255)],
    ),
    "I;16B": (_one_row("I;16B", [512, 65535]), [(2, 2, 2, 255), (255, 255, 255, 255)]),
    "I": (_one_row("I", [0, 25700, 65535]), [(0, 0, 0, 255), (100, 100, 100, 255), (255, 255, 255, 255)]),
    "F": (_one_row("F", [0.0, 200.0]), [(0, 0, 0, 255), (200, 200, 200, 255)]),
    "CMYK": (
        _one_row("CMYK", [(0, 0, 0, 0), (255, 0, 0, 0), (0, 255, 0, 0), (0, 0, 255, 0), (0, 0, 0, 255)]),
        [(255, 255, 255, 255), (0, 255, 255, 255), (255, 0, 255, 255), (255, 255, 0, 255), (0, 0, 0, 255)],
    ),
    "1": (_one_row("1", [0, 1]), [(0, 0, 0, 255), (255, 255, 255, 255)]),
    # Premultiplied alpha becomes straight alpha: 10/51*255 = 50.
    "RGBa": (_one_row("RGBa", [(10, 20, 51, 51), (1, 2, 3, 255)]), [(50, 100, 255, 51), (1, 2, 3, 255)]),
    "YCbCr": (_one_row("YCbCr", [(128, 128, 128), (0, 128, 128)]), [(128, 128, 128, 255), (0, 0, 0, 255)]),
    "HSV": (_one_row("HSV", [(0, 255, 255), (0, 0, 255)]), [(255, 0, 0, 255), (255, 255, 255, 255)]),
}


@pytest.mark.parametrize("case", sorted(CONVERSIONS))
def test_to_rgba_gives_the_exact_straight_rgba_pixels(case: str) -> None:
    source, expected = CONVERSIONS[case]
    converted = to_rgba(source)
    assert converted.mode == "RGBA"
    assert converted.size == source.size
    assert [converted.getpixel((x, 0)) for x in range(source.width)] == expected


def test_to_rgba_returns_an_rgba_image_itself() -> None:
    image = Image.new("RGBA", (2, 2), (1, 2, 3, 4))
    assert to_rgba(image) is image


def test_to_rgba_unpremultiplies_la() -> None:
    converted = to_rgba(_one_row("La", [(20, 51)]))
    assert converted.getpixel((0, 0)) == (100, 100, 100, 51)


# -- SegmentInfo -----------------------------------------------------------------------------
def test_segment_info_reports_the_header_of_the_last_write(key: str) -> None:
    before = time.time_ns()
    with ipc.publish(Image.new("RGB", (30, 20), "red"), key=key) as segment:
        after = time.time_ns()
        info = ipc.info(key=key)
        assert info == segment.info()
        assert (info.key, info.name, info.path) == (key, ipc.native_name(key), segment.path)
        assert (info.state, info.generation, info.width, info.height) == ("ready", 1, 30, 20)
        assert (info.payload_bytes, info.capacity) == (30 * 20 * 4, capacity_for(30 * 20 * 4))
        assert info.writer_pid == os.getpid()
        assert before <= info.write_time_ns <= after
        assert info.in_use is True
        second = segment.write_image(Image.new("L", (5, 5)))
        assert (second.generation, second.width, second.payload_bytes) == (2, 5, 100)
        # The first frame stays while the second is written (a writer killed now leaves it),
        # so the second goes after it, page-aligned: room for both.
        assert second.capacity == frames.page_round(capacity_for(2400)) + frames.page_round(100)


def test_segment_info_is_a_frozen_record_that_serialises_to_json(key: str) -> None:
    with ipc.publish(Image.new("RGB", (3, 2)), key=key):
        info = ipc.info(key=key)
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.generation = 5  # type: ignore[misc]
    as_dict = info.as_dict()
    assert set(as_dict) == {
        "key", "name", "path", "state", "generation", "width", "height", "payload_bytes",
        "capacity", "writer_pid", "write_time_ns", "in_use",
    }  # fmt: skip
    assert json.loads(json.dumps(as_dict)) == as_dict
    assert ipc.SegmentInfo(**as_dict) == info


# -- the Segment API -------------------------------------------------------------------------
def test_detach_is_idempotent_and_says_who_removed_the_segment(key: str) -> None:
    first = ipc.Segment.create(key, capacity=16)
    second = ipc.Segment.attach(key)
    assert second.detach() is False  # the first is still attached
    assert second.detach() is False
    assert first.is_attached
    assert first.detach() is True  # the last one out removes the files
    assert not first.is_attached
    assert first.detach() is False
    assert files_for(key) == []


def test_detaching_inside_a_locked_block_releases_the_lock_and_leaves_the_block_quietly(key: str) -> None:
    segment = ipc.publish(Image.new("RGB", (4, 4)), key=key)
    with segment.lock(exclusive=True):
        assert segment.detach() is True  # closing the lock file released the lock with it
    assert files_for(key) == []


def test_segment_repr_size_and_path(key: str) -> None:
    with ipc.Segment.create(key, capacity=100) as segment:
        assert segment.size == HEADER_SIZE + capacity_for(100)
        assert segment.path == segment_path(key)
        assert repr(segment) == f"<Segment key={key!r} attached path={segment.path!r}>"
        segment.write_image(Image.new("RGBA", (10, 10)))
        assert segment.size == HEADER_SIZE + capacity_for(400)  # grown for the bigger image (POSIX)
    assert repr(segment) == f"<Segment key={key!r} detached path={segment.path!r}>"


def test_detached_segment_refuses_to_be_used_with_a_sentence(key: str) -> None:
    segment = ipc.Segment.create(key)
    segment.detach()
    for use in (
        segment.read_image,
        segment.info,
        segment.peek_generation,
        lambda: segment.size,
        lambda: segment.write_image(Image.new("RGB", (1, 1))),
        lambda: segment.lock().__enter__(),
    ):
        with pytest.raises(ipc.TkshmError, match="is detached; attach to it again"):
            use()


def test_lock_times_out_with_lock_timeout_error_while_another_holder_has_it(key: str) -> None:
    # flock (and LockFileEx) locks belong to open files, so two attachments in one process
    # exclude each other.
    with ipc.Segment.create(key) as holder, ipc.Segment.attach(key) as other:
        with holder.lock(exclusive=True):
            for exclusive in (True, False):
                with pytest.raises(ipc.LockTimeoutError) as raised, other.lock(exclusive, timeout=0.05):
                    pass
                assert isinstance(raised.value, TimeoutError)
                assert (raised.value.key, raised.value.timeout) == (key, 0.05)
                assert "busy" in str(raised.value)
                assert "Try again." in str(raised.value)
        with holder.lock(exclusive=False), other.lock(exclusive=False, timeout=0.05):
            pass  # readers share
        with other.lock(exclusive=True, timeout=0.05):
            pass  # and once released, a writer gets in


@pytest.mark.parametrize("inner", ["read_image", "info", "write_image"])
def test_calls_inside_a_locked_block_keep_the_lock_held(key: str, inner: str) -> None:
    with (
        ipc.publish(Image.new("RGB", (4, 4)), key=key) as segment,
        ipc.Segment.attach(key) as other,
        segment.lock(exclusive=True),
    ):
        if inner == "write_image":
            segment.write_image(Image.new("RGB", (4, 4), "red"))
        else:
            getattr(segment, inner)()
        with pytest.raises(ipc.LockTimeoutError), other.lock(exclusive=False, timeout=0.05):
            pass  # still ours until the block ends


def test_attach_to_a_missing_segment_says_nothing_is_published_in_one_line_and_creates_nothing(
    key: str,
) -> None:
    with pytest.raises(ipc.SegmentNotFoundError, match="Nothing is published under key") as raised:
        ipc.Segment.attach(key)
    assert raised.value.key == key
    assert "\n" not in str(raised.value) and "Publish an image there first" in str(raised.value)
    with pytest.raises(ipc.SegmentNotFoundError):
        ipc.info(key=key)
    assert files_for(key) == []


def test_created_but_empty_segment_reads_as_not_found(key: str) -> None:
    with ipc.Segment.create(key) as segment:
        assert segment.info().state == "empty"
        with pytest.raises(ipc.SegmentNotFoundError):
            segment.read_image()
        with pytest.raises(ipc.SegmentNotFoundError):
            ipc.read_image(key=key)


def test_publishing_an_empty_image_is_refused_and_leaves_nothing(key: str) -> None:
    with pytest.raises(ipc.ImageError, match="empty"):
        ipc.publish(Image.new("RGBA", (0, 0)), key=key)
    assert files_for(key) == []


def test_every_write_bumps_the_generation(key: str) -> None:
    with ipc.publish(Image.new("RGB", (4, 4)), key=key) as segment:
        assert segment.peek_generation() == 1
        info = segment.write_image(Image.new("RGB", (4, 4)))
        assert info.generation == segment.peek_generation() == 2
        assert segment.last_stats is not None
        assert segment.last_stats.nbytes == 64
        image = segment.read_image()
        assert segment.last_stats.nbytes == 64
        assert image.size == (4, 4)


def test_read_image_returns_a_private_copy(key: str) -> None:
    with ipc.publish(Image.new("RGBA", (8, 8), (1, 2, 3, 4)), key=key) as segment:
        image = ipc.read_image(key=key)
        segment.write_image(Image.new("RGBA", (8, 8), (9, 9, 9, 9)))
    assert files_for(key) == []
    assert image.getpixel((7, 7)) == (1, 2, 3, 4)  # intact after overwrite and detach


def test_with_block_of_publish_keeps_the_segment_alive_until_it_ends(key: str) -> None:
    with ipc.publish(Image.new("RGB", (2, 2), "blue"), key=key) as segment:
        assert segment.is_attached
        assert ipc.read_image(key=key).getpixel((0, 0)) == (0, 0, 255, 255)
    assert files_for(key) == []
    with pytest.raises(ipc.SegmentNotFoundError):
        ipc.read_image(key=key)


def test_every_error_derives_from_tkshm_error() -> None:
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), ipc.TkshmError), name
        assert getattr(ipc, name) is getattr(errors, name)


def test_preview_is_sampled_from_the_segment_and_fits_the_box(key: str) -> None:
    image = pattern(640, 360, 7)
    with ipc.publish(image, key=key) as segment:
        preview = segment.read_preview((100, 100))
        assert preview.size == (100, 56)  # aspect kept
        assert preview.tobytes() == image.resize((100, 56), Image.Resampling.NEAREST).tobytes()
        assert segment.last_stats is not None and segment.last_stats.nbytes == 100 * 56 * 4
        whole = segment.read_preview((1000, 1000))  # never enlarged: the image itself
        assert whole.tobytes() == image.tobytes()
        segment.write_image(pattern(8, 8, 9))  # the preview is a copy, not a view
        assert preview.tobytes() == image.resize((100, 56), Image.Resampling.NEAREST).tobytes()
