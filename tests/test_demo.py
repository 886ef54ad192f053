"""``tkshm demo`` end to end, as a teacher runs it: two traced windows side by side on the
Xvfb display, the sample loaded through the real file dialog in the left one and displayed
from shared memory in the right one, then Ctrl+C (or SIGTERM) to end the lesson.

The demo and its two windows share one stdout (the instructions and, with
``TKSHM_TEST_EVENTS=1``, the windows' event lines) and one stderr (the windows' trace). A
reader thread per stream feeds a queue, so every wait has a deadline. The demo runs in a
process group of its own, so a test can send Ctrl+C to all three as a terminal would.

The end-to-end tests are POSIX-only: they click with xdotool on the Xvfb display, send Ctrl+C
to a process group and read signal handlers from /proc. The window placement runs everywhere.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from peer import wait_until
from PIL import Image, ImageGrab
from platforms import posix_only
from watch import DEADLINE, Lines, accept_dialog, click, xdotool

from tkshm import __version__, ipc
from tkshm.cli import build_parser
from tkshm.demo import QT_EXAMPLE_GLOB, introduction, play_command, side_by_side, tkshm_command
from tkshm.window.dialog import MIN_WINDOW  # the window's root.minsize: Tk grows a smaller one

GEOMETRY = re.compile(r"(\d+)x(\d+)\+(\d+)\+(\d+)")
TRACE = re.compile(r"\d\d:\d\d:\d\d\.\d{3} tkshm\[(\d+)\] (.+)")
INTRO = re.compile(
    r"Two windows on key '(demo-[0-9a-f]{6})'(?:, and a stream)?: process (\d+) on the left(?: publishes)?, "
    r"process (\d+) on the right(?: displays)?\."
)
T = TypeVar("T")

Rect = tuple[int, int, int, int]  # x, y, width, height


def rect_of(geometry: str) -> Rect:
    match = GEOMETRY.fullmatch(geometry)
    assert match is not None, geometry
    width, height, x, y = (int(v) for v in match.groups())
    return x, y, width, height


def assert_side_by_side(left: Rect, right: Rect, screen: tuple[int, int]) -> None:
    """Both on screen, the left one wholly left of the right one, at the same height."""
    for x, y, width, height in (left, right):
        assert x >= 0 and y >= 0 and x + width <= screen[0] and y + height <= screen[1], (left, right, screen)
        assert width >= MIN_WINDOW[0] and height >= MIN_WINDOW[1], (left, right)
    assert left[0] + left[2] <= right[0], f"overlap: {left} and {right}"
    assert (left[1], left[3]) == (right[1], right[3]), (left, right)


@pytest.mark.parametrize(
    "screen", [(1280, 800), (1920, 1080), (800, 600), (640, 480)], ids=lambda s: f"{s[0]}x{s[1]}"
)
def test_side_by_side_windows_fit_the_screen_without_overlapping(screen: tuple[int, int]) -> None:
    left, right = (rect_of(geometry) for geometry in side_by_side(screen))
    assert_side_by_side(left, right, screen)
    assert left[2] == right[2]  # the same size


def test_on_a_screen_too_narrow_for_two_windows_both_stay_on_screen_at_their_minimum_size() -> None:
    screen = (500, 400)
    for x, y, width, height in (rect_of(geometry) for geometry in side_by_side(screen)):
        assert (width, height) == MIN_WINDOW
        assert x >= 0 and y >= 0 and x + width <= screen[0] and y + height <= screen[1]


def test_demo_takes_a_fresh_key_unless_given_one_and_is_always_traced() -> None:
    parser = build_parser()
    assert parser.parse_args(["demo"]).key is None  # run_demo then makes demo-xxxxxx
    assert parser.parse_args(["demo", "--key", "lesson"]).key == "lesson"
    assert parser.parse_args(["--key", "lesson", "demo"]).key == "lesson"
    parser.parse_args(["demo", "--trace"])  # accepted, like everywhere else: the demo always traces
    assert parser.parse_args(["demo", "--zoom", "1.5"]).zoom == 1.5  # passed on to both windows
    window = parser.parse_args(["gui", "--zoom", "2", "--role", "display"])
    assert (window.zoom, window.role) == (2.0, "display")


# ---------------------------------------------------------------------------- end to end
needs_xdotool = pytest.mark.skipif(shutil.which("xdotool") is None, reason="xdotool is not installed")
SIGNALS = posix_only("Ctrl+C to a process group, and signal handlers read from /proc")


def catches(pid: int, signum: int) -> bool:
    """Whether the process has a handler installed for ``signum`` (Linux: /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def windows_named(pattern: str) -> list[str]:
    """Ids of the visible windows whose title matches ``pattern`` (none is not an error)."""
    found = subprocess.run(
        ["xdotool", "search", "--onlyvisible", "--name", pattern],
        capture_output=True, text=True, timeout=DEADLINE,
    )  # fmt: skip
    return found.stdout.split()


def window_rect(window: str) -> Rect:
    shell = dict(line.split("=", 1) for line in xdotool("getwindowgeometry", "--shell", window).split())
    return int(shell["X"]), int(shell["Y"]), int(shell["WIDTH"]), int(shell["HEIGHT"])


def screen_size() -> tuple[int, int]:
    width, height = xdotool("getdisplaygeometry").split()
    return int(width), int(height)


def cleaned() -> bool:
    """Remove orphans; True once nothing is left (a killed holder's lock goes as it dies)."""
    ipc.clean()
    return not ipc.list_segments()


def no_traced_windows() -> bool:
    return not windows_named(r"tkshm\[")


class Demo:
    """``python -m tkshm demo`` in a session (and process group) of its own."""

    def __init__(self, argv: list[str] | None = None) -> None:
        self.proc = subprocess.Popen(
            argv or [sys.executable, "-m", "tkshm", "demo", "--lang", "en"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "TKSHM_TEST_EVENTS": "1"}, start_new_session=True,
        )  # fmt: skip
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.out, self.err = Lines(self.proc.stdout), Lines(self.proc.stderr)
        intro = self.out.wait_for(INTRO.pattern)
        self.key = intro.group(1)
        self.left_pid, self.right_pid = int(intro.group(2)), int(intro.group(3))
        self.out.wait(lambda seen: seen.count("READY") >= 2, "both windows READY")
        # Ctrl+C must find the demo's own handler in place, not Python's KeyboardInterrupt. It
        # installs SIGINT's and then SIGTERM's: once SIGTERM is caught, both are.
        wait_until(lambda: catches(self.proc.pid, signal.SIGTERM), "the demo's signal handlers")

    def window(self, pid: int) -> str:
        found = wait_until(lambda: windows_named(rf"tkshm\[{pid}\]"), f"the window titled tkshm[{pid}]")
        assert len(found) == 1, found
        return found[0]

    def point(self, name: str, inside: Rect) -> tuple[int, int]:
        """Where the window inside ``inside`` last said its button ``name`` is."""
        for line in reversed(self.out.seen):
            if line.startswith(f"GEOM {name} "):
                x, y = (int(v) for v in line.split()[2:4])
                if inside[0] <= x < inside[0] + inside[2] and inside[1] <= y < inside[1] + inside[3]:
                    return x, y
        raise AssertionError(f"no GEOM {name} inside {inside}: {self.out.seen}")

    def trace(self, pid: int) -> list[str]:
        return [
            m.group(2) for line in self.err.seen if (m := TRACE.fullmatch(line)) and int(m.group(1)) == pid
        ]

    def finish(self) -> int:
        """Wait for the demo to exit; then both streams end (the windows have closed them too)."""
        try:
            status = self.proc.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the demo did not exit within {DEADLINE} s") from None
        self.out.until_end()
        self.err.until_end()
        return status

    def stop(self) -> None:
        """Teardown: whatever is left of the demo's process group is killed, its orphans cleaned."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # all three have ended, as they should
        else:  # only after a failure, which the test has reported already
            wait_until(cleaned, "the killed windows' segments to be removed")
        self.proc.wait(timeout=DEADLINE)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def demos(isolated_dir: str) -> Iterator[list[Demo]]:
    """Demos a test starts, in a private segment directory that must be empty at the end."""
    started: list[Demo] = []
    yield started
    for demo in started:
        demo.stop()


def start_demo(demos: list[Demo], argv: list[str] | None = None) -> tuple[Demo, Rect, Rect]:
    """Start the demo; return it and its left and right windows' places, checked side by side."""
    demo = Demo(argv)
    demos.append(demo)
    left, right = window_rect(demo.window(demo.left_pid)), window_rect(demo.window(demo.right_pid))
    screen = screen_size()
    assert_side_by_side(left, right, screen)
    assert (left, right) == tuple(rect_of(geometry) for geometry in side_by_side(screen))
    for rect in (left, right):  # each window has said where its buttons are
        demo.point("load_button", rect)
        demo.point("display_button", rect)
    return demo, left, right


def load_the_sample(demo: Demo, left: Rect) -> None:
    """Left window: Load, then Return in the dialog, which has the sample selected already."""
    mark = len(demo.out.seen)
    click(demo.point("load_button", left))
    demo.out.wait_for("LABEL Select an image file", mark)
    dialog = wait_until(lambda: windows_named("^Open Image$"), "the Open Image dialog")[0]
    accept_dialog(dialog)
    demo.out.wait_for(
        rf"LABEL Showing sunset\.jpg, published to shared memory under key {re.escape(demo.key)}\.", mark
    )
    demo.out.wait_for(r"SHOWN source=file gen=1 quality=fine ms=[\d.]+", mark)


@needs_xdotool
@SIGNALS  # nearest, so that its reason is the one reported on Windows
def test_demo_windows_side_by_side_share_the_sample_and_ctrl_c_closes_both_and_removes_the_segment(
    demos: list[Demo], isolated_dir: str
) -> None:
    demo, left, right = start_demo(demos)
    first = demo.out.seen.index(demo.out.wait_for(INTRO.pattern).group(0))
    assert demo.out.seen[first : first + 5] == [  # one print: the lines arrive together
        f"Two windows on key {demo.key!r}: process {demo.left_pid} on the left publishes, "
        f"process {demo.right_pid} on the right displays.",
        "Left: press Load Image From File... and open the sample image.",
        "Right: press Display Image From Shared Memory.",
        "Each step of the protocol is printed below and in each window's trace pane.",
        "Close both windows, or press Ctrl+C here, to end the demo.",
    ]
    for pid, role in ((demo.left_pid, "publishes"), (demo.right_pid, "displays")):
        # each window says its role, and is named as its trace lines name it
        title = f"SharedMemory Example \u00b7 {role} \u00b7 tkshm[{pid}]"
        assert title in xdotool("getwindowname", demo.window(pid))

    load_the_sample(demo, left)
    mark = len(demo.out.seen)
    click(demo.point("display_button", right))
    demo.out.wait_for(r"SHOWN source=shm gen=1 quality=fine ms=[\d.]+", mark)
    stays = "detach: unmapped; the segment stays while other processes are attached"
    demo.err.wait(lambda seen: stays in demo.trace(demo.right_pid), "the right window's detach")
    seg = re.escape(os.path.join(isolated_dir, ipc.native_name(demo.key) + ".seg"))
    assert any(re.fullmatch(rf"create: new segment {seg}, .+", m) for m in demo.trace(demo.left_pid))
    assert any(re.fullmatch(rf"attach: existing segment {seg}, .+", m) for m in demo.trace(demo.right_pid))
    assert not any(m.startswith("create:") for m in demo.trace(demo.right_pid))

    os.killpg(demo.proc.pid, signal.SIGINT)  # Ctrl+C in the demo's terminal reaches all three
    assert demo.finish() == 0
    assert demo.trace(demo.left_pid)[-1] == (
        "detach: unmapped; we were the last process attached, so the segment was removed"
    )
    assert [line for line in demo.err.seen if not TRACE.fullmatch(line)] == []  # no traceback, no error
    assert not any(TRACE.fullmatch(line) for line in demo.out.seen)  # the trace goes to stderr only
    assert os.listdir(isolated_dir) == []
    wait_until(no_traced_windows, "both windows to go")


@needs_xdotool
@SIGNALS
def test_sigterm_to_the_demo_alone_closes_both_windows_and_removes_the_segment(
    demos: list[Demo], isolated_dir: str
) -> None:
    demo, left, _ = start_demo(demos)
    load_the_sample(demo, left)
    assert os.listdir(isolated_dir) != []
    os.kill(demo.proc.pid, signal.SIGTERM)  # the demo alone: it passes the signal on to its windows
    assert demo.finish() == 0
    assert demo.trace(demo.left_pid)[-1] == (
        "detach: unmapped; we were the last process attached, so the segment was removed"
    )
    assert [line for line in demo.err.seen if not TRACE.fullmatch(line)] == []
    assert os.listdir(isolated_dir) == []
    wait_until(no_traced_windows, "both windows to go")


@SIGNALS
def test_a_second_ctrl_c_while_the_window_closes_still_ends_it_cleanly(isolated_dir: str) -> None:
    """In the demo each window gets Ctrl+C twice: from the terminal and from the demo."""
    key = "two-ctrl-c"  # nothing is published under it: closing is quick, so the race is tight
    for gap in (0.005, 0.01, 0.015, 0.02, 0.03):  # the second signal lands at another moment of the close
        window = subprocess.Popen(
            [sys.executable, "-m", "tkshm", "--key", key, "--trace", "gui"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "TKSHM_TEST_EVENTS": "1"},
        )  # fmt: skip
        assert window.stdout is not None and window.stderr is not None
        out = Lines(window.stdout)
        out.wait_for("READY")
        wait_until(lambda pid=window.pid: catches(pid, signal.SIGTERM), "the window's signal handlers")
        window.send_signal(signal.SIGINT)
        time.sleep(gap)  # the spacing between the two signals is the point, not synchronisation
        window.send_signal(signal.SIGINT)
        assert window.wait(DEADLINE) == 0, window.stderr.read()
        assert window.stderr.read() == ""
        window.stdout.close()
        window.stderr.close()
    assert os.listdir(isolated_dir) == []


# ------------------------------------------------------------- with a stream playing
PLAYER = re.compile(
    r"Process (\d+) plays a moving test pattern under the same key; the right window follows it "
    r"\(Follow changes is on\)\."
)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie has ended, only its parent has not reaped it
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_demo_takes_a_play_source_for_the_right_window_to_follow() -> None:
    parser = build_parser()
    assert parser.parse_args(["demo", "--play", "clip.gif"]).play == "clip.gif"
    assert parser.parse_args(["demo", "--pattern"]).pattern is True
    started = play_command("lesson", None)
    assert started[: len(tkshm_command())] == tkshm_command()  # not -m: the folder cannot shadow it
    assert started[len(tkshm_command()) :] == [
        "play",
        "--key",
        "lesson",
        "--pattern",
        "--size",
        "640x360",
        "--fps",
        "30",
    ]
    assert play_command("lesson", "clip.gif")[-4:] == ["play", "--key", "lesson", "clip.gif"]


@needs_xdotool
@SIGNALS
def test_demo_with_a_play_source_has_the_right_window_follow_the_stream_and_stops_the_player(
    demos: list[Demo], isolated_dir: str
) -> None:
    demo, _, _ = start_demo(demos, [sys.executable, "-m", "tkshm", "demo", "--lang", "en", "--pattern"])
    player = int(demo.out.wait_for(PLAYER.pattern).group(1))
    try:
        follows_and_ends(demo, player, isolated_dir)
    finally:
        if alive(player):  # only after a failure: the demo did not stop it
            os.kill(player, signal.SIGKILL)


@needs_xdotool
@SIGNALS
def test_demo_with_a_video_has_the_right_window_follow_it_and_stops_the_player(
    demos: list[Demo], isolated_dir: str, tmp_path: Path
) -> None:
    pytest.importorskip("av")
    from test_video import make_video

    clip = tmp_path / "clip.mp4"
    make_video(clip, "libx264", "yuv420p", count=90)  # 3 s, played in a loop
    demo, _, _ = start_demo(
        demos, [sys.executable, "-m", "tkshm", "demo", "--lang", "en", "--play", str(clip)]
    )
    said = (
        rf"Process (\d+) plays {re.escape(repr(str(clip)))} under the same key; the right window follows .*"
    )
    player = int(demo.out.wait_for(said).group(1))
    try:
        follows_and_ends(demo, player, isolated_dir)
    finally:
        if alive(player):  # only after a failure: the demo did not stop it
            os.kill(player, signal.SIGKILL)


def follows_and_ends(demo: Demo, player: int, isolated_dir: str) -> None:
    following = rf"LABEL Following key {re.escape(demo.key)}: showing generation \d+ from shared memory\."
    demo.out.wait_for(following)
    frame = re.compile(r"FRAME gen=(\d+) fps=([\d.]+) skipped_per_s=([\d.]+) latency_p50_ms=([\d.]+)")
    first = int(demo.out.wait_for(frame.pattern).group(1))
    mark = len(demo.out.seen)
    later = int(demo.out.wait_for(frame.pattern, mark).group(1))
    assert later > first  # the right window keeps up with the stream
    summary = r"follow: \d+ frames shown in the last .+"
    demo.err.wait(
        lambda seen: any(re.fullmatch(summary, m) for m in demo.trace(demo.right_pid)), "a summary line"
    )
    assert not any(m.startswith("follow:") for m in demo.trace(demo.left_pid))  # the left one does not follow

    os.killpg(demo.proc.pid, signal.SIGINT)  # Ctrl+C: the windows and the player end
    status = demo.finish()
    assert status == 0, [line for line in demo.err.seen if not TRACE.fullmatch(line)]
    assert not alive(player)
    assert [line for line in demo.err.seen if not TRACE.fullmatch(line)] == []
    assert os.listdir(isolated_dir) == [], "\n".join([*demo.out.seen[-5:], *demo.err.seen[-15:]])
    wait_until(no_traced_windows, "both windows to go")


# ------------------------------------------------------------- started from anywhere
def shadowing_folder(tmp_path: Path) -> Path:
    """A folder holding a ``tkshm/`` that is not tkshm (a clone's parent looks like this)."""
    fake = tmp_path / "tkshm"
    fake.mkdir()
    for name in ("__init__.py", "__main__.py"):
        (fake / name).write_text("raise SystemExit('this is not tkshm')\n")
    return tmp_path


def test_the_demos_windows_run_the_real_tkshm_even_from_a_folder_with_a_tkshm_folder(tmp_path: Path) -> None:
    folder = shadowing_folder(tmp_path)
    shadowed = subprocess.run(
        [sys.executable, "-m", "tkshm", "--version"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert shadowed.stderr.strip() == "this is not tkshm"  # what -m does: the folder comes first
    real = subprocess.run(
        [*tkshm_command(), "--version"], cwd=folder, capture_output=True, text=True, timeout=DEADLINE
    )
    assert (real.returncode, real.stdout, real.stderr) == (0, f"tkshm {__version__}\n", "")


def test_the_introduction_is_in_the_demos_language_and_names_its_buttons() -> None:
    english = introduction("demo-abc123", (11, 12), "en")
    assert english.splitlines()[1:3] == [
        "Left: press Load Image From File... and open the sample image.",
        "Right: press Display Image From Shared Memory.",
    ]
    chinese = introduction("demo-abc123", (11, 12), "zh_CN")
    lines = chinese.splitlines()
    assert len(lines) == 5 and "demo-abc123" in lines[0] and "11" in lines[0] and "12" in lines[0]
    assert "从文件加载图片..." in lines[1] and "从共享内存显示图片" in lines[2]
    assert not re.search(r"[A-Za-z]{4,}", chinese.replace("demo-abc123", "").replace("Ctrl", ""))


@pytest.mark.parametrize("lang", ["en", "zh_CN"])
def test_with_a_stream_the_introduction_says_what_the_demo_shows_and_asks_for_no_load(lang: str) -> None:
    """The player overwrites a loaded image within a frame: pressing Load would show nothing."""
    intro = introduction("demo-abc123", (11, 12), lang, player=(13, "'orbit.gif'"))
    lines = intro.splitlines()
    assert len(lines) == 5 and all(pid in lines[0] for pid in ("11", "12")) and "13" in lines[1]
    assert "Load Image From File" not in intro and "从文件加载图片" not in intro
    if lang == "en":
        assert lines[:3] == [
            "Two windows on key 'demo-abc123', and a stream: process 11 on the left, "
            "process 12 on the right.",
            "Process 13 plays 'orbit.gif' under the same key; the right window follows it "
            "(Follow changes is on).",
            "Left: press Display Image From Shared Memory to copy out the frame of the moment; an image "
            "loaded there would be overwritten by the next frame.",
        ]
    else:
        assert "从共享内存显示图片" in lines[2]
        assert not re.search(
            r"[A-Za-z]{4,}", intro.replace("demo-abc123", "").replace("orbit.gif", "").replace("Ctrl", "")
        )


# ------------------------------------------------------------- on a projector's screen
PROJECTOR = (1024, 768)
CONTROL = re.compile(r"CONTROL (\d+) (\w+) (-?\d+) (-?\d+) (\d+) (\d+)")


def managed(env: dict[str, str], manager: subprocess.Popen[bytes]) -> str | None:
    """ "managing" once the window manager has said so on the root window, "ended" if it gave up."""
    if manager.poll() is not None:
        return "ended"
    root = subprocess.run(
        ["xprop", "-root", "_NET_SUPPORTING_WM_CHECK"], env=env, capture_output=True, text=True
    )
    return "managing" if "window id" in root.stdout else None


@contextlib.contextmanager
def x_server(size: tuple[int, int]) -> Iterator[dict[str, str]]:
    """An Xvfb of its own (``-displayfd`` picks a free display), with openbox as window
    manager when it is installed (real title bars, as on a teacher's desktop)."""
    read_fd, write_fd = os.pipe()
    # -noreset: else the server resets as its last client leaves, refusing the next (xorg/xserver#1102).
    screen = ["-screen", "0", f"{size[0]}x{size[1]}x24", "-nolisten", "tcp", "-noreset"]
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), *screen],
        pass_fds=(write_fd,), stderr=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        number = pipe.readline().strip()
    env = {**os.environ, "DISPLAY": f":{number}"}
    manager = None
    try:
        assert number, "Xvfb did not start"

        def answers() -> bool:  # the display number comes a moment before the server answers
            return subprocess.run(["xprop", "-root"], env=env, capture_output=True).returncode == 0

        wait_until(answers, f"the X server on {env['DISPLAY']} to answer", deadline=DEADLINE)
        if shutil.which("openbox"):
            for _ in range(5):  # now and then openbox cannot open a display that xprop could
                with tempfile.TemporaryFile() as log:
                    manager = subprocess.Popen(["openbox", "--sm-disable"], env=env, stdout=log, stderr=log)
                    started = wait_until(lambda m=manager: managed(env, m), "openbox to manage the screen")
                    if started == "managing":
                        break
                    log.seek(0)
                    failure = log.read()
            else:
                raise AssertionError(f"openbox did not start: {failure!r}")
        yield env
    finally:
        for process in (manager, server):
            if process is not None:
                process.terminate()
                process.wait(timeout=DEADLINE)


def has_text(shot: Image.Image, rect: Rect) -> bool:
    """Dark pixels inside ``rect``: words drawn there (the window's background is light)."""
    x, y, width, height = rect
    grey = shot.crop((x, y, x + width, y + height)).convert("L")
    return sum(grey.histogram()[:100]) > 20


@needs_xdotool
@posix_only("its own X server and window manager, and Ctrl+C to a process group")
def test_demo_on_a_1024x768_projector_shows_every_control_of_both_windows(
    isolated_dir: str, tmp_path: Path
) -> None:
    """Started from a folder with a ``tkshm/`` of its own, as a clone's parent would be."""
    with x_server(PROJECTOR) as env:
        demo = subprocess.Popen(
            [*tkshm_command(), "demo", "--lang", "en"], cwd=shadowing_folder(tmp_path),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**env, "TKSHM_TEST_EVENTS": "1"}, start_new_session=True,
        )  # fmt: skip
        assert demo.stdout is not None and demo.stderr is not None
        out, err = Lines(demo.stdout), Lines(demo.stderr)
        try:
            intro = out.wait_for(INTRO.pattern)
            pids = (int(intro.group(2)), int(intro.group(3)))
            out.wait(lambda seen: seen.count("READY") >= 2, "both windows READY")
            controls: dict[int, dict[str, Rect]] = {pid: {} for pid in pids}
            for line in out.seen:
                if match := CONTROL.fullmatch(line):
                    x, y, w, h = (int(v) for v in match.groups()[2:])
                    controls[int(match.group(1))][match.group(2)] = (x, y, w, h)
            shot = ImageGrab.grab(xdisplay=env["DISPLAY"])
            assert shot.size == PROJECTOR
            windows = [controls[pid].pop("window") for pid in pids]
            assert windows[0][0] + windows[0][2] <= windows[1][0], f"the windows overlap: {windows}"
            for pid, window in zip(pids, windows, strict=True):
                x, y, w, h = window
                assert x >= 0 and y >= 0 and x + w <= PROJECTOR[0] and y + h <= PROJECTOR[1], window
                assert set(controls[pid]) == {
                    "load_button", "label", "display_button", "follow_check", "trace_check", "status"
                }  # fmt: skip
                for name, rect in controls[pid].items():
                    cx, cy, cw, ch = rect
                    assert cw > 0 and ch > 0, (name, rect)
                    assert x <= cx and y <= cy and cx + cw <= x + w and cy + ch <= y + h, (name, rect, window)
                    assert has_text(shot, rect), f"no words where window {pid} says its {name} is: {rect}"
        finally:
            os.killpg(demo.pid, signal.SIGINT)  # Ctrl+C in the demo's terminal
            status = demo.wait(timeout=DEADLINE)
            out.until_end()
            err.until_end()
            for stream in (demo.stdout, demo.stderr):
                stream.close()
        assert status == 0
        assert [line for line in err.seen if not TRACE.fullmatch(line)] == []  # no traceback
        assert os.listdir(isolated_dir) == []


# -- the demo with Qt's own example (--with-qt) -----------------------------------------------
needs_qt_example = pytest.mark.skipif(
    not glob.glob(QT_EXAMPLE_GLOB), reason="Qt's example is not installed: apt-get install qtbase5-examples"
)
WITH_QT = re.compile(
    r"Left: Qt's own Shared Memory example, process (\d+)\. Right: a tkshm window speaking Qt 5's "
    r"protocol, process (\d+)\. Both use Qt's key 'QSharedMemoryExample'\."
)


@needs_xdotool
@needs_qt_example
@SIGNALS
def test_demo_with_qt_puts_qts_example_on_the_left_and_a_qt5_window_on_the_right(tmp_path: Path) -> None:
    env = {**os.environ, "TKSHM_TEST_EVENTS": "1", "TMPDIR": str(tmp_path)}  # Qt's key files go here
    proc = subprocess.Popen(
        [sys.executable, "-m", "tkshm", "demo", "--lang", "en", "--with-qt"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    out, err = Lines(proc.stdout), Lines(proc.stderr)
    try:
        intro = out.wait_for(WITH_QT.pattern)
        qt_pid, tkshm_pid = int(intro.group(1)), int(intro.group(2))
        out.wait_for("READY")
        wait_until(lambda: catches(proc.pid, signal.SIGTERM), "the demo's signal handlers")
        ours = wait_until(lambda: windows_named(rf"tkshm\[{tkshm_pid}\]"), "the tkshm window")
        assert "Qt 5 protocol" in xdotool("getwindowname", ours[0])
        ours_left = window_rect(ours[0])[0]

        def qt_in_place() -> list[str] | None:  # Qt centres its dialog; the demo moves it left
            ids = xdotool(
                "search", "--all", "--onlyvisible", "--pid", str(qt_pid), "--name", "Shared"
            ).split()
            return ids if ids and sum(window_rect(ids[0])[0:3:2]) <= ours_left + 1 else None

        wait_until(qt_in_place, "Qt's example on the left of the tkshm window")
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl+C: Qt's example dies where it stands
        assert proc.wait(timeout=DEADLINE) == 0, err.seen
        out.until_end()
        err.until_end()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=DEADLINE)
    assert [p for p in os.listdir(tmp_path) if p.startswith("qipc_")] == []
    assert not [line for line in err.seen if not TRACE.fullmatch(line) and "XDG_RUNTIME_DIR" not in line]


def test_demo_with_qt_says_in_one_sentence_when_qts_example_is_missing(tmp_path: Path) -> None:
    missing = tmp_path / "sharedmemory"
    done = subprocess.run(
        [sys.executable, "-m", "tkshm", "demo", "--with-qt", "--qt-example", str(missing)],
        capture_output=True, text=True, timeout=DEADLINE,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr == (
        f"tkshm: {missing} is not a program tkshm can run; --qt-example wants Qt's compiled example.\n"
    )
