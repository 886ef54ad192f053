"""Watching real processes from a test: their output lines, read as they come, and xdotool.

A reader thread per stream feeds a queue, so every wait has a deadline and fails loudly,
saying what it was waiting for and the last lines it saw.
"""

from __future__ import annotations

import queue
import re
import subprocess
import threading
import time
from collections.abc import Callable
from typing import IO, TypeVar

DEADLINE = 20.0
T = TypeVar("T")


class Lines:
    """One output stream of a process (or of several sharing it), read by a thread into a queue."""

    def __init__(self, stream: IO[str]) -> None:
        self.seen: list[str] = []
        self.ended = False
        self._cursor = 0  # for next_match
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait(self, found: Callable[[list[str]], T | None], what: str) -> T:
        """Read lines until ``found(lines so far)`` returns something; fail after the deadline."""
        end = time.monotonic() + DEADLINE
        while not (result := found(self.seen)):
            if self.ended:
                raise AssertionError(f"the stream ended before {what}; last lines: {self.seen[-10:]}")
            try:
                line = self._queue.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"no {what} within {DEADLINE} s; last lines: {self.seen[-10:]}"
                ) from None
            if line is None:
                self.ended = True
            else:
                self.seen.append(line)
        return result

    def wait_for(self, pattern: str, start: int = 0) -> re.Match[str]:
        """The first line from ``seen[start]`` on that matches ``pattern`` (waiting for it)."""
        regex = re.compile(pattern)
        return self.wait(
            lambda seen: next((m for line in seen[start:] if (m := regex.fullmatch(line))), None),
            repr(pattern),
        )

    def until_end(self) -> list[str]:
        # (a tuple, which is true even when nothing was printed at all)
        return self.wait(lambda seen: (seen,) if self.ended else None, "the end of the stream")[0]

    def next_match(self, pattern: str) -> re.Match[str]:
        """The first line after the last one this method returned that matches ``pattern``."""
        match = self.wait_for(pattern, self._cursor)
        self._cursor = self.seen.index(match.string, self._cursor) + 1
        return match


def xdotool(*args: str) -> str:
    done = subprocess.run(["xdotool", *args], capture_output=True, text=True, timeout=DEADLINE, check=True)
    return done.stdout


def click(point: tuple[int, int]) -> None:
    # No --sync: it waits for the pointer to move, which never happens (for ~15 s) when it is
    # already there. The X server handles fake motion and the click in order anyway.
    xdotool("mousemove", str(point[0]), str(point[1]), "click", "1")


def accept_dialog(dialog: str, deadline: float = DEADLINE) -> None:
    """Press Return in a Tk dialog (window id ``dialog``) until it has closed.

    Tk maps a dialog before it moves the keyboard focus to its entry; on a busy machine a
    Return that arrives in between reaches the dialog's toplevel, which ignores it. So press
    again while the dialog is still there. (A Return that lands in the main window instead, if
    the dialog closed just then, does nothing: the window binds no Return.)
    """
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            xdotool("windowfocus", "--sync", dialog)  # no window manager: focus would follow the pointer
        except subprocess.CalledProcessError:
            return  # it has gone: accepted
        xdotool("key", "Return")
        settle = time.monotonic() + 2.0
        while time.monotonic() < settle:
            shown = subprocess.run(
                ["xdotool", "search", "--onlyvisible", "--name", "."], capture_output=True, text=True
            ).stdout.split()
            if dialog not in shown:
                return
            time.sleep(0.05)  # a pause between polls of the X server, not synchronisation
    raise AssertionError(f"the dialog {dialog} was still open after {deadline} s of pressing Return")
