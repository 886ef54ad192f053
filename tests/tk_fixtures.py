"""Helpers for the window's tests: a real Tk root on pytest-xvfb's display, and a deadline-
bounded way to let Tk run until something has happened (tests never sleep to synchronise)."""

from __future__ import annotations

import os
import sys
import time
import tkinter as tk
from collections.abc import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

from photo import make_photo  # noqa: E402

from tkshm.window.dialog import Dialog as App  # noqa: E402

__all__ = ["App", "AppFactory", "make_photo", "new_root", "pump"]

AppFactory = Callable[..., App]


def pump(root: tk.Misc, condition: Callable[[], bool], deadline: float = 15.0, what: str = "") -> None:
    """Run Tk's event loop until ``condition()`` holds; fail loudly after ``deadline`` s."""
    end = time.monotonic() + deadline
    while True:
        root.update()
        if condition():
            return
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline} s waiting for {what or condition}")
        time.sleep(0.002)  # yield the CPU to the worker thread and peers between polls


def new_root() -> tk.Tk | None:
    """A Tk root of the size the tests expect, or None without an X display."""
    try:
        root = tk.Tk(className="tkshm")
    except tk.TclError:
        return None
    root.geometry("600x660+0+0")
    return root
