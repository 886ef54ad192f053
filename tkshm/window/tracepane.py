"""The trace pane (F6): each IPC step this process takes, as it happens.

The window listens on the ``tkshm.trace`` logger through a ``logging.handlers.QueueHandler``,
because the steps happen on the worker thread, and the Tk thread moves them into a ``Text``
widget every ``TRACE_POLL_MS``.
"""

from __future__ import annotations

import logging.handlers
import queue
import re
import tkinter as tk
from tkinter import ttk
from typing import Final

from .. import trace

# New trace lines reach the pane this often; the pane keeps the last TRACE_LINES of them.
# The timer also wakes Python: it runs signal handlers only between bytecodes, and Tk's main
# loop sleeps in C until an event arrives, so without it Ctrl+C would wait for a mouse move.
TRACE_POLL_MS: Final = 50
TRACE_LINES: Final = 2000
# A number and its unit stay on one line when the pane wraps: joined by a no-break space.
_QUANTITY: Final = re.compile(r"(?<=\d) (?=(?:ms|s|bytes|MB)\b)")


def unbreakable(line: str) -> str:
    """``copied 4,096,000 bytes in 2.8 ms`` with no-break spaces before the units."""
    return _QUANTITY.sub("\u00a0", line)


class TracePane:
    """A read-only, scrolling ``Text`` fed by the trace logger of this process."""

    def __init__(self, master: tk.Misc) -> None:
        self.frame = ttk.Frame(master)
        self.text = tk.Text(
            self.frame, height=4, width=20, wrap="word", font="TkFixedFont", state="disabled",
            background="#fbfbf8", relief="flat", borderwidth=1, highlightthickness=0,
        )  # fmt: skip
        self.text.tag_configure("line", lmargin2=24)  # wrapped lines hang under the first
        scroll = ttk.Scrollbar(self.frame, command=self.text.yview)
        self.text.configure(yscrollcommand=scroll.set)
        scroll.pack(side="right", fill="y")
        self.text.pack(side="left", fill="both", expand=True)
        # The trace arrives from whichever thread did the step; a QueueHandler hands it to
        # the Tk thread.
        self._lines: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        self._handler = logging.handlers.QueueHandler(self._lines)
        trace.start(self._handler)
        self._after: str | None = self.frame.after(TRACE_POLL_MS, self._drain)

    def _drain(self) -> None:
        """Move the trace lines the IPC layer reported since last time into the pane."""
        lines = []
        while True:
            try:
                lines.append(unbreakable(self._lines.get_nowait().getMessage()))
            except queue.Empty:
                break
        if lines:
            text = self.text
            text.configure(state="normal")
            text.insert("end", "".join(line + "\n" for line in lines), "line")
            excess = int(text.index("end-1c").split(".")[0]) - 1 - TRACE_LINES
            if excess > 0:
                text.delete("1.0", f"{excess + 1}.0")
            text.configure(state="disabled")
            text.see("end")
        self._after = self.frame.after(TRACE_POLL_MS, self._drain)

    def content(self) -> str:
        """What the pane shows, as the trace said it (for tests)."""
        return str(self.text.get("1.0", "end-1c")).replace("\u00a0", " ")

    def stop(self) -> None:
        if self._after is not None:
            self.frame.after_cancel(self._after)
            self._after = None
        trace.stop(self._handler)
