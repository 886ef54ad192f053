"""Qt's own *Shared Memory* example, the compiled Qt 5 program, driven as a person would.

Qt's example (Debian's ``qtbase5-examples``) runs on the Xvfb display; xdotool presses its
two buttons and types a path into its ``QFileDialog``; what its label shows is read from a
screenshot. tkshm is the other process, through its commands:

* Qt -> tkshm: Qt's "Load Image From File..." publishes; ``tkshm get --qt 5`` saves the same
  pixels.
* tkshm -> Qt: ``tkshm put --qt 5`` publishes; Qt's "Display Image From Shared Memory" shows
  it, pixel for pixel where the image is opaque.
* Qt's own sentences: Display with nothing published, Load while ``put`` holds the key.

The example's key is hard-coded (``QSharedMemoryExample``). Each test gives it a temporary
directory of its own (``TMPDIR``, where Qt 5 makes the key files whose inodes ``ftok`` turns
into System V keys), so tests running side by side never meet. Qt sets ``_NET_WM_PID``, so
its windows are found by process id. There is no window manager: Qt centres its window, X
focus follows the pointer unless set (``xdotool windowfocus --sync``), and Escape closes the
example cleanly (it detaches, and removes its key files).

Reading the label from pixels: the label is the area between the two buttons. Its text is
dark grey on the window's grey, so its lines of text are counted as bands of dark rows
(the introduction has three, "Unable to attach ... Load an image first." two, "Unable to
create shared memory segment." one), and a picture is the only thing with colour in it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from commands import Running
from peer import wait_until
from PIL import Image, ImageChops, ImageGrab
from platforms import posix_only

QT_EXAMPLE = Path("/usr/lib/x86_64-linux-gnu/qt5/examples/corelib/ipc/sharedmemory/sharedmemory")
INSTALL = "apt-get install qtbase5-examples"
DEADLINE = 60.0  # per wait: a busy 2-core machine starts Qt slowly

pytestmark = [
    posix_only("Qt 5's example speaks System V here; on Windows it uses named file mappings"),
    pytest.mark.skipif(shutil.which("xdotool") is None, reason="xdotool is not installed"),
    pytest.mark.skipif(
        not QT_EXAMPLE.exists(), reason=f"Qt 5's compiled example is not installed: {INSTALL}"
    ),
]

if sys.platform == "win32":  # (before qt_objects, which needs sysv_ipc)
    pytest.skip(
        "POSIX only: Qt 5's compiled example here is a Linux program; on Windows PySide6 is the Qt side",
        allow_module_level=True,
    )
sysv_ipc = pytest.importorskip("sysv_ipc")

from qt_objects import remove_sysv  # noqa: E402  (needs sysv_ipc, checked above)

from tkshm.qt import DEFAULT_KEY  # noqa: E402

Box = tuple[int, int, int, int]  # left, top, right, bottom, as Pillow crops
BUTTON_HALF = 24  # from a window's edge to the middle of its top or bottom button (dialog.ui's grid)
LABEL_MARGIN = 44  # the label lies this far inside the window's top and bottom edges


def picture(seed: int = 0) -> Image.Image:
    """97x61 (odd sizes: no row padding can hide): an opaque frame and left part in strong
    colours, the right part translucent. ``seed`` shifts the colours."""
    width, height = 97, 61
    pixels = []
    for y in range(height):
        for x in range(width):
            if x in (0, width - 1) or y in (0, height - 1):
                pixels.append((230, 20, 20 + seed, 255))  # the frame: an exact bounding box
            else:
                alpha = 255 if x < 60 else 80 + 4 * (x - 60)
                pixels.append(((40 + 2 * x + seed) % 256, 20 + 3 * y, (x * y + 7 * seed) % 200 + 30, alpha))
    image = Image.new("RGBA", (width, height))
    image.putdata(pixels)
    return image


def xdotool(*args: str) -> str:
    done = subprocess.run(["xdotool", *args], capture_output=True, text=True, timeout=DEADLINE)
    assert done.returncode == 0 or not done.stderr, f"xdotool {args}: {done.stderr}"
    return done.stdout if done.returncode == 0 else ""


class QtExample:
    """One run of Qt's compiled example, and what a person does with it."""

    def __init__(self, tmpdir: Path, cwd: Path) -> None:
        runtime = tmpdir / "runtime"
        runtime.mkdir(mode=0o700, exist_ok=True)
        self.env = {
            **os.environ,
            "TMPDIR": str(tmpdir),
            "QT_QPA_PLATFORM": "xcb",
            "XDG_RUNTIME_DIR": str(runtime),
        }
        self.cwd = cwd
        self.log = cwd / "qt.log"
        with open(self.log, "wb") as log:  # a file, not a pipe nobody reads
            self.proc = subprocess.Popen([str(QT_EXAMPLE)], stdout=log, stderr=log, cwd=cwd, env=self.env)
        found = wait_until(
            lambda: self.proc.poll() is not None or self.search("^SharedMemory Example$"),
            "Qt's window, or Qt's exit",
            DEADLINE,
        )
        assert found is not True, f"Qt's example exited at its start: {self.log.read_text()}"
        self.window = found

    def search(self, title: str) -> str | None:
        """The id of this process's visible window titled ``title``, or None."""
        found = xdotool("search", "--all", "--onlyvisible", "--pid", str(self.proc.pid), "--name", title)
        return found.split()[0] if found else None

    def find(self, title: str) -> str:
        """The id of this process's visible window titled ``title``, once it is mapped."""
        return wait_until(lambda: self.search(title), f"Qt's window {title!r}", DEADLINE)

    def rect(self) -> Box:
        shell = dict(
            line.split("=", 1) for line in xdotool("getwindowgeometry", "--shell", self.window).split()
        )
        x, y = int(shell["X"]), int(shell["Y"])
        return x, y, x + int(shell["WIDTH"]), y + int(shell["HEIGHT"])

    def press(self, button: str) -> None:
        """Click "Load Image From File..." (``load``) or "Display Image From Shared Memory"."""
        left, top, right, bottom = self.rect()
        y = BUTTON_HALF if button == "load" else bottom - top - BUTTON_HALF
        xdotool("mousemove", "--window", self.window, str((right - left) // 2), str(y), "click", "1")

    def open_file(self, path: Path) -> None:
        """Load, then the path typed into Qt's file dialog (its file-name field has the focus)."""
        self.press("load")
        dialog = self.find("^Open$")

        def gone() -> bool:
            # Not xdotool(): a search can fail with BadWindow when a window goes while it looks.
            search = ["xdotool", "search", "--onlyvisible", "--pid", str(self.proc.pid), "--name", "^Open$"]
            return dialog not in subprocess.run(search, capture_output=True, text=True).stdout.split()

        def accepted() -> bool:
            # Qt maps the dialog before its field takes the focus: a path typed in between is
            # lost, so select what is there and type it again until the dialog closes.
            if gone():
                return True
            subprocess.run(
                ["xdotool", "windowfocus", "--sync", dialog], capture_output=True, timeout=DEADLINE
            )
            xdotool("key", "ctrl+a")
            xdotool("type", "--delay", "5", str(path))
            xdotool("key", "Return")
            try:
                wait_until(gone, "the file dialog to close", 10.0)
            except AssertionError:
                return False
            return True

        wait_until(accepted, f"Qt's file dialog to accept {path}", DEADLINE)

    def label(self) -> Image.Image:
        """The label's area, as the screen shows it now."""
        left, top, right, bottom = self.rect()
        shot = ImageGrab.grab(xdisplay=os.environ.get("DISPLAY"))
        return shot.crop((left + 12, top + LABEL_MARGIN, right - 12, bottom - LABEL_MARGIN)).convert("RGB")

    def label_when(self, shows: Callable[[Image.Image], bool], what: str) -> Image.Image:
        """The label, once ``shows(label)`` holds: polled screenshots, until the deadline."""

        def look() -> Image.Image | None:
            shot = self.label()
            return shot if shows(shot) else None

        return wait_until(look, what, DEADLINE)

    def close(self) -> int:
        """Escape, as a person closes the dialog: Qt detaches and removes its key files."""
        if self.proc.poll() is None:
            xdotool("windowfocus", "--sync", self.window)
            xdotool("key", "Escape")
            try:
                return self.proc.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait(timeout=DEADLINE)


def text_lines(label: Image.Image) -> int:
    """How many lines of dark text the label shows: bands of rows with a dark pixel."""
    background = label.getpixel((0, 0))
    assert isinstance(background, tuple)
    dark = label.convert("L").point(lambda v: 255 if v < sum(background) // 3 - 80 else 0)
    rows = [dark.crop((0, y, dark.width, y + 1)).getbbox() is not None for y in range(dark.height)]
    return sum(1 for y, row in enumerate(rows) if row and (y == 0 or not rows[y - 1]))


def colourful(label: Image.Image) -> Box | None:
    """Where the label has colour (text is grey: red, green and blue within a few steps)."""
    r, g, b = label.split()
    spread = ImageChops.lighter(ImageChops.difference(r, g), ImageChops.difference(g, b))
    return spread.point(lambda v: 255 if v > 40 else 0).getbbox()


def composite(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """``image`` drawn over ``background``, as a label paints a pixmap with alpha."""
    under = Image.new("RGBA", image.size, (*background, 255))
    return Image.alpha_composite(under, image).convert("RGB")


@pytest.fixture
def qt_tmpdir(tmp_path: Path) -> Iterator[Path]:
    """Qt's temporary directory for this test; fails if Qt's key files or objects remain."""
    tmpdir = tmp_path / "qt-tmp"
    tmpdir.mkdir(mode=0o700)
    yield tmpdir
    left = sorted(p.name for p in tmpdir.iterdir() if p.name.startswith("qipc_"))
    removed = remove_sysv(DEFAULT_KEY, str(tmpdir))
    assert not left and not removed, f"left behind: {left} {removed}"


@pytest.fixture
def qt_example(qt_tmpdir: Path, tmp_path: Path) -> Iterator[QtExample]:
    """Qt's example, started and mapped; closed with Escape afterwards."""
    example = QtExample(qt_tmpdir, tmp_path)
    yield example
    assert example.close() == 0, example.log.read_text()


def put(qt_tmpdir: Path, image: Path) -> Running:
    """``tkshm put --qt 5`` under Qt's example's key, once it says it has published."""
    command = [sys.executable, "-m", "tkshm", "put", "--qt", "5", "--key", DEFAULT_KEY, str(image)]
    running = Running(command, env={"TMPDIR": str(qt_tmpdir)})
    assert "in Qt 5's format" in running.line()
    return running


def tkshm_get(qt_tmpdir: Path, out: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "tkshm", "get", "--qt", "5", "-o", str(out)]
    env = {**os.environ, "TMPDIR": str(qt_tmpdir)}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=DEADLINE)


def test_an_image_qt_loads_through_its_file_dialog_tkshm_get_saves_pixel_for_pixel(
    qt_example: QtExample, qt_tmpdir: Path, tmp_path: Path
) -> None:
    source, out = tmp_path / "qt source.png", tmp_path / "got.png"
    picture().save(source)  # an 8-bit RGBA PNG: Qt reads it to an ARGB32 QImage, writes it back as one
    qt_example.open_file(source)
    done = wait_until(
        lambda: (got := tkshm_get(qt_tmpdir, out)).returncode == 0 and got,
        "tkshm get to read what Qt's example loaded",
        DEADLINE,
    )
    assert done.stdout.strip() == f"Saved 97x61 image to {out}."
    assert Image.open(out).convert("RGBA").tobytes() == picture().tobytes()
    assert colourful(qt_example.label()) is not None  # and Qt shows it itself


def test_qt_displays_what_tkshm_put_publishes_pixel_for_pixel_where_it_is_opaque(
    qt_example: QtExample, qt_tmpdir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "source.png"
    picture().save(source)
    before = qt_example.label()
    assert text_lines(before) == 3 and colourful(before) is None  # the example's introduction
    publisher = put(qt_tmpdir, source)
    try:
        qt_example.press("display")
        label = qt_example.label_when(lambda shot: colourful(shot) is not None, "Qt to show the picture")
    finally:
        status, _, err = publisher.stop(signal.SIGINT)
    assert status == 0, err

    background = before.getpixel((0, 0))
    assert isinstance(background, tuple)
    difference = ImageChops.difference(label, Image.new("RGB", label.size, background))
    box = difference.getbbox()  # the picture's frame is its exact bounding box
    assert box is not None and (box[2] - box[0], box[3] - box[1]) == (97, 61), box
    shown, expected = label.crop(box), composite(picture(), background)
    opaque = picture().getchannel("A").point(lambda a: 255 if a == 255 else 0)
    assert _exact_where(shown, expected, opaque), "an opaque pixel is not the one put published"
    # Translucent pixels: blended over the window's grey, within Qt's premultiplied rounding.
    worst = max(high for _, high in ImageChops.difference(shown, expected).getextrema())
    assert worst <= 3, f"Qt's blend is {worst} steps from the expected one"
    # The label shows the picture and nothing else: no sentence any more.
    outside = label.copy()
    outside.paste(background, box)
    assert text_lines(outside) == 0


def _exact_where(shown: Image.Image, expected: Image.Image, mask: Image.Image) -> bool:
    """Whether ``shown`` and ``expected`` are equal at every pixel ``mask`` selects."""
    black = Image.new("RGB", shown.size)
    return (
        ImageChops.difference(
            Image.composite(shown, black, mask), Image.composite(expected, black, mask)
        ).getbbox()
        is None
    )


def test_with_nothing_published_qt_says_unable_to_attach_and_shows_no_picture(qt_example: QtExample) -> None:
    assert text_lines(qt_example.label()) == 3
    qt_example.press("display")
    # "Unable to attach to shared memory segment.\nLoad an image first.": two lines, no picture.
    label = qt_example.label_when(lambda shot: text_lines(shot) == 2, "Qt's two-line sentence")
    assert colourful(label) is None


def test_while_tkshm_put_holds_the_key_qt_cannot_create_its_segment(
    qt_example: QtExample, qt_tmpdir: Path, tmp_path: Path
) -> None:
    ours, theirs, out = tmp_path / "ours.png", tmp_path / "theirs.png", tmp_path / "got.png"
    picture(1).save(ours)
    picture(2).save(theirs)
    publisher = put(qt_tmpdir, ours)
    try:
        qt_example.open_file(theirs)
        # Qt shows the picture it loaded, then "Unable to create shared memory segment." over it:
        # one line, no picture.
        label = qt_example.label_when(lambda shot: text_lines(shot) == 1, "Qt's one-line sentence")
        assert colourful(label) is None
        done = tkshm_get(qt_tmpdir, out)
        assert done.returncode == 0, done.stderr
        assert Image.open(out).convert("RGBA").tobytes() == picture(1).tobytes()  # ours, untouched
    finally:
        status, _, err = publisher.stop(signal.SIGINT)
    assert status == 0, err
