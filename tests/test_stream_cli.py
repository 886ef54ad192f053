"""``tkshm play`` and ``tkshm watch``, run as a user runs them, against real readers.

A :class:`Reader` in the test process follows the key the way any viewer would: it waits for
each new generation and copies the frame out with the header's write time. The frames it got,
and when they were published, are what ``play`` promised: the file's frames in order, each up
for its own duration, counted from the start (no drift). ``watch`` is checked through its
``--json`` lines, against a real ``play``.

Windows cannot send these commands Ctrl+C or SIGTERM from a test (tests/commands.py), so the
tests that check what a signal does are POSIX-only; elsewhere ``Running.stop`` ends them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from commands import Running
from conftest import files_for
from peer import wait_until
from PIL import Image
from platforms import WINDOWS, posix_only
from test_cli import BAD_FILES, _bad_file, assert_one_line_error, command, tkshm
from test_stream_unit import COLOURS, FORMATS, make_animation

from tkshm import ipc
from tkshm.errors import SegmentNotFoundError
from tkshm.images import open_frames
from tkshm.stamp import read_stamps
from tkshm.watching import STILL_AFTER_S

DEADLINE = 60.0
# Publishing is never early; how late a busy two-core machine may make it, at worst.
EARLY_S = 0.02
# Never early is the schedule's promise; how late is the machine's (a busy CI box, Wine), so
# this bound only catches a schedule that drifts by whole frames, not a slow scheduler.
LATE_S = 3.0 if sys.platform == "win32" else 1.0


@pytest.fixture(autouse=True)
def private_segments(isolated_dir: str) -> str:
    return isolated_dir


@dataclass(frozen=True)
class Got:
    generation: int
    write_time_ns: int
    image: Image.Image


def read_frame(segment: ipc.Segment) -> Got:
    """The newest frame with the generation and write time it was published with."""
    image = segment.read_image()
    frame = segment.last_frame  # which frame it copied
    assert frame is not None
    return Got(frame.generation, frame.write_time_ns, image)


class Reader:
    """Collecting every new frame under ``key`` on a thread until closed. Started before the
    publisher, it attaches as soon as the segment exists, so it sees the first frame too
    (which stays up for one frame's time only: too short on a busy machine to start after)."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.segment: ipc.Segment | None = None
        self.frames: list[Got] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()

    def _attach(self) -> ipc.Segment | None:
        end = time.monotonic() + DEADLINE
        while not self._stop.wait(0.001) and time.monotonic() < end:
            try:
                return ipc.Segment.attach(self.key)
            except SegmentNotFoundError:
                continue
        return None

    def _follow(self) -> None:
        self.segment = segment = self._attach()
        if segment is None:
            return
        last = 0
        while not self._stop.wait(0.001):
            if segment.peek_generation() != last:
                got = read_frame(segment)
                # (On Windows a peek at a mapping the writer has just grown out of says
                # "changed" before the new frame is complete: the read is the one we had.)
                if got.generation != last:
                    last = got.generation
                    self.frames.append(got)

    def wait_for(self, count: int) -> list[Got]:
        wait_until(lambda: len(self.frames) >= count, f"{count} frames", DEADLINE)
        return self.frames[:count]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(DEADLINE)
        if self.segment is not None:
            self.segment.detach()


@pytest.fixture
def started() -> Iterator[list[Running | Reader]]:
    """Commands and readers a test starts; all are ended at the end, readers last."""
    running: list[Running | Reader] = []
    yield running
    for thing in sorted(running, key=lambda t: isinstance(t, Reader)):
        thing.close()


def start(started: list[Running | Reader], *args: str) -> Running:
    run = Running(command(*args))
    started.append(run)
    return run


def follow(started: list[Running | Reader], key: str) -> Reader:
    reader = Reader(key)
    started.append(reader)
    return reader


def expected_frames(path: Path) -> list[bytes]:
    with open_frames(path) as opened:
        return [frame.image.tobytes() for frame in opened.frames]


def assert_on_schedule(frames: list[Got], durations_s: list[float]) -> None:
    """Generation g went up when the durations of the frames before it had passed since the
    first one was up: never early, never later than LATE_S (a drifting schedule would add up
    its lateness; each frame dropped to keep time adds one frame's). The first frame's own
    publish (it creates the segment, slow on Windows) is before the schedule starts."""
    assert frames[0].generation == 1, frames[0]
    first = frames[0].write_time_ns
    for got in frames[1:]:
        due = sum(durations_s[j % len(durations_s)] for j in range(got.generation - 1))
        at = (got.write_time_ns - first) / 1e9
        assert due - EARLY_S <= at <= due + LATE_S, (got.generation, at, due)


# -- play a file ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("fmt", "suffix"), FORMATS)
def test_play_once_publishes_every_frame_in_order_at_the_files_durations(
    key: str, tmp_path: Path, started: list[Running | Reader], fmt: str, suffix: str
) -> None:
    path = tmp_path / f"anim.{suffix}"
    durations = None if fmt == "TIFF" else [200, 300, 400, 500]  # a TIFF page has none: 100 ms
    make_animation(path, fmt, durations)
    reader = follow(started, key)  # it sees the first frame and each after it
    play = start(started, "play", "--key", key, "--once", str(path))
    line = play.line()
    assert line.startswith(f"Playing {path} (40x30, 4 frames, once) under key {key!r}, from generation 1.")
    frames = reader.wait_for(4)
    assert [got.image.tobytes() for got in frames] == expected_frames(path)
    assert [got.generation for got in frames] == [1, 2, 3, 4]
    assert_on_schedule(frames, [0.1] * 4 if durations is None else [d / 1000 for d in durations])
    status, rest, stderr = play.finish()
    assert (status, rest, stderr) == (0, ["Played 4 frames.\n"], "")
    reader.close()
    assert files_for(key) == []  # play detached at the end; the reader was the last holder


def test_play_loops_by_default_and_fps_overrides_the_durations(
    key: str, tmp_path: Path, started: list[Running | Reader]
) -> None:
    path = tmp_path / "slow.gif"
    make_animation(path, "GIF", [2000, 2000, 2000, 2000])
    reader = follow(started, key)
    play = start(started, "play", "--key", key, "--fps", "8", str(path))
    assert "(40x30, 4 frames at 8 fps, looping)" in play.line()
    frames = reader.wait_for(9)
    colours = [got.image.getpixel((39, 29))[:3] for got in frames]  # type: ignore[index]
    assert colours == [COLOURS[i % 4] for i in range(9)]  # round and round
    assert_on_schedule(frames, [0.125])


def still_image(tmp_path: Path) -> Path:
    path = tmp_path / "still.png"
    Image.new("RGB", (20, 10), "teal").save(path)
    return path


def test_play_of_a_still_image_says_it_is_a_still_publishes_it_once_and_holds_it(
    key: str, tmp_path: Path, started: list[Running | Reader]
) -> None:
    path = still_image(tmp_path)
    play = start(started, "play", "--key", key, "--duration", "3", str(path))
    line = play.line()
    assert line.startswith(f"{path} (20x10) is a still image, not an animation: published once under key ")
    assert "held as tkshm put holds it. Press Ctrl+C to stop." in line
    with ipc.Segment.attach(key) as segment:
        assert segment.peek_generation() == 1
        # Held, not published again: no new generation while it is up (a tenth of a second
        # per frame was the old way, so a second would have seen ten).
        assert segment.wait_for_change(1, timeout=1.0) == 1
        assert ipc.read_image(key=key).getpixel((0, 0)) == (0, 128, 128, 255)
        status, rest, stderr = play.finish()  # --duration ends it, on every platform
        assert (status, rest, stderr) == (0, ["Played 1 frame.\n"], "")
        assert segment.peek_generation() == 1
    assert files_for(key) == []


def test_play_once_of_a_still_publishes_it_and_says_1_frame(key: str, tmp_path: Path) -> None:
    result = tkshm("play", "--key", key, "--once", str(still_image(tmp_path)))
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines()[-1] == "Played 1 frame."
    assert files_for(key) == []


@pytest.mark.parametrize(
    ("limit", "says"),
    [
        (["--frames", "5"], r"Played 5 frames(, \d+ dropped to keep time)?\."),
        (["--duration", "1.5"], r"Played (\d+) frames(, \d+ dropped to keep time)?\."),
    ],
)
def test_play_stops_by_itself_after_duration_or_frames(key: str, limit: list[str], says: str) -> None:
    started = time.monotonic()
    result = tkshm("play", "--key", key, "--pattern", "--size", "64x48", "--fps", "20", *limit)
    took = time.monotonic() - started
    assert (result.returncode, result.stderr) == (0, ""), result
    last = re.fullmatch(says, result.stdout.splitlines()[-1])
    assert last is not None, result.stdout
    if limit[0] == "--duration":
        assert took >= 1.5 and 1 <= int(last.group(1)) <= 31, (took, result.stdout)  # 20 fps, never faster
    assert files_for(key) == []


def test_play_help_says_how_it_stops_and_that_late_frames_are_dropped() -> None:
    result = tkshm("play", "--help")
    assert (result.returncode, result.stderr) == (0, "")
    words = " ".join(result.stdout.split())
    for option in ("--duration SECONDS", "--frames N", "--force", "--once"):
        assert option in words
    assert "Ctrl+C" in words and "dropped, not shown late" in words
    assert "A still image (one frame) is published once and held" in words


def damaged_gif(tmp_path: Path, cut: int) -> str:
    """A GIF cut ``cut`` bytes into its second frame's header: Pillow then fails inside its
    own arithmetic (IndexError, struct.error), not with a word about the file."""
    whole = tmp_path / "whole.gif"
    make_animation(whole, "GIF", [100] * 4)
    data = whole.read_bytes()
    second = data.index(b"\x21\xf9\x04", data.index(b"\x21\xf9\x04") + 1)  # a frame's Graphic Control
    bad = tmp_path / "damaged.gif"
    bad.write_bytes(data[: second + cut])
    return str(bad)


@pytest.mark.parametrize("kind", [*BAD_FILES, "truncated-gif", "damaged-gif-index", "damaged-gif-struct"])
def test_play_of_a_bad_file_gives_one_line_on_stderr_and_publishes_nothing(
    key: str, tmp_path: Path, kind: str
) -> None:
    if kind == "truncated-gif":
        whole = tmp_path / "whole.gif"
        frames = [Image.effect_noise((64, 64), 80 + i).convert("RGB") for i in range(4)]
        frames[0].save(whole, save_all=True, append_images=frames[1:], duration=100)
        bad = str(tmp_path / "cut.gif")
        Path(bad).write_bytes(whole.read_bytes()[: whole.stat().st_size * 6 // 10])
    elif kind.startswith("damaged-gif"):
        bad = damaged_gif(tmp_path, 4 if kind.endswith("index") else 12)
    else:
        bad = _bad_file(tmp_path, kind)
    line = assert_one_line_error(tkshm("play", "--key", key, bad))
    assert line.startswith("tkshm play: ") and os.path.basename(bad) in line
    if kind.startswith("damaged-gif"):
        assert line == f"tkshm play: {bad} is damaged or truncated and cannot be decoded."
    assert files_for(key) == []


BAD_USAGE = {
    "nothing-to-play": (["play"], "play takes a FILE or --pattern"),
    "file-and-pattern": (["play", "--pattern", "x.gif"], "play takes a FILE or --pattern"),
    "size-of-a-file": (["play", "--size", "10x10", "x.gif"], "--size is the test pattern's"),
    "pattern-once": (["play", "--pattern", "--once"], "the test pattern never ends"),
    "loop-and-once": (["play", "--loop", "--once", "x.gif"], "not allowed with argument"),
    "bad-size": (["play", "--pattern", "--size", "big"], "'big' is not a size"),
    "tiny-size": (["play", "--pattern", "--size", "4x4"], "the test pattern is at least"),
    "zero-fps": (["play", "--pattern", "--fps", "0"], "frames per second must be a number above 0"),
    "zero-frames": (["play", "--pattern", "--frames", "0"], "the frames to publish must be a whole number"),
    "zero-duration": (
        ["play", "--pattern", "--duration", "0"],
        "the seconds to play must be a number above 0",
    ),
    "zero-speed": (["play", "--speed", "0", "x.mp4"], "the speed must be a number above 0"),
    "negative-start": (
        ["play", "--start", "-1", "x.mp4"],
        "the seconds to start at must be a number, 0 or more",
    ),
    "pattern-speed": (["play", "--pattern", "--speed", "2"], "--speed is for a FILE"),
    "pattern-start": (["play", "--pattern", "--start", "2"], "--start is for a FILE"),
    "watch-seconds": (["watch", "--seconds", "-1"], "the seconds to watch must be a number above 0"),
    "watch-file": (["watch", "x.gif"], "unrecognized arguments"),
}


@pytest.mark.parametrize("kind", list(BAD_USAGE))
def test_bad_play_or_watch_usage_gives_one_line_on_stderr(kind: str) -> None:
    args, says = BAD_USAGE[kind]
    result = tkshm(*args)
    assert result.returncode == 2
    line = assert_one_line_error(result, says)
    assert line.startswith(f"tkshm {args[0]}: "), line  # every error of play and watch so


@pytest.mark.parametrize("subcommand", ["play", "watch"])
def test_play_and_watch_have_help_with_the_key_option(subcommand: str) -> None:
    result = tkshm(subcommand, "--help")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith(f"usage: tkshm {subcommand}") and "--key KEY" in result.stdout


# -- the test pattern ----------------------------------------------------------------------------
def test_play_pattern_publishes_whole_frames_stamped_with_their_generation_and_publish_time(
    key: str, started: list[Running | Reader]
) -> None:
    reader = follow(started, key)
    play = start(started, "play", "--key", key, "--pattern", "--size", "320x240", "--fps", "30")
    assert "the test pattern (320x240 at 30 fps, stamped with its generation)" in play.line()
    frames = reader.wait_for(20)
    numbers = []
    for got in frames:
        top, bottom = read_stamps(got.image)
        assert top is not None and top == bottom, (top, bottom)
        # Stamped just before the copy into the segment, which the header's time ends.
        assert 0 <= got.write_time_ns - top.time_ns < 2e9  # stamped, then published
        assert top.frame_number == got.generation  # the stamp is the frame's own generation
        numbers.append(top.frame_number)
    assert numbers == sorted(set(numbers))  # each frame once, in order (one the reader missed: a gap)
    assert_on_schedule(frames, [1 / 30])


# -- watch ---------------------------------------------------------------------------------------
def watch_json(key: str, seconds: float) -> list[dict[str, object]]:
    result = subprocess.run(
        command("watch", "--key", key, "--json", "--seconds", str(seconds)),
        capture_output=True, text=True, timeout=DEADLINE,
    )  # fmt: skip
    assert (result.returncode, result.stderr) == (0, ""), result
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_watch_json_reports_each_second_and_a_summary_against_a_real_pattern_play(
    key: str, started: list[Running | Reader]
) -> None:
    start(started, "play", "--key", key, "--pattern", "--size", "640x360", "--fps", "30").line()
    *seconds, summary = watch_json(key, 3.5)
    assert len(seconds) == 3 and not any(report["summary"] for report in seconds)
    assert summary["summary"] is True and summary["seconds"] == pytest.approx(3.5, abs=0.2)
    assert summary["latency_from"] == "stamp" and summary["torn"] == 0
    assert 0 < summary["fps"] <= 32, summary  # type: ignore[operator]  # never faster than asked
    # The summary counts the half second after the last report too.
    assert summary["frames"] >= sum(report["frames"] for report in seconds)  # type: ignore[misc]
    p50, p99 = summary["latency_p50_ms"], summary["latency_p99_ms"]
    assert isinstance(p50, float) and isinstance(p99, float) and 0 <= p50 <= p99 < 1000
    assert set(summary) == {
        "seconds", "frames", "skipped", "fps", "skipped_per_s", "latency_p50_ms", "latency_p99_ms",
        "latency_from", "torn", "publisher", "summary",
    }  # fmt: skip


def test_watch_of_unstamped_frames_measures_latency_from_the_header(
    key: str, tmp_path: Path, started: list[Running | Reader]
) -> None:
    path = tmp_path / "anim.gif"
    make_animation(path, "GIF", [100, 100, 100, 100])
    start(started, "play", "--key", key, str(path)).line()
    *_, summary = watch_json(key, 2)
    assert summary["latency_from"] == "header" and summary["torn"] is None
    assert 0 < summary["frames"] <= 25, summary  # type: ignore[operator]  # 10 frames a second, at most


def test_watch_text_prints_a_line_each_second_then_the_total(
    key: str, started: list[Running | Reader]
) -> None:
    start(started, "play", "--key", key, "--pattern", "--size", "64x48", "--fps", "20").line()
    result = tkshm("watch", "--key", key, "--seconds", "2.5")
    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["last", "last", "total"], lines
    assert " skipped/s), latency p50 " in lines[-1], lines
    assert lines[-1].endswith(" ms (publish to copied out, from the stamp), 0 torn"), lines
    assert all(" frames/s, " in line and " skipped/s" in line for line in lines), lines


def test_watch_of_a_key_nothing_is_published_under_waits_for_it_then_follows_the_stream(
    key: str, started: list[Running | Reader]
) -> None:
    watch = start(started, "watch", "--key", key, "--json")
    waiting = json.loads(watch.line())  # a report a second while it waits, as after a publisher goes
    assert (waiting["frames"], waiting["publisher"]) == (0, "none")
    play = start(started, "play", "--key", key, "--pattern", "--size", "64x48", "--fps", "20")
    play.line()
    wait_until(lambda: (r := json.loads(watch.line()))["frames"] > 0 and r["publisher"] == "alive", "frames")
    _status, _rest, stderr = watch.stop(signal.SIGINT)
    if not WINDOWS:  # (there, stop kills it: its stderr is what it said before)
        assert _status == 0
    assert stderr.splitlines()[:2] == [
        f"tkshm watch: nothing is published under key {key!r} yet; waiting for a publisher "
        f"(start one with `tkshm play --key {key} FILE`).",
        f"tkshm watch: process {play.proc.pid} publishes under this key now; following it.",
    ]


def test_watch_of_a_still_says_it_is_a_still(
    key: str, tmp_path: Path, started: list[Running | Reader]
) -> None:
    put = start(started, "put", "--key", key, str(still_image(tmp_path)))
    put.line()
    result = tkshm("watch", "--key", key, "--seconds", str(STILL_AFTER_S + 2))
    assert result.returncode == 0, result
    assert [line.split()[0] for line in result.stdout.splitlines()][-1] == "total"
    # Said once, a report after the image had been up for STILL_AFTER_S.
    assert re.fullmatch(
        rf"tkshm watch: this key holds a still image \(20x10, generation 1, published \d+ s ago by "
        rf"process {put.proc.pid}, which keeps it there\), not a stream; waiting for its next publish\.\n",
        result.stderr,
    ), result.stderr


def test_play_refuses_to_publish_where_another_live_process_streams_unless_forced(
    key: str, started: list[Running | Reader]
) -> None:
    pattern = ["play", "--key", key, "--pattern", "--size", "64x48", "--fps", "20"]
    first = start(started, *pattern)
    first.line()
    second = tkshm(*pattern, "--frames", "3")
    line = assert_one_line_error(second, f"process {first.proc.pid} is already publishing under key {key!r}")
    assert line.startswith("tkshm play: ") and "--force" in line
    assert second.stdout == ""
    forced = tkshm(*pattern, "--frames", "3", "--force")
    assert (forced.returncode, forced.stderr) == (0, "")
    assert forced.stdout.splitlines()[-1] == "Played 3 frames."
    first.stop()
    # Once the first has gone (killed, even: a dead writer's frames are no stream), play goes on.
    again = tkshm(*pattern, "--frames", "3")
    assert (again.returncode, again.stderr) == (0, ""), again


@posix_only("signals; a test cannot send Ctrl+C to a Windows process without a console")
def test_watch_on_ctrl_c_prints_its_summary_and_exits_0(key: str, started: list[Running | Reader]) -> None:
    start(started, "play", "--key", key, "--pattern", "--size", "64x48", "--fps", "20").line()
    watch = start(started, "watch", "--key", key, "--json")
    first = json.loads(watch.line())
    assert first["summary"] is False
    status, rest, stderr = watch.stop(signal.SIGINT)
    assert (status, stderr) == (0, "")
    assert json.loads(rest[-1])["summary"] is True


@posix_only("signals; a test cannot send Ctrl+C to a Windows process without a console")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_play_on_a_signal_detaches_and_says_how_many_it_published(
    key: str, tmp_path: Path, started: list[Running | Reader], signum: int
) -> None:
    path = tmp_path / "anim.webp"
    make_animation(path, "WEBP", [50, 50, 50, 50])
    play = start(started, "play", "--key", key, str(path))
    play.line()
    wait_until(lambda: ipc.info(key=key).generation >= 3, "three frames")
    status, rest, stderr = play.stop(signum)
    assert (status, stderr) == (0, "")
    assert len(rest) == 1 and rest[0].startswith("Stopped after publishing "), rest
    assert files_for(key) == []  # it was the last holder


@posix_only("Windows reports a closed pipe as EINVAL, not EPIPE")
def test_watch_piped_into_head_ends_quietly_after_two_lines(
    key: str, started: list[Running | Reader]
) -> None:
    start(started, "play", "--key", key, "--pattern", "--size", "64x48", "--fps", "20").line()
    watch = subprocess.Popen(
        command("watch", "--key", key, "--json"), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    head = subprocess.run(
        ["head", "-2"], stdin=watch.stdout, capture_output=True, text=True, timeout=DEADLINE
    )
    assert watch.stdout is not None
    watch.stdout.close()  # now only head had it open, and head has exited
    assert watch.wait(timeout=DEADLINE) == 1  # the Python documentation's status for a cut pipe
    assert watch.stderr is not None and watch.stderr.read() == b""
    watch.stderr.close()
    assert len(head.stdout.splitlines()) == 2


def test_watch_says_once_that_the_publisher_went_and_keeps_following_the_next_one(
    key: str, started: list[Running | Reader]
) -> None:
    pattern = ["play", "--key", key, "--pattern", "--size", "64x48", "--fps", "20"]
    first = start(started, *pattern)
    first.line()
    watch = start(started, "watch", "--key", key, "--json")
    assert json.loads(watch.line())["publisher"] == "alive"
    first.stop()  # the watch still holds the segment, so it stays
    wait_until(lambda: json.loads(watch.line())["publisher"] == "gone", "a report that the publisher went")
    json.loads(watch.line())  # a second report while it is gone: the notice is not repeated
    second = start(started, *pattern)
    second.line()
    back = wait_until(lambda: (r := json.loads(watch.line()))["publisher"] == "alive" and r, "frames again")
    assert back["frames"] > 0
    _status, _rest, stderr = watch.stop(signal.SIGINT)
    assert stderr.splitlines() == [
        "tkshm watch: the publisher has gone; waiting for frames under this key.",
        f"tkshm watch: a publisher is back (process {second.proc.pid}); frames are coming under this "
        "key again.",
    ]


def test_watch_in_text_mode_says_when_the_publisher_goes_and_when_one_is_back(
    key: str, started: list[Running | Reader]
) -> None:
    pattern = ["play", "--key", key, "--pattern", "--size", "64x48", "--fps", "20"]
    first = start(started, *pattern)
    first.line()
    watch = Running(command("watch", "--key", key), merged=True)  # its notices among its lines
    started.append(watch)
    wait_until(lambda: watch.line().startswith("last "), "a first report")
    first.stop()
    gone = "tkshm watch: the publisher has gone; waiting for frames under this key.\n"
    wait_until(lambda: watch.line() == gone, "the notice that the publisher went")
    second = start(started, *pattern)
    second.line()
    back = (
        f"tkshm watch: a publisher is back (process {second.proc.pid}); frames are coming under this "
        "key again.\n"
    )
    wait_until(lambda: watch.line() == back, "the notice that a publisher is back")
