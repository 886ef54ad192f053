"""What a Windows user expects: a window without a console, a Start-menu shortcut, and a
``tkshm put`` that stops cleanly on Ctrl+C, Ctrl+Break and closing its console window.

The Windows tests run in a real Windows CPython, on Windows (the GitHub workflow) or under
Wine here (``scripts/wine-python.sh test tests/test_windows_habits.py``). Wine 8 cannot do
everything a real console does; the tests it cannot drive say why in their skip reason.
The logic of the console handler and the signal plumbing also run on Linux.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.metadata
import os
import signal
import struct
import subprocess
import sys
import sysconfig
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from peer import wait_until
from PIL import Image
from watch import Lines

from tkshm import _signals, desktop, ipc
from tkshm.cli import main

windows_only = pytest.mark.skipif(sys.platform != "win32", reason="Windows behaviour")


def under_wine() -> bool:
    if sys.platform != "win32":
        return False
    return hasattr(ctypes.WinDLL("ntdll"), "wine_get_version")  # Wine's own export


def scripts_folder() -> Path:
    return Path(sysconfig.get_path("scripts"))


# -- the window opens without a console ----------------------------------------------------

IMAGE_SUBSYSTEM_WINDOWS_GUI = 2
IMAGE_SUBSYSTEM_WINDOWS_CUI = 3


def pe_subsystem(path: Path) -> int:
    """The Subsystem field of a PE executable's optional header: Windows opens a console for
    a CUI (console) program and none for a GUI one."""
    data = path.read_bytes()[:4096]
    assert data[:2] == b"MZ", f"{path} is not an executable"
    (pe_offset,) = struct.unpack_from("<I", data, 0x3C)  # e_lfanew
    assert data[pe_offset : pe_offset + 4] == b"PE\0\0"
    optional_header = pe_offset + 4 + 20  # the signature, then the COFF file header
    (subsystem,) = struct.unpack_from("<H", data, optional_header + 68)
    return int(subsystem)


def test_tkshm_gui_is_a_gui_script_and_tkshm_a_console_script() -> None:
    scripts = importlib.metadata.distribution("tkshm").entry_points
    kinds = {(e.name, e.group) for e in scripts if e.group.endswith("_scripts")}
    assert kinds == {("tkshm-gui", "gui_scripts"), ("tkshm", "console_scripts")}


@windows_only
def test_installed_tkshm_gui_exe_opens_no_console_and_tkshm_exe_does() -> None:
    gui, console = scripts_folder() / "tkshm-gui.exe", scripts_folder() / "tkshm.exe"
    if not gui.exists():
        pytest.skip(f"tkshm is not installed with its scripts in {scripts_folder()}")
    assert pe_subsystem(gui) == IMAGE_SUBSYSTEM_WINDOWS_GUI
    assert pe_subsystem(console) == IMAGE_SUBSYSTEM_WINDOWS_CUI


# -- the Start-menu shortcut ----------------------------------------------------------------


@pytest.fixture
def app_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary %APPDATA%: the real Start menu is never touched."""
    folder = tmp_path / "Roaming"
    monkeypatch.setenv("APPDATA", str(folder))
    return folder


def read_shortcut(path: Path) -> tuple[str, str, str, int]:
    """Target, arguments, icon file and icon index, read back through the shell's IShellLink."""
    import pythoncom
    from win32com.shell import shell

    link = pythoncom.CoCreateInstance(
        shell.CLSID_ShellLink, None, pythoncom.CLSCTX_INPROC_SERVER, shell.IID_IShellLink
    )
    link.QueryInterface(pythoncom.IID_IPersistFile).Load(str(path))
    target, _ = link.GetPath(shell.SLGP_RAWPATH)
    icon, index = link.GetIconLocation()
    return target, link.GetArguments(), icon, index


@windows_only
def test_install_desktop_makes_start_menu_shortcut_to_tkshm_gui_exe(
    app_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["install-desktop"]) == 0
    link = app_data / "Microsoft" / "Windows" / "Start Menu" / "Programs" / "tkshm (SharedMemory Example).lnk"
    target, arguments, icon, index = read_shortcut(link)
    program, expected_arguments = desktop.gui_program()
    assert os.path.normcase(target) == os.path.normcase(program)
    assert arguments == expected_arguments
    if (scripts_folder() / "tkshm-gui.exe").exists():
        assert Path(target).name == "tkshm-gui.exe" and arguments == ""
    with Image.open(icon) as ico:
        assert ico.format == "ICO" and (256, 256) in ico.info["sizes"] and index == 0
    assert Path(icon).parent == app_data / "tkshm"
    out = capsys.readouterr().out
    assert f"Installed {link}" in out and f"Installed {icon}" in out


@windows_only
def test_install_twice_is_harmless_and_uninstall_removes_shortcut_and_icon(
    app_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["install-desktop"]) == 0
    assert main(["install-desktop"]) == 0
    programs = app_data / "Microsoft" / "Windows" / "Start Menu" / "Programs"
    assert [p.name for p in programs.iterdir()] == ["tkshm (SharedMemory Example).lnk"]
    capsys.readouterr()
    assert main(["uninstall-desktop"]) == 0
    assert list(programs.iterdir()) == [] and not (app_data / "tkshm").exists()
    assert capsys.readouterr().out.count("Removed ") == 2
    assert main(["uninstall-desktop"]) == 0
    assert "The Start-menu shortcut was not installed; nothing to remove." in capsys.readouterr().out


@windows_only
def test_shortcut_that_cannot_be_written_is_one_line_on_stderr(
    app_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app_data.mkdir(parents=True)
    (app_data / "Microsoft").write_text("a file where a folder should be")
    assert main(["install-desktop"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tkshm: Cannot install the Start-menu shortcut:") and err.count("\n") == 1


# Print whether process argv[1] has a console: AttachConsole fails for a GUI program's.
HAS_CONSOLE = """
import contextlib, sys, pywintypes, win32console
with contextlib.suppress(pywintypes.error):
    win32console.FreeConsole()
try:
    win32console.AttachConsole(int(sys.argv[1]))
except pywintypes.error as exc:
    print(f"no console ({exc.strerror})")
else:
    print("console")
"""


@windows_only
def test_start_menu_shortcut_opens_the_window_without_a_console(app_data: Path) -> None:
    import win32api
    import win32con
    import win32gui
    import win32process

    assert main(["install-desktop"]) == 0
    os.startfile(desktop.shortcut_path())  # as a click on the Start-menu entry does
    # user32's FindWindowW returns 0 while the window is not there yet; pywin32's wrapper raises
    # then, with whatever error an earlier call left behind (Wine leaves 1400, invalid handle).
    find_window = ctypes.WinDLL("user32").FindWindowW
    find_window.argtypes, find_window.restype = (ctypes.c_wchar_p, ctypes.c_wchar_p), ctypes.c_void_p
    window = wait_until(lambda: find_window(None, "SharedMemory Example"), "the window")
    _, pid = win32process.GetWindowThreadProcessId(window)
    try:
        assert python(HAS_CONSOLE, pid).startswith("no console")
        win32gui.PostMessage(window, win32con.WM_CLOSE, 0, 0)  # the close button
        wait_until(lambda: not win32gui.IsWindow(window), "the window to close")
    finally:
        if win32gui.IsWindow(window):
            process = win32api.OpenProcess(win32con.PROCESS_TERMINATE, False, pid)
            win32api.TerminateProcess(process, 1)
            win32api.CloseHandle(process)


# -- put stops cleanly ----------------------------------------------------------------------


@pytest.mark.parametrize("signum", _signals.STOP_SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_every_stop_signal_sets_the_stop_event_and_handlers_come_back(signum: int) -> None:
    before = signal.getsignal(signum)
    with _signals.stop_requests() as stop:
        signal.raise_signal(signum)
        assert stop.wait(5.0), f"{signal.Signals(signum).name} did not ask to stop"
    assert signal.getsignal(signum) is before


def test_console_handler_leaves_ctrl_c_and_ctrl_break_to_the_signal_handlers() -> None:
    stop, detached = threading.Event(), threading.Event()
    handler = _signals.console_handler(stop, detached)
    assert handler(_signals.CTRL_C_EVENT) is False
    assert handler(_signals.CTRL_BREAK_EVENT) is False
    assert not stop.is_set()


@pytest.mark.parametrize("event", [2, 5, 6], ids=["CTRL_CLOSE", "CTRL_LOGOFF", "CTRL_SHUTDOWN"])
def test_console_close_asks_to_stop_and_holds_the_process_until_detached(event: int) -> None:
    stop, detached = threading.Event(), threading.Event()
    handler = _signals.console_handler(stop, detached)
    returned: list[bool] = []
    # Windows calls the handler on a thread of its own and ends the process when it returns.
    thread = threading.Thread(target=lambda: returned.append(handler(event)))
    thread.start()
    assert stop.wait(5.0), "closing the console did not ask put to stop"
    assert returned == []  # still holding the process: put has not detached yet
    detached.set()
    thread.join(5.0)
    assert returned == [True]


@pytest.fixture
def picture(tmp_path: Path) -> Path:
    path = tmp_path / "picture.png"
    Image.new("RGBA", (64, 48), (200, 30, 60, 255)).save(path)
    return path


# Run in a process of its own: attach to put's console and send it a console control event,
# as pressing the keys there would. Our own handler ignores the event, which reaches us too.
SEND_CONSOLE_EVENT = """
import contextlib, sys, pywintypes, win32api, win32console
pid, event = int(sys.argv[1]), int(sys.argv[2])
with contextlib.suppress(pywintypes.error):  # we may have no console to leave
    win32console.FreeConsole()
win32console.AttachConsole(pid)
win32api.SetConsoleCtrlHandler(lambda event: True, True)
win32api.GenerateConsoleCtrlEvent(event, 0)
"""

# Print the window handle of the console of process argv[1].
CONSOLE_WINDOW = """
import contextlib, sys, pywintypes, win32console
with contextlib.suppress(pywintypes.error):
    win32console.FreeConsole()
win32console.AttachConsole(int(sys.argv[1]))
print(win32console.GetConsoleWindow())
"""


@contextlib.contextmanager
def put_in_its_own_console(picture: Path, key: str) -> Iterator[tuple[subprocess.Popen[str], Lines]]:
    """``tkshm.exe put`` in a new console window, as a user starts it from a Start-menu prompt;
    yields once the image is published."""
    with in_its_own_console(
        ["put", "--key", key, str(picture)], r"Published .* Press Ctrl\+C to detach\."
    ) as run:
        yield run


@contextlib.contextmanager
def in_its_own_console(args: list[str], ready: str) -> Iterator[tuple[subprocess.Popen[str], Lines]]:
    """``tkshm.exe ARGS`` in a new console window; yields once it has printed ``ready``."""
    program = scripts_folder() / "tkshm.exe"
    argv = [str(program)] if program.exists() else [sys.executable, "-m", "tkshm"]
    proc = subprocess.Popen(
        [*argv, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, creationflags=subprocess.CREATE_NEW_CONSOLE,
    )  # fmt: skip
    try:
        output = Lines(proc.stdout)  # type: ignore[arg-type]
        output.wait_for(ready)
        yield proc, output
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)


def python(code: str, *args: object) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def assert_detached_with_status_0(proc: subprocess.Popen[str], output: Lines, key: str) -> None:
    status = proc.wait(30)
    assert status == 0, output.until_end()
    assert ipc.remains(key) == []
    with pytest.raises(ipc.SegmentNotFoundError):
        ipc.read_image(key=key)


@windows_only
@pytest.mark.parametrize(
    "event",
    [
        pytest.param(_signals.CTRL_C_EVENT, id="ctrl-c"),
        pytest.param(
            _signals.CTRL_BREAK_EVENT,
            id="ctrl-break",
            marks=pytest.mark.skipif(
                under_wine(),
                reason="Wine 8: GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT) fails with ERROR_INVALID_HANDLE",
            ),
        ),
    ],
)
def test_put_detaches_and_exits_0_on_keys_pressed_in_its_console(picture: Path, key: str, event: int) -> None:
    with put_in_its_own_console(picture, key) as (proc, output):
        assert ipc.read_image(key=key).size == (64, 48)
        python(SEND_CONSOLE_EVENT, proc.pid, event)
        assert_detached_with_status_0(proc, output, key)


@windows_only
@pytest.mark.parametrize("command", ["play", "watch"])
def test_play_and_watch_end_cleanly_on_ctrl_c_in_their_console(key: str, command: str) -> None:
    """A stream's two ends, started from a prompt and stopped with Ctrl+C: each says how it
    ended, exits 0 and leaves nothing behind."""
    if command == "play":
        args = ["play", "--key", key, "--pattern", "--size", "64x48", "--fps", "30"]
        ready, ended = (
            r"Playing the test pattern .* Press Ctrl\+C to stop\.",
            r"Stopped after publishing \d+ frames?(, \d+ dropped to keep time)?\.",
        )
    else:
        args, ready, ended = (
            ["watch", "--key", key],
            r"tkshm watch: nothing is published .*",
            r"total .* frames/s.*",
        )
    with in_its_own_console(args, ready) as (proc, output):
        if command == "play":
            assert ipc.read_image(key=key).size == (64, 48)
        python(SEND_CONSOLE_EVENT, proc.pid, _signals.CTRL_C_EVENT)
        output.wait_for(ended)
        assert proc.wait(30) == 0, output.until_end()
    assert ipc.remains(key) == []


@windows_only
@pytest.mark.skipif(
    under_wine(), reason="Wine 8: closing a console window ends its processes without CTRL_CLOSE_EVENT"
)
def test_put_detaches_when_its_console_window_is_closed(picture: Path, key: str) -> None:
    import win32con
    import win32gui

    with put_in_its_own_console(picture, key) as (proc, _):
        window = int(python(CONSOLE_WINDOW, proc.pid))
        win32gui.PostMessage(window, win32con.WM_CLOSE, 0, 0)
        proc.wait(30)  # Windows ends the process once the handler returns: no status to check
        assert ipc.remains(key) == []


# The part of Ctrl+Break that Wine can run: SIGBREAK raised inside put (as the C runtime does
# for CTRL_BREAK_EVENT), from another thread, once the test says so on standard input.
RAISE_SIGBREAK_ON_INPUT = """
import signal, sys, threading
from tkshm.cli import main
def break_on_input():
    sys.stdin.readline()
    signal.raise_signal(signal.SIGBREAK)
threading.Thread(target=break_on_input, daemon=True).start()
sys.exit(main(sys.argv[1:]))
"""


@windows_only
def test_put_detaches_and_exits_0_on_sigbreak(picture: Path, key: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", RAISE_SIGBREAK_ON_INPUT, "put", "--key", key, str(picture)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        output = Lines(proc.stdout)  # type: ignore[arg-type]
        output.wait_for(r"Published .*")
        assert proc.stdin is not None
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert_detached_with_status_0(proc, output, key)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
