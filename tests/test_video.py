"""``tkshm play`` of real video, through PyAV, against a real reader process's view.

Every video here is made by PyAV itself at test time (small: 64x48, a few dozen frames), so
nothing large is committed and every pixel format FFmpeg converts is one the test chose.
What the reader copies out of the segment is compared with what PyAV decodes from the same
file (``to_ndarray(format="rgba")``), pixel for pixel; when each frame went up is compared
with the presentation times the file was written with.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
import wave
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import test_stream_cli as stream_cli
from commands import Running
from conftest import files_for
from peer import wait_until
from PIL import Image
from platforms import posix_only
from test_cli import tkshm
from test_stream_cli import (
    DEADLINE,
    Got,
    Reader,
    assert_on_schedule,
    follow,
    start,
)
from test_stream_unit import COLOURS, make_animation

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

W, H = 64, 48
# The fixtures of the stream tests: each test's own segment directory, and what it started.
private_segments = stream_cli.private_segments
started = stream_cli.started


@pytest.fixture
def av() -> Any:
    return pytest.importorskip("av")


def picture(index: int) -> npt.NDArray[np.uint8]:
    """Frame ``index``'s RGB pixels: a block that moves, on a colour of its own, so that
    every frame differs from the others in a way lossy codecs keep."""
    import numpy

    pixels = numpy.zeros((H, W, 3), numpy.uint8)
    pixels[:] = ((index * 37) % 200 + 30, (index * 71) % 200 + 30, (index * 13) % 200 + 30)
    x = (index * 3) % (W - 16)
    pixels[8:24, x : x + 16] = 255
    return pixels


def make_video(
    path: Path,
    codec: str,
    pix_fmt: str,
    pts_ms: list[int] | None = None,
    count: int = 20,
    rotation: int | None = None,
    gop: int | None = None,
) -> None:
    """A video of ``count`` frames at 30 fps, or at the given presentation times (ms)."""
    import av as pyav

    times = pts_ms if pts_ms is not None else [round(i * 1000 / 30) for i in range(count)]
    options = {"movflags": "faststart"} if path.suffix in (".mp4", ".mov") else {}
    with pyav.open(str(path), "w", options=options) as container:
        stream = container.add_stream(codec, rate=30)
        stream.width, stream.height, stream.pix_fmt = W, H, pix_fmt
        stream.time_base = Fraction(1, 1000)
        stream.codec_context.time_base = Fraction(1, 1000)
        if gop is not None:
            stream.codec_context.gop_size = gop
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for index, at in enumerate(times):
            rgb = picture(index)
            if pix_fmt in ("yuva420p", "rgba"):  # an alpha that varies across the frame
                import numpy

                alpha = numpy.linspace(0, 255, W, dtype=numpy.uint8)[None, :, None].repeat(H, 0)
                frame = pyav.VideoFrame.from_ndarray(numpy.concatenate([rgb, alpha], 2), format="rgba")
            else:
                frame = pyav.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame = frame.reformat(format=pix_fmt)
            frame.pts, frame.time_base = at, Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def decoded(path: Path) -> tuple[list[npt.NDArray[np.uint8]], str]:
    """What PyAV makes of the file: each frame's RGBA, and the pixel format it decodes to."""
    import av as pyav

    with pyav.open(str(path)) as container:
        frames = list(container.decode(video=0))
    return [frame.to_ndarray(format="rgba") for frame in frames], frames[0].format.name


def pixels(got: Got) -> npt.NDArray[np.uint8]:
    import numpy

    return numpy.asarray(got.image)


def wait_done(play: Running, reader: Reader, generations: int) -> tuple[int, list[str], str]:
    """Wait for the play to end and the reader to have seen its last generation."""
    ended = play.finish()
    wait_until(lambda: reader.frames and reader.frames[-1].generation >= generations, "the last frame")
    return ended


# -- pixels: FFmpeg's own RGBA, whatever the pixel format -----------------------------------------
FORMATS = [
    ("clip.mp4", "libx264", "yuv420p"),
    ("deep.mp4", "libx264", "yuv420p10le"),
    ("full.mkv", "libx264", "yuv444p"),
    ("grey.mkv", "ffv1", "gray"),
    ("clip.webm", "libvpx-vp9", "yuv420p"),
    ("clip.avi", "mpeg4", "yuv420p"),
    ("motion.avi", "mjpeg", "yuvj420p"),
    ("rgb.mov", "png", "rgb24"),
    ("alpha.mkv", "ffv1", "yuva420p"),
]


@pytest.mark.parametrize(("name", "codec", "pix_fmt"), FORMATS, ids=[f[2] + "-" + f[1] for f in FORMATS])
def test_every_frame_published_is_ffmpegs_own_rgba_of_that_frame(
    av: Any, key: str, tmp_path: Path, started: list[Any], name: str, codec: str, pix_fmt: str
) -> None:
    path = tmp_path / name
    make_video(path, codec, pix_fmt, count=12)
    expected, decoded_as = decoded(path)
    assert decoded_as == pix_fmt and len(expected) == 12  # the format the test meant to check
    reader = follow(started, key)
    play = start(started, "play", "--key", key, "--once", "--fps", "15", str(path))
    assert play.line().startswith(f"Playing {path} (64x48, ")
    status, rest, stderr = wait_done(play, reader, 12)
    assert (status, rest, stderr) == (0, ["Played 12 frames.\n"], "")
    seen = reader.frames
    assert len(seen) >= 6, [got.generation for got in seen]  # a reader on a busy machine may miss some
    for got in seen:
        assert got.image.size == (W, H)
        assert (pixels(got) == expected[got.generation - 1]).all(), got.generation
    if pix_fmt == "yuva420p":
        assert pixels(seen[0])[0, 0, 3] < 20 and pixels(seen[0])[0, -1, 3] > 235  # the alpha, kept
    reader.close()
    assert files_for(key) == []


# -- time: each frame until the next one's presentation time ----------------------------------------
VFR_MS = [0]
for _gap in [40, 120] * 10:
    VFR_MS.append(VFR_MS[-1] + _gap)
VFR_DURATIONS = [(b - a) / 1000 for a, b in itertools.pairwise(VFR_MS)]


@pytest.mark.parametrize("speed", [1.0, 2.0])
def test_a_variable_frame_rate_is_honoured_frame_by_frame_and_speed_divides_it(
    av: Any, key: str, tmp_path: Path, started: list[Any], speed: float
) -> None:
    path = tmp_path / "vfr.mkv"
    make_video(path, "libx264", "yuv420p", pts_ms=VFR_MS)
    reader = follow(started, key)
    args = ["--speed", f"{speed:g}"] if speed != 1 else []
    play = start(started, "play", "--key", key, "--once", *args, str(path))
    play.line()
    status, rest, _ = wait_done(play, reader, len(VFR_MS))
    assert status == 0 and rest == [f"Played {len(VFR_MS)} frames.\n"], rest
    # Never early: a constant rate (the average, 80 ms) would put frame 3 up at 0.16 s, not 0.2.
    assert_on_schedule(reader.frames, [d / speed for d in VFR_DURATIONS])
    if speed != 1:  # and faster: the last frame went up before its time at normal speed
        last = reader.frames[-1]
        at = (last.write_time_ns - reader.frames[0].write_time_ns) / 1e9
        assert at < sum(VFR_DURATIONS[: last.generation - 1]) - 0.1, at


def test_start_seeks_to_the_first_frame_at_or_after_it(
    av: Any, key: str, tmp_path: Path, started: list[Any]
) -> None:
    path = tmp_path / "gop.mp4"
    make_video(path, "libx264", "yuv420p", count=30, gop=10)  # key frames at 0, 10, 20
    expected, _ = decoded(path)
    reader = follow(started, key)
    play = start(started, "play", "--key", key, "--once", "--start", "0.5", str(path))
    assert ", from 0.5 s, once)" in play.line()
    status, rest, _ = wait_done(play, reader, 15)
    assert (status, rest) == (0, ["Played 15 frames.\n"])  # frames 15..29: 0.5 s is frame 15's time
    for got in reader.frames:
        assert (pixels(got) == expected[14 + got.generation]).all(), got.generation


def test_a_loop_seeks_back_to_the_start_each_time(
    av: Any, key: str, tmp_path: Path, started: list[Any]
) -> None:
    path = tmp_path / "short.webm"
    make_video(path, "libvpx-vp9", "yuv420p", count=10)
    expected, _ = decoded(path)
    reader = follow(started, key)
    # From 0.2 s (frame 6): each pass is frames 6, 7, 8, 9.
    play = start(started, "play", "--key", key, "--start", "0.2", "--frames", "12", str(path))
    assert "looping" in play.line()
    status, rest, _ = wait_done(play, reader, 12)
    assert (status, rest) == (0, ["Played 12 frames.\n"])
    for got in reader.frames:
        assert (pixels(got) == expected[6 + (got.generation - 1) % 4]).all(), got.generation


# -- rotation: a phone's video is shown upright -------------------------------------------------------
@pytest.mark.parametrize("degrees", [90, -90, 180])
def test_a_video_with_a_display_rotation_is_published_upright(
    av: Any, key: str, tmp_path: Path, started: list[Any], degrees: int
) -> None:
    import numpy

    path = tmp_path / f"phone{degrees}.mp4"
    make_video(path, "libx264", "yuv420p", count=3, rotation=degrees)
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        assert frame.rotation % 360 == degrees % 360  # the display matrix reads back
        stored = frame.to_ndarray(format="rgba")
    reader = follow(started, key)
    play = start(started, "play", "--key", key, "--once", str(path))
    sideways = degrees in (90, -90)
    assert play.line().startswith(f"Playing {path} ({'48x64' if sideways else '64x48'}, h264 video")
    assert wait_done(play, reader, 3)[0] == 0
    got = reader.frames[0]
    assert got.generation == 1 and got.image.size == ((H, W) if sideways else (W, H))
    shown = pixels(got)
    assert (shown == numpy.rot90(stored, degrees // 90)).all()
    # The white block at the stored frame's top left ends up at the bottom left (90: turned
    # counter-clockwise), the top right (-90) or the bottom right (180).
    x, y = {90: (12, 60), -90: (35, 3), 180: (55, 30)}[degrees]
    assert shown[y, x, :3].min() > 200 and shown[3, 3, :3].max() < 240


# -- files that cannot be played: one sentence, nothing left in shared memory ------------------------
def damaged_run(result: subprocess.CompletedProcess[str]) -> str:
    """A play that published some frames and then failed: its one line on stderr."""
    assert result.returncode == 1 and "Traceback" not in result.stderr, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("name", ["cut.mp4", "cut.mkv"])
def test_a_truncated_video_plays_what_decodes_then_says_where_it_stopped(
    av: Any, key: str, tmp_path: Path, name: str
) -> None:
    whole = tmp_path / ("whole" + Path(name).suffix)
    make_video(whole, "libx264", "yuv420p", count=30)
    cut = tmp_path / name
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 6 // 10])
    result = tkshm("play", "--key", key, "--once", "--speed", "4", str(cut))
    line = damaged_run(result)
    assert line.startswith(f"tkshm play: {cut} is damaged after ") and line.endswith(
        "; played what decoded."
    ), line
    assert result.stdout.startswith(f"Playing {cut} (64x48, h264 video, 1.00 s, at 4x speed, once)")
    assert files_for(key) == []


def wav(path: Path) -> str:
    with wave.open(str(path), "wb") as sound:
        sound.setnchannels(1)
        sound.setsampwidth(2)
        sound.setframerate(8000)
        sound.writeframes(b"\0\0" * 800)
    return str(path)


def y4m(path: Path, width: int, height: int) -> str:
    """A raw-video file whose header says ``width`` x ``height``: a 16K video in 60 bytes."""
    path.write_bytes(f"YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\nFRAME\n".encode() + bytes(1000))
    return str(path)


BAD_VIDEOS = {
    "text-named-mp4": ("not a video that tkshm can read",),
    "text-no-extension": ("is not an image or a video that tkshm can read",),
    "sound-only": ("is neither an image nor a video (FFmpeg finds only audio in it)",),
    "sound-named-mkv": ("holds no video stream (only audio)",),
    "sixteen-k": ("is a 15360x8640 video, more than the 100,000,000 pixels",),
    "zero-by-zero": (),
    "folder": ("is a folder, not an image file",),
    "missing": ("does not exist",),
    "start-past-the-end": ("is 0.67 s long; --start 5 is past its last frame",),
}


@pytest.mark.parametrize("kind", list(BAD_VIDEOS))
def test_a_video_that_cannot_be_played_is_one_sentence_before_anything_is_published(
    av: Any, key: str, tmp_path: Path, kind: str
) -> None:
    args: list[str] = []
    if kind.startswith("text"):
        bad = tmp_path / ("notes.mp4" if kind == "text-named-mp4" else "notes")
        bad.write_text("this is a text file, not a film\n" * 20)
        path = str(bad)
    elif kind == "sound-only":
        path = wav(tmp_path / "sound.wav")
    elif kind == "sound-named-mkv":
        path = wav(tmp_path / "sound.mkv")
    elif kind == "sixteen-k":
        path = y4m(tmp_path / "huge.y4m", 15360, 8640)
    elif kind == "zero-by-zero":
        path = y4m(tmp_path / "empty.y4m", 0, 0)
    elif kind == "folder":
        (tmp_path / "film.mp4").mkdir()
        path = str(tmp_path / "film.mp4")
    elif kind == "missing":
        path = str(tmp_path / "nowhere.mp4")
    else:
        path = str(tmp_path / "short.mp4")
        make_video(Path(path), "libx264", "yuv420p", count=20)
        args = ["--start", "5"]
    result = tkshm("play", "--key", key, *args, path)
    assert result.returncode == 1 and result.stdout == "" and "Traceback" not in result.stderr, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"tkshm play: {path} "), result.stderr
    for fragment in BAD_VIDEOS[kind]:
        assert fragment in lines[0], lines[0]
    assert files_for(key) == []


@posix_only("file permissions")
def test_an_unreadable_video_is_one_sentence(key: str, tmp_path: Path) -> None:
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        pytest.skip("root reads every file")
    path = tmp_path / "secret.mp4"
    path.write_bytes(b"\0" * 100)
    path.chmod(0)
    result = tkshm("play", "--key", key, str(path))
    assert (
        result.returncode == 1 and result.stderr == f"tkshm play: {path} cannot be read: permission denied.\n"
    )
    assert files_for(key) == []


# Python started with PyAV made unimportable, as on a machine without the video extra.
NO_AV = "import sys; sys.modules['av'] = None; from tkshm.cli import main; sys.exit(main(sys.argv[1:]))"


def test_without_pyav_a_video_is_one_sentence_naming_the_extra(key: str, tmp_path: Path) -> None:
    clip, odd = tmp_path / "clip.mp4", tmp_path / "clip"
    clip.write_bytes(b"\0" * 100)
    odd.write_bytes(b"\0" * 100)
    for path, says in [
        (clip, f"tkshm play: {clip} is a video; playing video needs PyAV: pip install 'tkshm[video]'."),
        (
            odd,
            f"tkshm play: {odd} is not an image that tkshm can read; if it is a video, playing it "
            "needs PyAV: pip install 'tkshm[video]'.",
        ),
    ]:
        result = subprocess.run(
            [sys.executable, "-c", NO_AV, "play", "--key", key, str(path)],
            capture_output=True, text=True, timeout=DEADLINE,
        )  # fmt: skip
        assert (result.returncode, result.stdout, result.stderr) == (1, "", says + "\n")
    assert files_for(key) == []
    # An animation needs no PyAV.
    gif = tmp_path / "anim.gif"
    make_animation(gif, "GIF", [50] * 4)
    result = subprocess.run(
        [sys.executable, "-c", NO_AV, "play", "--key", key, "--once", str(gif)],
        capture_output=True, text=True, timeout=DEADLINE,
    )  # fmt: skip
    assert (result.returncode, result.stderr) == (0, ""), result


# -- the decoding thread -------------------------------------------------------------------------------
def decoder_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "tkshm-video-decoder"]


def test_the_decoding_thread_runs_ahead_a_few_frames_and_stops_when_play_stops(
    av: Any, tmp_path: Path
) -> None:
    from tkshm import video

    path = tmp_path / "long.mkv"
    make_video(path, "libx264", "yuv420p", count=120)
    with video.open_video(str(path)) as opened:
        assert decoder_threads() == []  # the first frame is decoded before any thread runs
        frames = opened.frames(None, loop=True)
        first = next(frames)
        assert first.duration_s == pytest.approx(1 / 30, abs=1e-3)
        assert first.render().size == (W, H)
        assert len(decoder_threads()) == 1
        decoder = opened._decoder
        assert decoder is not None
        # It fills its queue, then waits: bounded, however far the player is behind.
        wait_until(lambda: decoder._queue.full(), "a full queue")
        assert decoder._queue.qsize() == video.AHEAD_FRAMES
        frames.close()  # what play's end does (Ctrl+C, --frames, --duration)
        assert decoder_threads() == []


@pytest.mark.parametrize("limit", [["--frames", "3"], ["--duration", "0.5"]])
def test_play_of_a_long_video_stops_promptly_at_its_limit(
    av: Any, key: str, tmp_path: Path, limit: list[str]
) -> None:
    path = tmp_path / "long.webm"
    make_video(path, "libvpx-vp9", "yuv420p", count=300)  # 10 s
    began = time.monotonic()
    result = tkshm("play", "--key", key, *limit, str(path))
    assert (result.returncode, result.stderr) == (0, ""), result
    assert time.monotonic() - began < 8  # not the 10 s of the file
    assert files_for(key) == []


@posix_only("signals")
def test_ctrl_c_stops_a_video_at_once(av: Any, key: str, tmp_path: Path, started: list[Any]) -> None:
    path = tmp_path / "long.mkv"
    make_video(path, "libx264", "yuv420p", count=300)
    play = start(started, "play", "--key", key, str(path))
    play.line()
    status, rest, stderr = play.stop(signal.SIGINT)
    assert (status, stderr) == (0, "") and rest[0].startswith("Stopped after publishing "), (rest, stderr)
    assert files_for(key) == []


# -- animations: --start, --speed and EXIF orientation on the Pillow path --------------------------------
def test_an_animation_starts_at_the_first_frame_at_or_after_start_at_its_speed(
    key: str, tmp_path: Path, started: list[Any]
) -> None:
    path = tmp_path / "anim.gif"
    make_animation(path, "GIF", [200, 300, 400, 500])  # frames begin at 0, 0.2, 0.5, 0.9 s
    reader = follow(started, key)
    play = start(started, "play", "--key", key, "--once", "--start", "0.5", "--speed", "2", str(path))
    assert "(40x30, 4 frames, from 0.5 s, at 2x speed, once)" in play.line()
    status, rest, _ = wait_done(play, reader, 2)
    assert (status, rest) == (0, ["Played 2 frames.\n"])
    assert [got.image.getpixel((39, 29))[:3] for got in reader.frames] == COLOURS[2:]  # type: ignore[index]
    assert_on_schedule(reader.frames, [0.2, 0.25])


def test_an_animation_with_an_exif_orientation_is_played_upright(
    key: str, tmp_path: Path, started: list[Any]
) -> None:
    frames = [Image.new("RGB", (40, 30), colour) for colour in COLOURS[:2]]
    for frame in frames:
        frame.paste((255, 255, 255), (0, 0, 10, 5))  # a mark at the top left
    exif = Image.Exif()
    exif[0x0112] = 6  # "turn 90 degrees clockwise to show"
    path = tmp_path / "turned.webp"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, lossless=True, exif=exif)
    reader = follow(started, key)
    play = start(started, "play", "--key", key, "--once", str(path))
    assert "(30x40, 2 frames, once)" in play.line()
    wait_done(play, reader, 2)
    got = reader.frames[0].image
    assert got.size == (30, 40)
    assert got.getpixel((27, 2))[:3] == (255, 255, 255)  # the mark, now at the top right
    assert got.getpixel((2, 2))[:3] == COLOURS[0]
