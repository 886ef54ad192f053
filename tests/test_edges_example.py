"""The OpenCV stage of the README, end to end: ``tkshm play clip.mp4 --key camera``, then
``examples/edges.py`` reading ``camera`` with ``array()`` and publishing the edges to
``edges`` with ``write_array``, each a real process.

Every frame read from the edges key must be exactly ``cv2.Canny`` of one frame of the video as
FFmpeg converts it to RGBA: a frame torn, shifted, read as BGR or converted another way would
give other edges.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

av = pytest.importorskip("av")
cv2 = pytest.importorskip("cv2")
np = pytest.importorskip("numpy")

from commands import Running  # noqa: E402
from peer import wait_until  # noqa: E402
from test_cli import command  # noqa: E402

from tkshm import ipc  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EDGES = ROOT / "examples" / "edges.py"
SIZE = (160, 120)


def make_clip(path: Path, frames: int = 30) -> None:
    """A white square crossing a dark gradient, H.264 at 30 frames a second."""
    width, height = SIZE
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for n in range(frames):
            rgb = np.zeros((height, width, 3), np.uint8)
            rgb[..., 2] = np.linspace(0, 120, width, dtype=np.uint8)
            rgb[30:70, 4 * n : 4 * n + 40] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def edges_of(rgba) -> bytes:  # type: ignore[no-untyped-def]
    """The edges as the stage publishes them, as RGBA bytes (gray in R, G and B; alpha opaque)."""
    gray = cv2.Canny(cv2.cvtColor(rgba, cv2.COLOR_RGBA2GRAY), 100, 200)
    return np.dstack([gray, gray, gray, np.full_like(gray, 255)]).tobytes()


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_video_through_an_opencv_stage_gives_the_edges_of_its_frames(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    make_clip(clip)
    with av.open(str(clip)) as container:
        expected = {digest(edges_of(frame.to_ndarray(format="rgba"))) for frame in container.decode(video=0)}
    camera, edges = f"camera-{os.getpid()}", f"edges-{os.getpid()}"
    player = Running(command("play", "--key", camera, "--loop", str(clip)))
    stage = None
    try:
        wait_until(lambda: any(s.key == camera for s in ipc.list_segments()), "the video to play")
        stage = Running([sys.executable, str(EDGES), "--source", camera, "--target", edges], cwd=ROOT)
        with _attached(edges) as segment:
            seen = set()
            while len(seen) < 5:  # five different frames' edges, each exactly as expected
                generation = segment.wait_for_change(segment.peek_generation(), timeout=5.0)
                array = segment.read_array()
                assert array.shape == (SIZE[1], SIZE[0], 4)
                assert digest(array.tobytes()) in expected, f"generation {generation}: not a frame's edges"
                seen.add(digest(array.tobytes()))
    finally:
        if stage is not None:
            _, _, stderr = stage.stop(signal.SIGINT)  # Ctrl+C (a kill on Windows: commands.py)
            assert "Traceback" not in stderr, stderr
        player.stop()
    assert ipc.remains(camera) == [] and ipc.remains(edges) == []


def _attached(key: str) -> ipc.Segment:
    return wait_until(lambda: _try_attach(key), f"the stage to publish under {key!r}")


def _try_attach(key: str) -> ipc.Segment | None:
    try:
        return ipc.Segment.attach(key)
    except ipc.SegmentNotFoundError:
        return None


def test_the_stage_says_in_one_line_when_nothing_plays_under_its_source() -> None:
    done = subprocess.run(
        [sys.executable, str(EDGES), "--source", f"nothing-{os.getpid()}", "--frames", "1"],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
    )  # fmt: skip
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("edges.py: Nothing is published under key") and done.stderr.count("\n") == 1
