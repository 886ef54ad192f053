"""Shared fixtures: a unique key per test, proof that no test leaves anything of a segment
behind (files on POSIX; the lock file and named mappings on Windows: see tests/platforms.py),
and a real Tk root for the window's tests."""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import sys
import tempfile
import tkinter as tk
import uuid
from collections.abc import Iterator

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from peer import Peer
from platforms import WINDOWS
from tk_fixtures import App, AppFactory, new_root

from tkshm import ipc


def files_for(key: str) -> list[str]:
    """Everything the operating system still holds for ``key``: its files, temporary ones
    too (POSIX), or its lock file and named mappings (Windows). Empty once it is gone."""
    return ipc.remains(key)


@pytest.fixture
def key(request: pytest.FixtureRequest) -> Iterator[str]:
    """A key no other test uses; the test fails if files for it remain afterwards."""
    value = f"test-{request.node.name[:40]}-{uuid.uuid4().hex[:8]}"
    yield value
    left = files_for(value)
    if left:
        ipc.clean()  # do not let one broken test leak into the next
    assert not left, f"files left behind for key {value!r}: {left}"


@pytest.fixture
def peer() -> Iterator[Peer]:
    """One separate process running tkshm commands (see tests/peer.py)."""
    with Peer() as p:
        yield p


@pytest.fixture
def peers() -> Iterator[list[Peer]]:
    """Start more peers with ``peers.append(Peer())``; all are closed at the end."""
    started: list[Peer] = []
    yield started
    for p in started:
        p.close()


@pytest.fixture
def isolated_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A private segment directory (``TKSHM_DIR``) for this test and its peers: in /dev/shm
    where there is one, else (macOS, Windows) in the user's temporary folder.

    For tests that list or clean *every* segment: in the shared directory they would see, or
    remove, the orphans of other test runs. The test fails if anything is left in it.
    """
    # Wine shows the host's /dev/shm as Z:\dev\shm: Windows code must not look for it.
    base = "/dev/shm" if not WINDOWS and os.path.isdir("/dev/shm") else None
    path = tempfile.mkdtemp(prefix="tkshm-test-", dir=base)  # mode 0700, as tkshm wants
    monkeypatch.setenv("TKSHM_DIR", path)
    yield path
    left = sorted(os.listdir(path))
    shutil.rmtree(path)
    assert not left, f"files left behind in {path}: {left}"


# ---------------------------------------------------------------------------- soak figures
# (tests/test_soak.py, test_stream_soak.py) The soaks' lengths are options, and their figures
# are printed in the terminal summary of every run, with or without -s.
def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak-seconds", type=float, default=None,
        help="how long test_soak.py runs (default: $TKSHM_SOAK_SECONDS or 20)",
    )  # fmt: skip
    parser.addoption(
        "--stream-frames", type=int, default=None,
        help="how many frames test_stream_soak.py streams (default: $TKSHM_STREAM_FRAMES or 100000)",
    )  # fmt: skip


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = [
        str(value)
        for outcome in ("passed", "failed")
        for report in terminalreporter.stats.get(outcome, [])
        if getattr(report, "when", None) == "call"
        for name, value in getattr(report, "user_properties", [])
        if name == "tkshm_soak"
    ]
    if lines:
        terminalreporter.write_sep("-", "tkshm soak figures")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture
def tk_root() -> Iterator[tk.Tk]:
    """A real Tk root on the test display (pytest-xvfb); destroyed afterwards if still there."""
    root = new_root()
    if root is None:  # pragma: no cover - only without an X server
        pytest.skip("no X display; install xvfb")
    yield root
    with contextlib.suppress(tk.TclError):  # the window under test may have destroyed it
        root.destroy()
    # A Tk tree is a cycle of Python objects (each widget knows its master and its children),
    # freed by the garbage collector on whichever thread it runs next: a window's worker in
    # the next test, where Tcl aborts the process ("async handler deleted by the wrong
    # thread"). Collect it here, on the thread that made it.
    del root
    gc.collect()


@pytest.fixture
def make_app(key: str, tk_root: tk.Tk) -> Iterator[AppFactory]:
    """``make_app(**options)``: a window on the test's key (English unless ``lang=``), closed
    -- so detached -- before ``key`` looks for files left behind. (test_app.py has its own,
    which takes the key as an argument.)"""
    made: list[App] = []

    def make(**options: object) -> App:
        app = App(tk_root, key=key, lang=options.pop("lang", "en"), events=False, **options)  # type: ignore[arg-type]
        tk_root.update()
        made.append(app)
        return app

    yield make
    for app in made:
        app.close()
