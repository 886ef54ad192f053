"""The pieces of a stream, without processes: the stamp, the deadline schedule, the player
driven by a clock the test owns, the watch statistics, and decoding an animation's frames."""

from __future__ import annotations

import random
import struct
import time
from pathlib import Path

import pytest
from PIL import Image

from tkshm import stream
from tkshm.errors import ImageError, ImageTooLargeError
from tkshm.images import load_image, open_frames
from tkshm.stamp import STAMP_PIXELS, Stamp, read_stamp, read_stamps, stamp
from tkshm.watching import Statistics, measure, percentile


# -- the stamp -----------------------------------------------------------------------------------
def test_a_stamp_reads_back_from_the_first_and_last_row() -> None:
    image = Image.new("RGBA", (64, 40), (10, 20, 30, 255))
    stamp(image, 12345, 1_700_000_000_123_456_789)
    assert read_stamps(image) == (Stamp(12345, 1_700_000_000_123_456_789),) * 2
    assert read_stamp(image) == (12345, 1_700_000_000_123_456_789)
    # Only the stamp's pixels changed, and they stay opaque.
    assert image.getpixel((STAMP_PIXELS, 0)) == (10, 20, 30, 255)
    assert image.getpixel((STAMP_PIXELS - 1, 20)) == (10, 20, 30, 255)
    assert image.crop((0, 0, STAMP_PIXELS, 1)).getchannel("A").getextrema() == (255, 255)


def test_an_unstamped_image_has_no_stamp() -> None:
    rng = random.Random(7)
    noise = Image.frombytes("RGBA", (32, 8), rng.randbytes(32 * 8 * 4))
    assert read_stamps(noise) == (None, None)
    assert read_stamp(Image.new("RGBA", (4, 4))) is None  # too narrow to carry one


def test_rows_of_two_frames_read_as_torn() -> None:
    first, second = Image.new("RGBA", (16, 10)), Image.new("RGBA", (16, 10))
    stamp(first, 1, 100)
    stamp(second, 2, 200)
    torn = first.copy()
    torn.paste(second.crop((0, 5, 16, 10)), (0, 5))  # the bottom half of the next publish
    assert read_stamps(torn) == (Stamp(1, 100), Stamp(2, 200))
    assert read_stamp(torn) is None
    assert measure(read_stamps(torn), 0, 1_000)[1] is True
    assert measure(read_stamps(first), 0, 1_100) == (1_000, False)
    assert measure((None, None), 400, 1_000) == (600, None)  # unstamped: the header's time


def test_a_stamp_needs_an_rgba_image_wide_enough() -> None:
    with pytest.raises(ValueError, match="RGBA"):
        stamp(Image.new("RGB", (16, 4)), 0, 0)
    with pytest.raises(ValueError, match="wide"):
        stamp(Image.new("RGBA", (STAMP_PIXELS - 1, 4)), 0, 0)


# -- pacing --------------------------------------------------------------------------------------
def test_the_schedule_counts_from_the_start_so_late_wakeups_do_not_add_up() -> None:
    schedule = stream.Schedule(10.0)
    # Each frame is looked at a little late; the next one is still due on the grid.
    assert schedule.next(0.1, now=10.0) == 10.0
    assert schedule.next(0.1, now=10.13) == pytest.approx(10.1)
    assert schedule.next(0.1, now=10.24) == pytest.approx(10.2)


def test_the_schedule_drops_a_frame_whose_time_is_over_and_resyncs_when_far_behind() -> None:
    schedule = stream.Schedule(0.0)
    assert schedule.next(0.1, now=0.25) is None  # frame 0's time was 0.0..0.1
    assert schedule.next(0.1, now=0.25) is None  # frame 1's, 0.1..0.2
    assert schedule.next(0.1, now=0.25) == pytest.approx(0.2)  # frame 2 is still on
    assert schedule.next(0.1, now=60.0) is None  # a minute away (suspended): start again
    assert schedule.next(0.1, now=60.0) == 60.0


class FakeTime:
    """A clock and a stop event whose waits move the clock instead of sleeping."""

    def __init__(self) -> None:
        self.now = 100.0
        self.stopped = False

    def clock(self) -> float:
        return self.now

    def is_set(self) -> bool:
        return self.stopped

    def wait(self, timeout: float) -> bool:
        self.now += timeout
        return self.stopped


def test_play_publishes_each_frame_at_its_deadline() -> None:
    fake = FakeTime()
    published: list[tuple[float, int]] = []
    images = [Image.new("RGBA", (1, 1), (n, 0, 0, 255)) for n in range(3)]
    frames = [stream.TimedFrame(d, lambda i=i: images[i]) for i, d in enumerate([0.2, 0.3, 0.5])]
    count = stream.play(
        frames, lambda im: published.append((fake.now, im.getpixel((0, 0))[0])), fake, fake.clock
    )  # type: ignore[arg-type]
    assert (count.published, count.dropped) == (3, 0)
    assert published == [(100.0, 0), (pytest.approx(100.2), 1), (pytest.approx(100.5), 2)]


def test_play_drops_frames_when_publishing_is_slower_than_the_frame_rate_and_keeps_time() -> None:
    fake = FakeTime()
    shown: list[tuple[int, float]] = []  # (frame index, when published)

    def slow_publish(image: Image.Image) -> None:
        shown.append((image.width - 1, fake.now))
        fake.now += 0.25  # each publish takes 2.5 frame times

    frames = [stream.TimedFrame(0.1, lambda i=i: Image.new("RGBA", (i + 1, 1))) for i in range(30)]
    count = stream.play(frames, slow_publish, fake, fake.clock)  # type: ignore[arg-type]
    assert count.published + count.dropped == 30
    assert count.published == len(shown) and count.dropped > 15
    # The clock starts when frame 0 is up; after it each frame shown was shown within its own
    # time (frame i: 0.1 i .. 0.1 (i + 1) after that): late frames were dropped, not queued
    # behind, so the last one is on time too.
    assert shown[0] == (0, 100.0)
    up = 100.25
    for index, when in shown[1:]:
        assert 0.1 * index - 1e-9 <= when - up < 0.1 * (index + 1) + 1e-9, shown
    assert shown[-1][0] >= 27, shown


def test_a_slow_first_publish_is_not_lateness_so_no_frame_after_it_is_dropped() -> None:
    """The first publish creates the segment (on Windows, with Wine, a tenth of a second or
    more): the schedule starts once that frame is up, so the frames after it all go up."""
    fake = FakeTime()
    shown: list[float] = []

    def publish(image: Image.Image) -> None:
        shown.append(fake.now)
        fake.now += 0.5 if len(shown) == 1 else 0.001

    frames = [stream.TimedFrame(1 / 30, lambda: Image.new("RGBA", (1, 1))) for _ in range(10)]
    count = stream.play(frames, publish, fake, fake.clock)  # type: ignore[arg-type]
    assert (count.published, count.dropped) == (10, 0)
    assert shown[1] == pytest.approx(100.5 + 1 / 30)
    assert shown[9] == pytest.approx(100.5 + 9 / 30)


def test_play_stops_when_asked() -> None:
    fake = FakeTime()
    published: list[int] = []

    def publish(image: Image.Image) -> None:
        published.append(1)
        fake.stopped = len(published) == 2

    frames = (stream.TimedFrame(0.1, lambda: Image.new("RGBA", (1, 1))) for _ in iter(int, 1))  # endless
    assert stream.play(frames, publish, fake, fake.clock).published == 2  # type: ignore[arg-type]


def test_play_stops_after_most_frames_or_seconds_from_the_first_frame() -> None:
    frames = [stream.TimedFrame(0.1, lambda: Image.new("RGBA", (1, 1))) for _ in range(100)]
    fake = FakeTime()
    assert stream.play(frames, lambda im: None, fake, fake.clock, most=7).published == 7  # type: ignore[arg-type]
    fake = FakeTime()
    count = stream.play(frames, lambda im: None, fake, fake.clock, seconds=1.05)  # type: ignore[arg-type]
    assert (count.published, fake.now) == (11, pytest.approx(101.05))  # frames due at 0.0 .. 1.0
    # A frame longer than the time left: the time limit ends the wait, not the frame.
    fake = FakeTime()
    long = [stream.TimedFrame(60.0, lambda: Image.new("RGBA", (1, 1))) for _ in range(3)]
    assert stream.play(long, lambda im: None, fake, fake.clock, seconds=2.0).published == 1  # type: ignore[arg-type]
    assert fake.now == pytest.approx(102.0)


def test_frame_duration_prefers_fps_then_the_file_then_the_default() -> None:
    assert stream.frame_duration(40, 25.0) == pytest.approx(0.04)
    assert stream.frame_duration(250, None) == 0.25
    assert stream.frame_duration(0, None) == stream.DEFAULT_DURATION_S
    assert stream.frame_duration(None, None) == stream.DEFAULT_DURATION_S


# -- the test pattern ----------------------------------------------------------------------------
def test_the_pattern_moves_and_is_stamped_in_every_frame() -> None:
    pattern = stream.TestPattern(320, 240)
    first = pattern.frame(0, lambda: 111).copy()
    later = pattern.frame(30, lambda: 222).copy()
    assert read_stamp(first) == (0, 111)
    assert read_stamp(later) == (30, 222)
    assert first.tobytes() != later.tobytes()
    # Drawing frame 0 again over frame 30 gives frame 0 exactly: nothing of 30 is left behind.
    assert pattern.frame(0, lambda: 111).tobytes() == first.tobytes()


def test_the_pattern_at_1080p_costs_far_less_than_a_60_fps_frame_time() -> None:
    pattern = stream.TestPattern(1920, 1080)
    frames = 120
    started = time.process_time()  # CPU time: what the other tests on the machine take is not ours
    for number in range(frames):
        pattern.frame(number)
    per_frame = (time.process_time() - started) / frames
    assert per_frame < 1 / 60 / 2, f"{per_frame * 1000:.2f} ms per frame"


def test_pattern_sizes_too_small_or_too_large_are_refused_in_words() -> None:
    assert stream.pattern_size_problem(1920, 1080) is None
    assert "at least" in (stream.pattern_size_problem(8, 8) or "")
    assert "more than" in (stream.pattern_size_problem(20_000, 20_000) or "")


# -- statistics ----------------------------------------------------------------------------------
def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.99) == 99
    assert percentile([7], 0.99) == 7
    assert percentile([], 0.5) is None


def test_statistics_count_gaps_torn_frames_and_latency_per_interval_and_in_total() -> None:
    stats = Statistics(start=0.0)
    stats.begin_at(10)
    stats.frame(11, 1_000_000, torn=False)
    stats.frame(14, 3_000_000, torn=True)  # 12 and 13 were never read
    first = stats.report(1.0, "alive")
    assert (first.frames, first.skipped, first.torn, first.fps, first.skipped_per_s) == (2, 2, 1, 2.0, 2.0)
    assert (first.latency_p50_ms, first.latency_p99_ms, first.latency_from) == (1.0, 3.0, "stamp")
    stats.frame(15, 2_000_000, torn=None)
    second = stats.report(2.0, "gone")
    assert (second.frames, second.skipped, second.torn, second.latency_from) == (1, 0, None, "header")
    total = stats.summary(2.0, "gone")
    assert (total.frames, total.skipped, total.torn, total.summary) == (3, 2, 1, True)
    assert total.latency_p50_ms == 2.0
    empty = stats.report(3.0, "alive")
    assert (empty.frames, empty.latency_p50_ms, empty.latency_from) == (0, None, None)
    assert empty.text() == "last 1.0 s: 0.0 frames/s, 0.0 skipped/s"
    assert first.text() == (
        "last 1.0 s: 2.0 frames/s, 2.0 skipped/s, latency p50 1.00 ms p99 3.00 ms"
        " (publish to copied out, from the stamp), 1 torn"
    )
    assert total.text().startswith("total 2.0 s: 3 frames, 2 skipped (1.5 frames/s, 1.0 skipped/s), latency")


# -- decoding an animation -----------------------------------------------------------------------
COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]


def make_animation(
    path: Path, fmt: str, durations: list[int] | None, size: tuple[int, int] = (40, 30)
) -> None:
    frames = []
    for index, colour in enumerate(COLOURS):
        frame = Image.new("RGB", size, colour)
        frame.paste((255, 255, 255), (index * 4, 2, index * 4 + 6, 8))  # a detail that moves
        frames.append(frame)
    params: dict[str, object] = {"save_all": True, "append_images": frames[1:]}
    if durations is not None:
        params.update(duration=durations, loop=0)
    if fmt == "WEBP":
        params["lossless"] = True
    frames[0].save(path, fmt, **params)


FORMATS = [("GIF", "gif"), ("PNG", "png"), ("WEBP", "webp"), ("TIFF", "tiff")]


@pytest.mark.parametrize(("fmt", "suffix"), FORMATS)
def test_open_frames_gives_every_frame_as_rgba_with_its_duration(
    tmp_path: Path, fmt: str, suffix: str
) -> None:
    path = tmp_path / f"anim.{suffix}"
    durations = None if fmt == "TIFF" else [100, 200, 300, 400]
    make_animation(path, fmt, durations)
    with open_frames(path) as opened:
        assert (opened.format, opened.size, opened.frame_count) == (fmt, (40, 30), 4)
        frames = list(opened.frames)
    assert [f.image.mode for f in frames] == ["RGBA"] * 4
    assert [f.image.getpixel((39, 29))[:3] for f in frames] == COLOURS
    if durations is None:
        assert [stream.frame_duration(f.duration_ms, None) for f in frames] == [stream.DEFAULT_DURATION_S] * 4
    else:
        assert [round(f.duration_ms or 0) for f in frames] == durations


def test_an_animation_too_big_for_the_cache_is_decoded_as_it_plays(tmp_path: Path) -> None:
    path = tmp_path / "anim.png"
    make_animation(path, "PNG", [100, 100, 100, 100])
    cached = stream.open_animation(str(path))
    streamed = stream.open_animation(str(path), cache_bytes=40 * 30 * 4 * 2)
    assert (cached.cached, streamed.cached) == (True, False)
    one_pass = [f.render().tobytes() for f in cached.frames(None, loop=False)]
    assert [f.render().tobytes() for f in streamed.frames(None, loop=False)] == one_pass
    looping = streamed.frames(None, loop=True)
    assert [next(looping).render().tobytes() for _ in range(6)] == one_pass + one_pass[:2]


def test_a_truncated_animation_is_an_image_error_with_a_sentence(tmp_path: Path) -> None:
    rng = random.Random(3)
    frames = [Image.frombytes("RGB", (64, 64), rng.randbytes(64 * 64 * 3)) for _ in range(4)]
    whole = tmp_path / "whole.gif"
    frames[0].save(whole, save_all=True, append_images=frames[1:], duration=100)
    cut = tmp_path / "cut.gif"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.6)])
    with pytest.raises(ImageError, match="damaged or truncated"):
        stream.open_animation(str(cut))


@pytest.mark.parametrize("cut", [4, 12], ids=["IndexError", "struct.error"])
def test_a_damaged_animation_is_a_sentence_without_pythons_own_words(tmp_path: Path, cut: int) -> None:
    whole = tmp_path / "whole.gif"
    make_animation(whole, "GIF", [100] * 4)
    data = whole.read_bytes()
    second = data.index(b"\x21\xf9\x04", data.index(b"\x21\xf9\x04") + 1)  # the second frame's header
    damaged = tmp_path / "damaged.gif"
    damaged.write_bytes(data[: second + cut])
    with pytest.raises(ImageError) as raised:
        stream.open_animation(str(damaged))
    assert str(raised.value) == f"{damaged} is damaged or truncated and cannot be decoded."
    assert isinstance(raised.value.__cause__, (IndexError, struct.error))  # what Pillow raised


@pytest.mark.parametrize("name", ["png_bomb", "gif_bomb"])
def test_an_animation_claiming_too_many_pixels_is_refused_before_decoding(tmp_path: Path, name: str) -> None:
    import make_corpus

    bomb = tmp_path / f"bomb.{name[:3]}"
    bomb.write_bytes(getattr(make_corpus, name)())
    with pytest.raises(ImageTooLargeError, match="decompression bomb"):
        stream.open_animation(str(bomb))
    with pytest.raises(ImageTooLargeError, match="decompression bomb"):  # and load_image, as before
        load_image(bomb)
