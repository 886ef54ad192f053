"""End to end, as a person would: two real tkshm windows (separate processes) on the Xvfb
display, buttons clicked with xdotool, a path typed into the real Tk file dialog, and the
pixels of both image areas compared from a screenshot.

The windows print what they do to stdout (``TKSHM_TEST_EVENTS=1``, see tkshm/window/__init__.py); a
reader thread per window feeds a queue, so every wait has a deadline. There is no window
manager on Xvfb: ``--geometry`` places the windows exactly, and keyboard focus follows the
pointer unless set with ``xdotool windowfocus --sync``. POSIX-only: xdotool drives an X server's
windows, and the first window is killed with SIGKILL.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import ImageChops, ImageGrab
from platforms import posix_only
from tk_fixtures import make_photo
from watch import DEADLINE, Lines, click, xdotool

pytestmark = [
    posix_only("xdotool clicks an X server's windows, and SIGKILL ends the first one"),
    pytest.mark.skipif(shutil.which("xdotool") is None, reason="xdotool is not installed"),
]


class Window:
    """One ``tkshm gui`` process and the event lines it prints."""

    def __init__(self, key: str, geometry: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tkshm", "gui", "--key", key, "--lang", "en", "--geometry", geometry],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "TKSHM_TEST_EVENTS": "1"},
        )
        assert self.proc.stdout is not None
        self.lines = Lines(self.proc.stdout)
        self.seen = self.lines.seen

    def wait_for(self, pattern: str) -> re.Match[str]:
        """The first line from now on that matches ``pattern``; fail after the deadline."""
        return self.lines.next_match(pattern)

    def point(self, name: str) -> tuple[int, int]:
        for line in reversed(self.seen):  # the latest: the layout may have changed
            if line.startswith(f"GEOM {name} "):
                x, y = line.split()[2:4]
                return int(x), int(y)
        raise AssertionError(f"{name} geometry not announced")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=DEADLINE)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def windows(key: str) -> Iterator[list[Window]]:
    started: list[Window] = []
    yield started
    for window in started:
        window.stop()


def image_area(shot: object, line: re.Match[str]) -> object:
    x, y, w, h = (int(v) for v in line.groups())
    return shot.crop((x, y, x + w, y + h))  # type: ignore[attr-defined]


def test_two_windows_share_an_image_and_the_second_notices_when_the_first_is_killed(
    key: str, windows: list[Window], tmp_path: Path
) -> None:
    picture = tmp_path / "sunset.png"
    make_photo(800, 500, seed=11).save(picture)
    first, second = Window(key, "520x620+0+0"), Window(key, "520x620+560+0")
    windows += [first, second]
    for window in windows:
        window.wait_for("READY")

    # First window: click "Load Image From File...", type the path into Tk's own dialog.
    click(first.point("load_button"))
    first.wait_for("LABEL Select an image file")
    dialog = xdotool("search", "--sync", "--onlyvisible", "--name", "^Open Image$").split()[0]
    xdotool("windowfocus", "--sync", dialog)  # no window manager: focus would follow the pointer
    xdotool("type", "--delay", "5", str(picture))
    xdotool("key", "Return")
    first.wait_for(r"SHOWN source=file gen=1 quality=fine ms=[\d.]+")
    first_area = first.wait_for(r"GEOM image (\d+) (\d+) (\d+) (\d+)")

    # Second window: "Display Image From Shared Memory".
    click(second.point("display_button"))
    second.wait_for(r"SHOWN source=shm gen=1 quality=fine ms=[\d.]+")
    second_area = second.wait_for(r"GEOM image (\d+) (\d+) (\d+) (\d+)")
    # The buttons' places after the picture (a longer status line can move them): read them
    # before clicking again.
    second.wait_for(r"GEOM display_button \d+ \d+")

    shot = ImageGrab.grab(xdisplay=os.environ.get("DISPLAY"))
    left, right = image_area(shot, first_area), image_area(shot, second_area)
    assert left.size == right.size and left.size[0] > 100  # type: ignore[attr-defined]
    assert ImageChops.difference(left, right).getbbox() is None  # type: ignore[arg-type]
    assert len(left.getcolors(1 << 24) or []) > 1000  # type: ignore[attr-defined]  # a picture, not a blank

    # Kill the first window: no detach, no atexit. The kernel drops its presence lock, so
    # nobody holds the segment any more, and the next attach finds (and removes) the orphan.
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(timeout=DEADLINE)
    click(second.point("display_button"))
    second.wait_for(r"LABEL Unable to attach to shared memory segment\.\\nLoad an image first\.")

    xdotool("mousemove", str(second.point("display_button")[0]), "300")  # keys go under the pointer
    xdotool("key", "ctrl+q")  # close the second window normally
    assert second.proc.wait(timeout=DEADLINE) == 0
