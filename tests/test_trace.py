"""The IPC trace: each step of the protocol as one line, in the order it happens.

In-process, a handler on the ``tkshm.trace`` logger receives the steps of a publish and a read
in protocol order. Across real processes, ``tkshm --trace`` prints them to stderr, each line
naming its time and process: the reader attaches (the writer created), takes the shared lock,
copies out and leaves the segment to its writer, and the writer's Ctrl+C removes it. A killed
holder's orphan, a lock held elsewhere and plain (untraced) commands are traced as they should
be. In the window, F6 or the checkbox shows the trace pane, which fills as the window works.

On Windows the segment's path in the trace is its mapping name ``Local\\<name>``, a killed
holder's orphan is its lock file, and Ctrl+C cannot be sent to ``put`` (see tests/platforms.py):
the writer's side of the command-line trace is then shown by a test that runs on both.
"""

from __future__ import annotations

import io
import logging
import logging.handlers
import os
import re
import signal
import subprocess
import sys
import tkinter as tk
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from tkinter import filedialog

import pytest
from commands import Running
from conftest import files_for
from patterns import pattern, seed_of
from peer import Peer
from platforms import capacity_for, orphan_path, posix_only, segment_path
from tk_fixtures import App, AppFactory, pump

from tkshm import ipc, trace
from tkshm.window.tracepane import TRACE_LINES

DEADLINE = 60.0
# tkshm.trace.FORMAT: "15:42:01.124 tkshm[4242] lock granted (shared) after 0.02 ms"
LINE = re.compile(r"(\d\d):([0-5]\d):([0-5]\d)\.(\d{3}) tkshm\[(\d+)\] (.+)")
MS = r"\d+\.\d+ ms"


def named(key: str) -> str:
    return rf"key {re.escape(repr(key))} -> native name {re.escape(ipc.native_name(key))}"


STAYS = "detach: unmapped; the segment stays while other processes are attached"  # no regex specials
STAYS_HERE = "detach: unmapped; the segment stays: this process is still attached to it"
REMOVED = "detach: unmapped; we were the last process attached, so the segment was removed"


def publish_steps(key: str) -> list[str]:
    """A first publish of a 40x30 image: create, lock, copy in, unlock (the segment stays)."""
    path = re.escape(segment_path(key))
    return [
        named(key),
        rf"create: new segment {path}, header \+ {capacity_for(4800):,} bytes for pixels; attached",
        r"lock requested \(exclusive\)",
        rf"lock granted \(exclusive\) after {MS}",
        r"header says WRITING, generation 1",
        rf"copied 4,800 bytes \(40x30, generation 1\) into the segment in {MS}; header says READY",
        r"unlock \(exclusive\)",
    ]


def read_steps(key: str, stays: str = STAYS) -> list[str]:
    """Reading that image from another handle: attach, lock, copy out, unlock, detach."""
    path = re.escape(segment_path(key))
    return [
        named(key),
        rf"attach: existing segment {path}, header \+ {capacity_for(4800):,} bytes for pixels; attached",
        r"lock requested \(shared\)",
        rf"lock granted \(shared\) after {MS}",
        rf"copied 4,800 bytes \(40x30, generation 1\) out of the segment in {MS}",
        r"unlock \(shared\)",
        stays,
    ]


def assert_steps(messages: list[str], expected: list[str]) -> None:
    """Each message matches the pattern at its place, and there are no others."""
    shown = "\n".join(messages)
    assert len(messages) == len(expected), f"{len(messages)} steps, expected {len(expected)}:\n{shown}"
    for place, (message, wanted) in enumerate(zip(messages, expected, strict=True)):
        assert re.fullmatch(wanted, message), f"step {place}: {message!r} !~ {wanted!r}\n{shown}"


def assert_in_order(messages: list[str], expected: list[str]) -> None:
    """The patterns match messages in this order (other messages may come between them)."""
    rest = iter(messages)
    for wanted in expected:
        assert any(re.fullmatch(wanted, message) for message in rest), (
            f"no {wanted!r} after the steps before it in:\n" + "\n".join(messages)
        )


@dataclass(frozen=True)
class Traced:
    """What a traced command printed on stderr: its trace lines and everything else."""

    pids: list[int]
    messages: list[str]
    seconds: list[float]  # time of day of each trace line
    other: list[str]


def split_stderr(stderr: str) -> Traced:
    pids: list[int] = []
    messages: list[str] = []
    seconds: list[float] = []
    other: list[str] = []
    for line in stderr.splitlines():
        if match := LINE.fullmatch(line):
            hours, minutes, secs, millis, pid, message = match.groups()
            pids.append(int(pid))
            messages.append(message)
            seconds.append(int(hours) * 3600 + int(minutes) * 60 + int(secs) + int(millis) / 1000)
        else:
            other.append(line)
    return Traced(pids, messages, seconds, other)


@dataclass(frozen=True)
class Done:
    pid: int
    status: int
    stdout: str
    stderr: str


def tkshm(*args: str) -> Done:
    """Run ``python -m tkshm ARGS`` to the end, as a user runs it, and say which process it was."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tkshm", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError(f"tkshm {' '.join(args)} did not finish within {DEADLINE} s") from None
    return Done(proc.pid, proc.returncode, stdout, stderr)


@pytest.fixture
def running(key: str) -> Iterator[list[Running]]:
    """Long-running commands a test starts; any still running is stopped (before ``key`` checks)."""
    started: list[Running] = []
    yield started
    for command in started:
        command.close()


class Collect(logging.Handler):
    """Keeps every trace record, as the window's pane or a teacher's script would."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def collected() -> Iterator[Collect]:
    handler = Collect()
    trace.start(handler)
    yield handler
    trace.stop(handler)


# -- in one process ------------------------------------------------------------------------
def test_publish_and_read_report_each_step_in_protocol_order(key: str, collected: Collect) -> None:
    with ipc.publish(pattern(40, 30, 7), key=key):
        assert seed_of(ipc.read_image(key=key)) == 7
    assert files_for(key) == []
    # publish; read_image, whose detach knows that this process still holds the segment
    # through its publish handle; then the end of the with block, where that is the last holder
    assert_steps(
        [record.getMessage() for record in collected.records],
        [*publish_steps(key), *read_steps(key, STAYS_HERE), REMOVED],
    )
    first = collected.records[0]
    assert (first.name, first.levelno) == ("tkshm.trace", logging.INFO)
    line = LINE.fullmatch(trace.formatter().format(first))
    assert line is not None and int(line.group(5)) == os.getpid(), trace.formatter().format(first)


def test_stopping_the_trace_restores_the_logger_and_prints_nothing_unasked(
    capfd: pytest.CaptureFixture[str],
) -> None:
    logger = logging.getLogger("tkshm.trace")
    before = (logger.level, list(logger.handlers), trace.on())
    out = io.StringIO()
    printer = trace.to_stream(out)
    assert logger.level == logging.INFO and trace.on()
    trace.step("lock requested (%s)", "shared")
    trace.stop(printer)
    assert (logger.level, logger.handlers, trace.on()) == before
    trace.step("nobody listens to this")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1, lines
    line = LINE.fullmatch(lines[0])
    assert line is not None and line.group(6) == "lock requested (shared)", lines
    assert capfd.readouterr() == ("", "")  # nothing on the real stdout or stderr either


# -- across processes, through the command line ---------------------------------------------
@posix_only("Ctrl+C cannot be sent to a child without a console on Windows")
def test_cli_trace_shows_reader_attach_under_a_shared_lock_and_writer_remove_the_segment_on_ctrl_c(
    key: str, tmp_path: Path, running: list[Running]
) -> None:
    picture, out = tmp_path / "picture.png", tmp_path / "out.png"
    pattern(40, 30, 9).save(picture)
    put = Running([sys.executable, "-m", "tkshm", "put", str(picture), "--key", key, "--trace"])
    running.append(put)
    assert put.line().startswith(f"Published {picture} (40x30) under key {key!r}, generation 1.")

    get = tkshm("get", "--key", key, "-o", str(out), "--trace")
    assert (get.status, get.stdout) == (0, f"Saved 40x30 image to {out}.\n")  # stdout as without --trace
    reader = split_stderr(get.stderr)
    assert reader.other == [] and set(reader.pids) == {get.pid}, get.stderr
    assert_steps(reader.messages, read_steps(key))
    assert files_for(key) != []  # put still holds it

    status, rest, stderr = put.stop(signal.SIGINT)  # Ctrl+C
    assert (status, rest) == (0, [])
    writer = split_stderr(stderr)
    assert writer.other == [] and set(writer.pids) == {put.proc.pid}, stderr
    assert_steps(writer.messages, [*publish_steps(key), REMOVED])
    assert writer.seconds == sorted(writer.seconds)  # the clock of one process runs forward
    assert files_for(key) == []


def test_cli_trace_shows_another_process_reading_what_a_peer_published_and_leaving_it_the_segment(
    key: str, peer: Peer, tmp_path: Path
) -> None:
    peer.call("publish", key=key, width=40, height=30, seed=9)
    out = tmp_path / "out.png"
    get = tkshm("get", "--key", key, "-o", str(out), "--trace")
    assert (get.status, get.stdout) == (0, f"Saved 40x30 image to {out}.\n")
    reader = split_stderr(get.stderr)
    assert reader.other == [] and set(reader.pids) == {get.pid}, get.stderr
    assert_steps(reader.messages, read_steps(key))
    assert reader.seconds == sorted(reader.seconds)
    assert files_for(key) != []  # the peer still holds it
    assert peer.call("detach", key=key)["removed"] is True


def test_cli_trace_after_the_only_holder_is_killed_reports_the_orphan_removed_then_nothing_published(
    key: str, peer: Peer, tmp_path: Path
) -> None:
    peer.call("publish", key=key, width=16, height=16, seed=3)
    peer.kill()  # SIGKILL (TerminateProcess): no detach; the kernel drops its presence lock
    assert files_for(key) != []  # the orphan
    out = tmp_path / "out.png"
    get = tkshm("--trace", "get", "--key", key, "-o", str(out))
    assert (get.status, get.stdout) == (1, "")
    traced = split_stderr(get.stderr)
    assert traced.other == [
        f"tkshm: nothing is published under key {key!r}; publish one with `tkshm put --key {key} IMAGE`."
    ]
    assert get.stderr.splitlines()[-1] == traced.other[0]  # the sentence comes after the steps
    assert set(traced.pids) == {get.pid}
    name = re.escape(ipc.native_name(key))
    assert_steps(
        traced.messages,
        [
            named(key),
            rf"orphan: no process holds {re.escape(orphan_path(key))} any more \(killed\?\); removed it",
            rf"attach: no segment named {name}: nothing is published under this key",
        ],
    )
    assert files_for(key) == [] and not out.exists()


def test_cli_trace_shows_the_lock_requested_and_not_granted_while_another_process_holds_it(
    key: str, peers: list[Peer], tmp_path: Path
) -> None:
    owner, locker = Peer(), Peer()
    peers += [owner, locker]
    owner.call("publish", key=key, width=16, height=16, seed=4)
    locker.call("hold_lock", key=key, exclusive=True)
    get = tkshm("get", "--key", key, "-o", str(tmp_path / "out.png"), "--trace")  # waits the full timeout
    assert (get.status, get.stdout) == (1, "")
    traced = split_stderr(get.stderr)
    assert len(traced.other) == 1 and "busy" in traced.other[0], get.stderr
    assert set(traced.pids) == {get.pid}
    timeout = ipc.DEFAULT_TIMEOUT
    assert_steps(
        traced.messages,
        [
            named(key),
            r"attach: existing segment .+; attached",
            r"lock requested \(shared\)",
            rf"lock not granted after {timeout:g} s: another process holds it",
            STAYS,
        ],
    )
    requested, refused = traced.seconds[2], traced.seconds[3]
    assert (refused - requested) % 86400 >= timeout - 0.01  # the lines say when, to the millisecond
    locker.kill()  # the kernel drops its lock (and its presence: the owner is the last holder)
    assert owner.call("detach", key=key)["removed"] is True


def test_without_trace_the_cli_prints_no_trace_lines(key: str, peer: Peer, tmp_path: Path) -> None:
    peer.call("publish", key=key, width=16, height=8, seed=5)
    out = tmp_path / "out.png"
    get = tkshm("get", "--key", key, "-o", str(out))
    assert (get.status, get.stdout, get.stderr) == (0, f"Saved 16x8 image to {out}.\n", "")
    missing = tkshm("get", "--key", f"{key}-unpublished", "-o", str(out))
    assert missing.status == 1
    unpublished = key + "-unpublished"
    assert missing.stderr == (
        f"tkshm: nothing is published under key {unpublished!r}; "
        f"publish one with `tkshm put --key {unpublished} IMAGE`.\n"
    )
    assert peer.call("detach", key=key)["removed"] is True


# -- the window's trace pane -----------------------------------------------------------------
def pane_messages(app: App) -> list[str]:
    """The steps the pane shows; each line is formatted as on the command line, with our pid."""
    messages = []
    for line in app.trace_pane.content().splitlines():
        match = LINE.fullmatch(line)
        assert match is not None and int(match.group(5)) == os.getpid(), line
        messages.append(match.group(6))
    return messages


def test_f6_and_the_checkbox_show_and_hide_the_trace_pane(make_app: AppFactory) -> None:
    app = make_app()
    assert app.trace_check.cget("text") == "Show IPC trace (F6)"
    assert app.trace_var.get() is False and not app.trace_pane.frame.winfo_ismapped()
    # The pane is fed from the start, shown or not.
    hidden = "a step while the pane is hidden"
    trace.step(hidden)
    pump(app.root, lambda: pane_messages(app) == [hidden], what="the hidden pane fed")
    picture_height = app.picture_area.frame.winfo_height()

    app.root.focus_force()
    pump(app.root, lambda: app.root.focus_get() is not None, what="keyboard focus")
    app.root.event_generate("<F6>")
    pump(app.root, lambda: bool(app.trace_pane.frame.winfo_ismapped()), what="F6 to show the pane")
    assert app.trace_var.get() is True  # the checkbox follows the key
    area = app.picture_area.frame
    pump(app.root, lambda: area.winfo_height() < picture_height, what="the pane taking room")
    assert app.trace_pane.text.winfo_height() > 50
    app.root.event_generate("<F6>")
    pump(app.root, lambda: not app.trace_pane.frame.winfo_ismapped(), what="F6 to hide the pane")
    assert app.trace_var.get() is False

    app.trace_check.invoke()
    pump(app.root, lambda: bool(app.trace_pane.frame.winfo_ismapped()), what="the checkbox to show the pane")
    assert app.trace_var.get() is True
    app.trace_check.invoke()
    pump(app.root, lambda: not app.trace_pane.frame.winfo_ismapped(), what="the checkbox to hide the pane")
    assert app.trace_var.get() is False
    assert pane_messages(app) == [hidden]  # hiding keeps the lines


def display_opening_steps(key: str, size: str) -> list[str]:
    """How the window's display of an image another process published begins: attach, take
    the shared lock, read the header (READY, ``size``, the first generation)."""
    return [
        named(key),
        r"attach: existing segment .+; attached",
        r"lock requested \(shared\)",
        rf"lock granted \(shared\) after {MS}",
        rf"read the header: READY, {size}, generation 1",
    ]


def test_display_of_an_image_that_fits_is_one_story_with_one_copy(
    make_app: AppFactory, key: str, peer: Peer
) -> None:
    peer.call("publish", key=key, width=48, height=32, seed=6)
    app = make_app(show_trace=True)
    assert pane_messages(app) == []
    app.display_button.invoke()
    pump(app.root, lambda: STAYS in pane_messages(app), what="the display's steps in the pane")
    assert app.picture_area.picture is not None and seed_of(app.picture_area.picture.image) == 6
    assert_steps(
        pane_messages(app),
        [
            *display_opening_steps(key, "48x32"),
            r"display: the 48x32 image fits the window: one copy",
            rf"copied 6,144 bytes \(48x32, generation 1\) out of the segment in {MS}",
            r"unlock \(shared\)",
            STAYS,  # true: the peer that published is another process
        ],
    )
    assert peer.call("detach", key=key)["removed"] is True


def test_display_of_a_big_image_says_preview_first_then_the_full_image(
    make_app: AppFactory, key: str, peer: Peer
) -> None:
    """Qt's attach, lock, copy, unlock, detach -- with the copy in two steps, each named."""
    peer.call("publish", key=key, width=1600, height=1000, seed=8)
    app = make_app(show_trace=True)
    app.display_button.invoke()
    pump(app.root, lambda: STAYS in pane_messages(app), what="the display's steps in the pane")
    preview = r"(\d+)x(\d+)"
    assert_steps(
        pane_messages(app),
        [
            *display_opening_steps(key, "1600x1000"),
            rf"display, copy 1 of 2: a {preview} preview of the 1600x1000 image, to show at once",
            rf"copied [\d,]+ bytes \(a {preview} preview of 1600x1000, generation 1\) out of the segment"
            rf" in {MS}",
            r"unlock \(shared\)",
            r"display, copy 2 of 2: the full image, kept to re-fit the picture when the window is resized",
            r"lock requested \(shared\)",
            rf"lock granted \(shared\) after {MS}",
            rf"copied 6,400,000 bytes \(1600x1000, generation 1\) out of the segment in {MS}",
            r"unlock \(shared\)",
            STAYS,
        ],
    )
    assert peer.call("detach", key=key)["removed"] is True


def test_display_in_the_window_that_published_says_this_process_still_holds_the_segment(
    make_app: AppFactory, key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    picture = tmp_path / "small.png"
    pattern(40, 30, 3).save(picture)
    app = make_app(show_trace=True)
    monkeypatch.setattr(filedialog, "askopenfilename", lambda **options: str(picture))
    app.load_button.invoke()
    pump(app.root, lambda: app.picture_area.picture is not None, what="the loaded image")
    app.display_button.invoke()
    pump(app.root, lambda: STAYS_HERE in pane_messages(app), what="the display's detach")
    assert STAYS not in pane_messages(app)  # nobody else is attached: that would be untrue


def test_traced_window_opens_with_the_pane_and_names_its_process_in_the_title(make_app: AppFactory) -> None:
    app = make_app(show_trace=True)
    assert app.root.title() == f"SharedMemory Example \u00b7 tkshm[{os.getpid()}]"
    assert app.trace_var.get() is True
    pump(app.root, lambda: bool(app.trace_pane.frame.winfo_ismapped()), what="the pane shown at start")


def test_trace_pane_keeps_only_the_last_trace_lines(make_app: AppFactory) -> None:
    app = make_app(show_trace=True)
    extra = 300
    for number in range(TRACE_LINES + extra):
        trace.step("step %d", number)
    last = f"step {TRACE_LINES + extra - 1}"
    pump(app.root, lambda: pane_messages(app)[-1:] == [last], what="the last line in the pane")
    lines = pane_messages(app)
    assert len(lines) == TRACE_LINES
    assert (lines[0], lines[-1]) == (f"step {extra}", last)  # the oldest lines went first
    assert app.trace_pane.text.yview()[1] == 1.0  # scrolled to the newest


def test_closing_the_window_removes_its_trace_handler(tk_root: tk.Tk, key: str) -> None:
    logger = logging.getLogger("tkshm.trace")
    before = (logger.level, list(logger.handlers))
    app = App(tk_root, key=key, lang="en", events=False)
    added = [handler for handler in logger.handlers if handler not in before[1]]
    assert len(added) == 1 and isinstance(added[0], logging.handlers.QueueHandler)
    assert logger.level == logging.INFO
    app.close()
    assert (logger.level, logger.handlers) == before
