"""``tkshm record``: a stream written to a video file, each frame at its publish time.

A peer process publishes flat-coloured frames at a rhythm the test chooses (some close
together, some far apart) and reports each frame's write time; the recording, decoded with
PyAV, must hold those frames in order, each at its write time after the first (to the
millisecond the file stores), and the file must exist only once it is whole.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from commands import Running
from peer import Peer, wait_until
from platforms import posix_only
from test_cli import assert_one_line_error, command, tkshm

from tkshm import ipc

av = pytest.importorskip("av")
np = pytest.importorskip("numpy")

W, H = 64, 48
COLOURS = [[(index * 37) % 200 + 30, (index * 71) % 200 + 30, (index * 13) % 200 + 30] for index in range(12)]
GAPS_MS = [40, 160, 40, 160, 40, 160, 40, 160, 40, 160, 40]  # a variable frame rate


def recorded(path: Path) -> list[tuple[int, int]]:
    """Each frame of the file: the index of the colour it shows, and its time in ms."""
    found = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            mean = frame.to_ndarray(format="rgb24").reshape(-1, 3).mean(0)
            distances = [float(np.abs(mean - colour).sum()) for colour in COLOURS]
            index = int(np.argmin(distances))
            assert distances[index] < 12, f"frame at {frame.time} s is none of the colours: {mean}"
            found.append((index, round(frame.time * 1000)))
    return found


def start_recording(key: str, out: Path, *options: str) -> Running:
    recorder = Running(command("record", "--key", key, *options, str(out)))
    wait_until(lambda: recorder.stderr_so_far().startswith("tkshm record: Nothing is published"), "the wait")
    return recorder


def test_a_recording_holds_the_streams_frames_each_at_its_publish_time(key: str, tmp_path: Path) -> None:
    out = tmp_path / "stream.mp4"
    recorder = start_recording(key, out)
    with Peer() as publisher:
        times = publisher.call("colour_frames", key=key, width=W, height=H, colours=COLOURS, gaps_ms=GAPS_MS)
        times = times["write_times"]
    status, lines, stderr = recorder.finish()  # the publisher has gone: the recording ends
    assert status == 0, stderr
    found = recorded(out)
    indices = [index for index, _ in found]
    span_s = (times[indices[-1]] - times[indices[0]]) / 1e9  # as the recorder measures it: in ns
    assert lines == [f"Recorded {len(found)} frames ({span_s:.2f} s) to {out}.\n"]
    assert indices == sorted(set(indices)) and len(indices) >= 4, indices  # (a slow start misses some)
    first_index = indices[0]
    for index, at_ms in found:  # to the millisecond: the segment's times, not the recorder's
        assert abs(at_ms - (times[index] - times[first_index]) / 1e6) <= 1.5, (index, at_ms)
    assert not (tmp_path / "stream.mp4.partial").exists()


def test_frames_stops_the_recording_after_that_many_and_the_file_is_whole(key: str, tmp_path: Path) -> None:
    out = tmp_path / "three.mkv"
    recorder = start_recording(key, out, "--frames", "3")
    with Peer() as publisher:
        # Four times as many frames as it records: a recorder slow to start its encoder (under
        # Wine, on a busy machine) misses some, and must still find three before they run out.
        publisher.call("colour_frames", key=key, width=W, height=H, colours=COLOURS, gaps_ms=[100] * 11)
        status, lines, stderr = recorder.finish()
    assert status == 0 and "Traceback" not in stderr, stderr
    assert len(recorded(out)) == 3 and lines[0].startswith("Recorded 3 frames")


def test_a_stream_that_changes_size_ends_the_recording_at_the_frame_before(key: str, tmp_path: Path) -> None:
    out = tmp_path / "sized.mp4"
    recorder = start_recording(key, out)
    with Peer() as publisher:
        publisher.call("colour_frames", key=key, width=W, height=H, colours=COLOURS[:3], gaps_ms=[200, 200])
        publisher.call("colour_frames", key=key, width=2 * W, height=H, colours=COLOURS[3:4], gaps_ms=[])
        status, _, stderr = recorder.finish()
    assert status == 1
    assert stderr.splitlines()[-1] == (
        f"tkshm record: The stream changed size from {W}x{H} to {2 * W}x{H}; "
        "the recording ends at the frame before."
    )
    # Whole, and only frames of the old size (a recorder still busy with its first frame may
    # have missed the second; none of the new size is in it).
    indices = [index for index, _ in recorded(out)]
    assert indices and indices == sorted(set(indices)) and set(indices) <= {0, 1, 2}, indices
    with av.open(str(out)) as container:
        assert (container.streams.video[0].width, container.streams.video[0].height) == (W, H)


def test_a_recorder_killed_half_way_leaves_no_file_under_the_name(key: str, tmp_path: Path) -> None:
    out = tmp_path / "killed.mp4"
    partial = tmp_path / "killed.mp4.partial"
    recorder = start_recording(key, out)
    try:  # (the test holds the segment too, so that it goes with the test's handle)
        with ipc.Segment.create(key), Peer() as publisher:
            publisher.call("array_loop", key=key, width=W, height=H, seed=1)  # frames, as fast as it can
            # (The encoder holds its first frames back to look ahead: the file starts after them.)
            wait_until(lambda: partial.exists() and partial.stat().st_size > 0, "the recording to begin")
            recorder.kill()
            publisher.kill()
    finally:
        recorder.close()
    assert not out.exists()  # an MP4 without its index would look like a video and not play


@posix_only("Ctrl+C: a command started with pipes on Windows has no console to receive it")
def test_ctrl_c_while_waiting_writes_no_file(key: str, tmp_path: Path) -> None:
    out = tmp_path / "nothing.mp4"
    recorder = start_recording(key, out)
    status, lines, _ = recorder.stop(signal.SIGINT)
    assert (status, lines) == (0, ["Recorded no frames; no file was written.\n"])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "sentence"),
    [
        ("clip.gif", "name a video file ending in one of .avi, .m4v, .mkv, .mov, .mp4, .webm"),
        ("missing/clip.mp4", "the folder"),
        ("folder.mp4", "it is a folder"),
    ],
)
def test_an_output_that_cannot_be_written_is_one_sentence_before_any_wait(
    key: str, tmp_path: Path, name: str, sentence: str
) -> None:
    (tmp_path / "folder.mp4").mkdir()
    result = tkshm("record", "--key", key, str(tmp_path / name))
    line = assert_one_line_error(result, "tkshm record: Cannot record to", sentence)
    assert "does not exist" in line or name != "missing/clip.mp4"


def test_without_pyav_record_is_one_sentence_naming_the_extra(key: str, tmp_path: Path) -> None:
    script = (
        "import sys; sys.modules['av'] = None\n"
        "from tkshm.cli import main\n"
        f"sys.exit(main(['record', '--key', {key!r}, {str(tmp_path / 'out.mp4')!r}]))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert_one_line_error(result, "tkshm record: Recording video needs PyAV: pip install 'tkshm[video]'.")


@posix_only("symbolic links a user can plant: Windows needs a privilege to make one")
def test_links_planted_under_out_and_out_partial_are_replaced_not_followed(key: str, tmp_path: Path) -> None:
    out = tmp_path / "planted.mp4"
    victims = [tmp_path / "victim-of-out", tmp_path / "victim-of-partial"]
    for victim in victims:
        victim.write_text("precious\n")
    out.symlink_to(victims[0])
    (tmp_path / "planted.mp4.partial").symlink_to(victims[1])
    recorder = start_recording(key, out, "--frames", "2")
    with Peer() as publisher:
        publisher.call("colour_frames", key=key, width=W, height=H, colours=COLOURS[:3], gaps_ms=[100, 100])
        status, _, stderr = recorder.finish()
    assert status == 0, stderr
    assert [victim.read_text() for victim in victims] == ["precious\n", "precious\n"]
    assert not out.is_symlink() and len(recorded(out)) == 2
    assert not (tmp_path / "planted.mp4.partial").exists()


@pytest.mark.parametrize(
    ("name", "codec"),
    [
        ("a.mp4", "h264"),
        ("a.m4v", "h264"),
        ("a.mov", "h264"),
        ("a.mkv", "h264"),
        ("a.webm", "vp9"),
        ("a.avi", "mjpeg"),
    ],
)
def test_each_kind_of_file_is_written_with_its_codec(key: str, tmp_path: Path, name: str, codec: str) -> None:
    out = tmp_path / name
    recorder = start_recording(key, out, "--frames", "2")
    with Peer() as publisher:
        publisher.call("colour_frames", key=key, width=W, height=H, colours=COLOURS, gaps_ms=[60] * 11)
        status, _, stderr = recorder.finish()
    assert status == 0, stderr
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.name == codec
    assert len(recorded(out)) == 2
