"""``run()``: Qt's ``main()`` -- make the Tk root, build the dialog, run the event loop."""

from __future__ import annotations

import signal
import tkinter as tk

from PIL import Image

from .. import ipc
from ..qt.keys import Version
from .dialog import Dialog


def run(
    key: str = ipc.DEFAULT_KEY,
    lang: str | None = None,
    geometry: str | None = None,
    show_trace: bool = False,
    suggest: str | None = None,
    zoom: float = 1.0,
    role: str | None = None,
    follow: bool = False,
    stream: bool = False,
    qt: Version | None = None,
) -> int:
    """Open the window and run Tk's main loop until it is closed; return the exit status.

    Ctrl+C in the terminal and SIGTERM close the window as its close button does: it detaches,
    and the last process to detach removes the segment.
    """
    blocks = Image.core  # type: ignore[attr-defined]  # documented as PILLOW_BLOCKS_MAX
    if blocks.get_blocks_max() == 0:  # the user's PILLOW_BLOCKS_MAX wins
        # Keep a few freed image blocks (16 MB each) for the next copy out of shared memory:
        # recycled memory is already paged in, and first-touch page faults cost more than
        # the copy itself. Twelve blocks cover two 4K images.
        blocks.set_blocks_max(12)
    root = tk.Tk(className="tkshm")
    app = Dialog(
        root, key=key, lang=lang, geometry=geometry, show_trace=show_trace, suggest=suggest,
        zoom=zoom, role=role, follow=follow, stream=stream, qt=qt,
    )  # fmt: skip

    close_on_signal(root, app)
    if app.events:
        root.update()
        if app.closed:  # a Ctrl+C as the window opened
            return 0
        app.announce_geometry()
        app._event("READY")
    root.mainloop()
    return 0


def close_on_signal(root: tk.Tk, app: Dialog) -> None:
    """Have Ctrl+C and SIGTERM close the window as its close button does.

    A signal handler runs between two Python instructions, maybe in the middle of a Tk
    callback, so it only asks Tk to close soon. It asks with a timer, not ``after_idle``: a
    callback that calls ``update_idletasks()`` (to lay out before it measures) runs idle work
    at once, and the window would vanish under the rest of that callback.
    """

    def request_close(signum: int, frame: object) -> None:
        # Once is enough: a second Ctrl+C (the demo passes one on, and the terminal sends
        # its own) must not interrupt the close that detaches us. SIGTERM still ends us.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        root.after(0, app.close)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, request_close)
