"""The window: from a button press to the picture drawn."""

from __future__ import annotations

import importlib.util
import io
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from typing import Any, Final

from tkshm import ipc

from common import DEADLINE, SIZES, TIMER, Results, make_image, note

# -- display: key press to pixels on screen -----------------------------------------------
DISPLAY_SIZE: Final = "4K"
DISPLAY_REPEAT: Final = 5
WINDOW_GEOMETRY: Final = "1000x760+0+0"


@contextmanager
def x_display() -> Iterator[str | None]:
    """The X display to use: ``$DISPLAY``, or a private Xvfb started (and stopped) here."""
    if os.environ.get("DISPLAY"):
        yield os.environ["DISPLAY"]
        return
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        yield None
        return
    read_end, write_end = os.pipe()
    server = subprocess.Popen(
        [xvfb, "-displayfd", str(write_end), "-screen", "0", "1280x1024x24", "-nolisten", "tcp", "-noreset"],
        pass_fds=(write_end,),
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    try:
        with os.fdopen(read_end) as announced:  # Xvfb writes its display number when ready
            number = announced.readline().strip()
        if not number:
            raise RuntimeError("Xvfb did not start")
        os.environ["DISPLAY"] = f":{number}"
        yield os.environ["DISPLAY"]
    finally:
        os.environ.pop("DISPLAY", None)
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)


def bench_display(results: Results, workdir: str, key: str) -> None:
    """Press "Display Image From Shared Memory" and "Load Image From File..." in the window.

    Both are timed by the window's own hook (``TKSHM_TEST_EVENTS``: a ``SHOWN ... ms=T`` line
    from the moment the button's handler runs until Tk has drawn the picture), for the
    nearest-neighbour *draft* (the first pixels on screen) and the smooth *fine* version.
    The file dialog is answered at once with the PNG, so the file row starts after the pick.
    """
    if importlib.util.find_spec("tkshm.window") is None:
        note(results, "display: skipped: no window yet (tkshm/window/ does not exist)")
        return
    try:
        import tkinter as tk

        from tkshm.window import dialog as window
    except ImportError as exc:
        note(results, f"display: skipped: the window cannot be imported ({exc})")
        return
    with x_display() as display:
        if display is None:
            note(results, "display: skipped: no X display and no Xvfb (apt-get install xvfb)")
            return
        width, height = SIZES[DISPLAY_SIZE]
        image = make_image(width, height)
        path = os.path.join(workdir, f"display-{DISPLAY_SIZE}.png")
        image.save(path)  # a user's PNG: default compression
        samples: dict[str, list[float]] = {}
        with ipc.publish(image, key):
            del image
            root = tk.Tk()
            captured = io.StringIO()
            with redirect_stdout(captured):
                app = window.Dialog(root, key=key, events=True, geometry=WINDOW_GEOMETRY)
            original_dialog = window.filedialog.askopenfilename
            window.filedialog.askopenfilename = lambda **options: path  # the user picks our PNG at once
            try:
                root.update()
                buttons = {"shm": app.display_button, "file": app.load_button}
                for source in ("shm", "file") * (DISPLAY_REPEAT + 1):
                    with redirect_stdout(captured):
                        shown = _press_and_wait(root, buttons[source], captured, source)
                    for quality, ms in shown.items():
                        samples.setdefault(f"{source} {quality}", []).append(ms / 1e3)
            finally:
                window.filedialog.askopenfilename = original_dialog
                app.close()
        os.unlink(path)
    # The first press of each button was the warm-up.
    results.display = {name: values[1:] for name, values in samples.items()}


def _press_and_wait(root: Any, button: Any, captured: io.StringIO, source: str) -> dict[str, float]:
    """Invoke ``button`` and run Tk's loop until the window reports its fine picture."""
    captured.seek(0)
    captured.truncate()
    button.invoke()
    deadline = TIMER() + DEADLINE
    shown: dict[str, float] = {}
    while "fine" not in shown:
        if TIMER() > deadline:
            raise RuntimeError(f"the window showed no {source} picture within {DEADLINE:.0f} s")
        root.update()
        for line in captured.getvalue().splitlines():
            if line.startswith(f"SHOWN source={source} "):
                fields = dict(part.split("=", 1) for part in line.split()[1:])
                shown.setdefault(fields["quality"], float(fields["ms"]))
        time.sleep(0.001)  # the worker thread needs the GIL; Tk has nothing else to do
    shown.setdefault("draft", shown["fine"])
    return shown
