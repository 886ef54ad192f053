"""``tkshm demo``: the whole lesson on one screen, for a classroom.

Two windows -- two separate processes, as two copies of the Qt example would be -- open side
by side on a fresh key, each with its trace pane open and its Load dialog pointing at a sample
image, and both print their trace to this terminal. A teacher presses Load in one and Display
in the other and the class watches the key become a name, the segment being created and
attached, the lock taken and released, and the last detach remove the segment.

With ``--play FILE`` or ``--pattern`` a third process, ``tkshm play``, publishes a stream of
frames under the same key, and the right window starts with Follow changes on: the class
watches video go through shared memory, and can kill the player to see the window notice.
Nobody is then told to press Load (the next frame would overwrite the image at once): the
introduction and both windows' first messages say what the stream demo shows instead.

With ``--with-qt`` the left window is Qt's own compiled example (Debian's
``qtbase5-examples``) and the right one a tkshm window speaking Qt 5's protocol: the same
lesson in two languages and two toolkits, passing one image between them both ways.
"""

from __future__ import annotations

import glob
import os
import secrets
import signal
import subprocess
import sys
import time
from types import FrameType
from typing import Final

from . import asset, qt
from .errors import TkshmError
from .i18n import translation
from .window.dialog import MIN_WINDOW, ROLES

# Room between and around the windows, and how big each may be (a 1280x800 projector fits two).
GAP: Final = 24
MAX_WINDOW: Final = (640, 860)
# After Ctrl+C the windows detach and close within a moment; one that has not after this
# long is stuck, and is killed (the segment is then removed by the next attach or clean).
CLOSE_TIMEOUT: Final = 10.0
# The first picture to load: small, so the second sample (1920x1200) makes the segment grow.
FIRST_SAMPLE: Final = "sunset.jpg"
# The stream of ``--pattern``: small enough for any classroom laptop to play at full rate.
PATTERN_SIZE: Final = "640x360"
PATTERN_FPS: Final = 30
# Where Debian's qtbase5-examples installs Qt's compiled example (one folder per architecture).
QT_EXAMPLE_GLOB: Final = "/usr/lib/*/qt5/examples/corelib/ipc/sharedmemory/sharedmemory"


def qt_example(path: str | None = None) -> str:
    """The compiled Qt example to run beside tkshm: ``path``, or where Debian installs it."""
    if path is not None:
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise TkshmError(
                f"{path} is not a program tkshm can run; --qt-example wants Qt's compiled example."
            )
        return path
    found = sorted(glob.glob(QT_EXAMPLE_GLOB))
    if not found:
        raise TkshmError(
            "Qt's Shared Memory example is not installed: on Debian or Ubuntu, "
            "sudo apt-get install qtbase5-examples (or pass --qt-example PATH)."
        )
    return found[0]


def sample_directory() -> str:
    """The sample pictures shipped in ``tkshm.assets`` (``assets/samples`` in the source)."""
    return asset("samples")


def side_by_side(screen: tuple[int, int]) -> tuple[str, str]:
    """Tk geometries (``WxH+X+Y``) for two windows next to each other, centred on the screen.

    Never smaller than the window's minimum size: on a screen too narrow for two of those,
    the right window overlaps the left one rather than leaving the screen.
    """
    width = max(MIN_WINDOW[0], min(MAX_WINDOW[0], (screen[0] - 3 * GAP) // 2))
    height = max(MIN_WINDOW[1], min(MAX_WINDOW[1], screen[1] - 3 * GAP))
    left = max(0, (screen[0] - 2 * width - GAP) // 2)
    right = max(0, min(left + width + GAP, screen[0] - width))
    top = max(0, (screen[1] - height) // 2 - GAP // 2)
    return f"{width}x{height}+{left}+{top}", f"{width}x{height}+{right}+{top}"


def _screen_size() -> tuple[int, int]:
    import tkinter

    root = tkinter.Tk()
    try:
        root.withdraw()
        return root.winfo_screenwidth(), root.winfo_screenheight()
    finally:
        root.destroy()


def tkshm_command() -> list[str]:
    """The command that runs *this* tkshm in a new process, wherever it is started from.

    Not ``python -m tkshm``: ``-m`` puts the current folder first on ``sys.path``, so a
    folder that holds a ``tkshm/`` of its own (a clone, run from its parent) would shadow
    the installed package. Instead the folder this package was imported from goes first.
    """
    home = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = "import sys; sys.path[0] = sys.argv.pop(1); from tkshm.cli import main; sys.exit(main())"
    return [sys.executable, "-c", code, home]


def play_command(key: str, file: str | None) -> list[str]:
    """``tkshm play`` of ``file`` under ``key``, or of the moving test pattern if None."""
    source = [file] if file is not None else ["--pattern", "--size", PATTERN_SIZE, "--fps", str(PATTERN_FPS)]
    return [*tkshm_command(), "play", "--key", key, *source]


def introduction(
    key: str,
    pids: tuple[int, int],
    lang: str | None = None,
    player: tuple[int, str] | None = None,
    with_qt: bool = False,
) -> str:
    """What the terminal says when the windows open, in the windows' language; ``player``
    is the process id of ``tkshm play`` and what it plays, if the demo started one.

    With a player the lesson is the stream, and nobody is told to press Load: the player
    would overwrite the loaded image within a frame."""
    tr = translation(lang).gettext
    display = tr("Display Image From Shared Memory")
    if with_qt:
        steps = (
            tr(
                "Left: Qt's own Shared Memory example, process {left}. Right: a tkshm window "
                "speaking Qt 5's protocol, process {right}. Both use Qt's key {key}."
            ).format(key=repr(key), left=pids[0], right=pids[1]),
            tr("Press {load} in either window and open a sample image; press {display} in the other.").format(
                load=tr("Load Image From File..."), display=display
            ),
            tr(
                "The image goes as Qt sends it: a PNG in a System V segment, under a System V semaphore "
                "(ipcs -m -s lists both)."
            ),
        )
    elif player is None:
        steps = (
            tr(
                "Two windows on key {key}: process {left} on the left publishes, "
                "process {right} on the right displays."
            ).format(key=repr(key), left=pids[0], right=pids[1]),
            tr("Left: press {load} and open the sample image.").format(load=tr("Load Image From File...")),
            tr("Right: press {display}.").format(display=display),
        )
    else:
        steps = (
            tr(
                "Two windows on key {key}, and a stream: process {left} on the left, "
                "process {right} on the right."
            ).format(key=repr(key), left=pids[0], right=pids[1]),
            tr(
                "Process {pid} plays {source} under the same key; the right window follows it "
                "(Follow changes is on)."
            ).format(pid=player[0], source=player[1]),
            tr(
                "Left: press {display} to copy out the frame of the moment; an image loaded "
                "there would be overwritten by the next frame."
            ).format(display=display),
        )
    return "\n".join(
        (
            *steps,
            tr("Each step of the protocol is printed below and in each window's trace pane."),
            tr("Close both windows, or press Ctrl+C here, to end the demo."),
        )
    )


def run_demo(
    key: str | None = None,
    lang: str | None = None,
    zoom: float = 1.0,
    play: str | None = None,
    pattern: bool = False,
    with_qt: bool = False,
    qt_path: str | None = None,
) -> int:
    """Open the two windows, wait until both are closed, and return the exit status.

    With ``play`` (a file) or ``pattern``, first start ``tkshm play`` on the same key, and the
    right window following it; it is stopped when the windows have closed.

    With ``with_qt``, the left window is Qt's compiled example (``qt_path``, or Debian's), and
    the right one speaks Qt 5's protocol on Qt's key; what a killed Qt leaves is cleaned up.

    Raises ImportError without tkinter and ``tkinter.TclError`` without a display.
    """
    tr = translation(lang).gettext
    program = qt_example(qt_path) if with_qt else None
    screen = _screen_size()
    if with_qt:
        key = qt.DEFAULT_KEY  # Qt's example knows no other
    key = key or f"demo-{secrets.token_hex(3)}"  # fresh: nothing published under it yet
    sample = os.path.join(sample_directory(), FIRST_SAMPLE)
    command = [*tkshm_command(), "--key", key, "--trace", "gui", "--suggest", sample]
    if lang:
        command += ["--lang", lang]
    if zoom != 1.0:
        command += ["--zoom", str(zoom)]
    windows: list[subprocess.Popen[bytes]] = []
    helpers: list[subprocess.Popen[bytes]] = []
    players: list[subprocess.Popen[bytes]] = []
    deadline: list[float] = []

    def close_windows(signum: int, frame: FrameType | None) -> None:
        # Ctrl+C in a terminal reaches the windows too; a SIGTERM sent to us alone does not.
        # (A window ignores a second signal while it closes. The player is not sent one: it
        # got Ctrl+C from the terminal, or it is stopped below once the windows are closed.)
        for window in windows:
            if window.poll() is None:
                window.send_signal(signum)
        deadline[:] = [time.monotonic() + CLOSE_TIMEOUT]

    for signum in (signal.SIGINT, signal.SIGTERM):  # before the windows exist: no gap to fall in
        signal.signal(signum, close_windows)
    player = None
    if play is not None or pattern:
        # Started as the windows are (tkshm_command), so the current folder cannot shadow it.
        players.append(subprocess.Popen(play_command(key, play)))
        player = (players[0].pid, repr(play) if play is not None else tr("a moving test pattern"))
    for role, where in zip(ROLES, side_by_side(screen), strict=True):
        if program is not None:
            # Qt's example opens its file dialog in the current folder: the samples, then.
            if role == "publish":
                windows.append(subprocess.Popen([program], cwd=sample_directory()))
                helpers.extend(_place(windows[-1].pid, where))
            else:
                windows.append(subprocess.Popen([*command, "--qt", "5", "--geometry", where]))
            continue
        if players:  # the player publishes; the right window follows it, the left one looks on
            says = ["--stream", *(["--role", role, "--follow"] if role == "display" else [])]
        else:
            says = ["--role", role]
        windows.append(subprocess.Popen([*command, *says, "--geometry", where]))
    # One write: the windows print to the same standard output meanwhile.
    sys.stdout.write(introduction(key, (windows[0].pid, windows[1].pid), lang, player, with_qt) + "\n")
    sys.stdout.flush()
    for window in windows:
        _wait(window, deadline)
    stopped = set()
    for process in players:  # the windows are closed: the stream has no audience left
        if process.poll() is None:
            # POSIX: SIGTERM, and it detaches as tkshm put does. Windows: TerminateProcess,
            # and the system closes its handles (its mapping goes with the last of them).
            process.terminate()
            stopped.add(process.pid)
            deadline[:] = [time.monotonic() + CLOSE_TIMEOUT]
        _wait(process, deadline)
    for helper in helpers:
        if helper.poll() is None:
            helper.kill()
        helper.wait()
    if program is not None:
        # Ctrl+C kills Qt's example where it stands (it has no handler), and Qt 5 never
        # removes what a killed process held: tkshm does.
        for line in qt.clean(key, 5):
            sys.stdout.write(f"{line} (left by Qt's example).\n")
    status = 0
    for process in players:
        if process.returncode > 0 and process.pid not in stopped:
            print(f"tkshm: The player, process {process.pid}, ended with an error.", file=sys.stderr)
            status = 1
    for window in windows:
        if window.returncode < 0 and window.returncode not in (-signal.SIGINT, -signal.SIGTERM):
            # Killing a window is one of the lessons (exercise 1 of the tour), not a failure.
            name = signal.Signals(-window.returncode).name
            sys.stdout.write(f"The window of process {window.pid} was killed ({name}).\n")
        elif window.returncode > 0:
            print(f"tkshm: The window of process {window.pid} ended with an error.", file=sys.stderr)
            status = 1
    return status


def _place(pid: int, geometry: str) -> list[subprocess.Popen[bytes]]:
    """Move Qt's example to its half of the screen, once its window shows, with xdotool if
    there is one. Qt centres a dialog whatever ``-geometry`` says; where it opens is only
    cosmetic, so without xdotool it stays there."""
    size, _, place = geometry.partition("+")
    x, _, y = place.partition("+")
    width, _, height = size.partition("x")
    argv = [
        "xdotool",
        "search",
        "--sync",
        "--all",
        "--onlyvisible",
        "--pid",
        str(pid),
        "--name",
        "SharedMemory",
    ]
    argv += ["windowsize", "%@", width, height, "windowmove", "%@", x, y]
    try:
        return [subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    except OSError:  # no xdotool
        return []


def _wait(process: subprocess.Popen[bytes], deadline: list[float]) -> None:
    """Wait for ``process`` to end; kill it once ``deadline`` (if set) has passed."""
    while process.poll() is None:
        if deadline and time.monotonic() > deadline[0]:
            process.kill()
        try:
            process.wait(0.2)  # a timed wait, so that a stuck process is noticed
        except subprocess.TimeoutExpired:
            continue
