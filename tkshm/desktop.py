"""Put the window in the desktop menu, for one user: an XDG entry, or a Start-menu shortcut.

Linux and other XDG desktops (GNOME, KDE, Xfce, ...) build their application menus from
``*.desktop`` files in ``$XDG_DATA_HOME/applications`` (default ``~/.local/share/applications``)
and find icons by name in the ``hicolor`` theme under ``$XDG_DATA_HOME/icons``.

Windows builds a user's Start menu from the shell links (``.lnk`` files) in
``%APPDATA%\\Microsoft\\Windows\\Start Menu\\Programs``. A shell link names the program to
start (our ``tkshm-gui.exe``, which opens the window without a console), its arguments, a
working folder and an icon, which must be an ``.ico`` file: we convert the PNG once, into
``%APPDATA%\\tkshm``. Links are written through the shell's own ``IShellLink`` COM object
(pywin32), the only documented writer of the format.

Either way installing is writing two files and uninstalling is removing them: no
administrator, no system folders. The platform is decided once, at the end of this module.
It imports no tkinter, so ``tkshm install-desktop`` works on any Python.
"""

from __future__ import annotations

import gettext
import os
import shutil
import sys
import sysconfig
import time
from collections.abc import Callable
from typing import Any, Final

from . import asset

APP_ID: Final = "tkshm"  # the desktop file id (tkshm.desktop) and the icon name
ICON_SIZE: Final = "256x256"
# Tk sets WM_CLASS from the Tk(className=...) the window is created with, capitalised.
WM_CLASS: Final = "Tkshm"
LOCALE_DIR: Final = os.path.join(os.path.dirname(os.path.abspath(__file__)), "locale")
TRANSLATED: Final = ("zh_CN",)
_ERROR_SHARING_VIOLATION: Final = 32
_SHARING_PATIENCE_S: Final = 3.0


def N_(message: str) -> str:
    """Mark a string for translation without translating it here (gettext's convention)."""
    return message


NAME: Final = N_("SharedMemory Example")
GENERIC_NAME: Final = N_("Shared Memory Image Viewer")
COMMENT: Final = N_("Load an image in one window and display it from shared memory in another")


def data_home() -> str:
    """``$XDG_DATA_HOME``, or ``~/.local/share``; the spec says to ignore a relative value."""
    value = os.environ.get("XDG_DATA_HOME", "")
    return value if os.path.isabs(value) else os.path.join(os.path.expanduser("~"), ".local", "share")


def entry_path(home: str | None = None) -> str:
    return os.path.join(home or data_home(), "applications", f"{APP_ID}.desktop")


def icon_install_path(home: str | None = None) -> str:
    return os.path.join(home or data_home(), "icons", "hicolor", ICON_SIZE, "apps", f"{APP_ID}.png")


def gui_command() -> str:
    """The installed ``tkshm-gui`` of the Python running us (a venv's, typically), then one
    on ``PATH``, else ``python -m tkshm``: whichever starts *this* installation."""
    beside = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "tkshm-gui")
    if os.access(beside, os.X_OK):
        return _quote_exec(beside)
    found = shutil.which("tkshm-gui")
    if found:
        return _quote_exec(os.path.abspath(found))
    return f"{_quote_exec(os.path.abspath(sys.executable))} -m tkshm"


def _quote_exec(argument: str) -> str:
    """Quote one Exec argument as the Desktop Entry spec asks: double quotes around anything
    with reserved characters, and a backslash before ``"``, `````, ``$`` and ``\\``; then
    escape backslashes once more, because the whole value is itself a string value."""
    reserved = set(" \t\n\"'\\><~|&;$*?#()`")
    if not reserved.intersection(argument):
        return argument
    inner = "".join("\\" + c if c in '"`$\\' else c for c in argument)
    return f'"{inner}"'.replace("\\", "\\\\")


def desktop_entry(exec_command: str) -> str:
    """The text of ``tkshm.desktop``, with the names in every language we have a catalogue for."""
    lines = [
        "[Desktop Entry]",
        "Type=Application",
        "Version=1.4",
        f"Name={NAME}",
        f"GenericName={GENERIC_NAME}",
        f"Comment={COMMENT}",
    ]
    for lang in TRANSLATED:
        tr = gettext.translation("tkshm", LOCALE_DIR, languages=[lang], fallback=True).gettext
        lines += [f"Name[{lang}]={tr(NAME)}", f"GenericName[{lang}]={tr(GENERIC_NAME)}"]
        lines.append(f"Comment[{lang}]={tr(COMMENT)}")
    lines += [
        f"Exec={exec_command}",
        f"Icon={APP_ID}",
        "Terminal=false",
        "Categories=Graphics;Viewer;",
        "Keywords=shared memory;IPC;image;Qt;",
        f"StartupWMClass={WM_CLASS}",
    ]
    return "\n".join(lines) + "\n"


def _install_xdg(home: str | None = None) -> list[str]:
    """Write the entry and the icon; return the paths written."""
    entry, icon = entry_path(home), icon_install_path(home)
    os.makedirs(os.path.dirname(icon), exist_ok=True)
    shutil.copyfile(asset("tkshm.png"), icon)
    os.makedirs(os.path.dirname(entry), exist_ok=True)
    temporary = entry + ".tmp"
    with open(temporary, "w", encoding="utf-8") as out:
        out.write(desktop_entry(gui_command()))
    os.replace(temporary, entry)  # a menu never reads a half-written entry
    return [entry, icon]


def _uninstall_xdg(home: str | None = None) -> list[str]:
    """Remove the entry and the icon if present; return the paths removed."""
    return _remove(entry_path(home), icon_install_path(home))


def _remove(*paths: str) -> list[str]:
    removed = []
    for path in paths:
        try:
            os.remove(path)
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed


# -- Windows: a Start-menu shortcut ----------------------------------------------------------

SHORTCUT_NAME: Final = "tkshm (SharedMemory Example).lnk"
# The sizes Explorer asks for, from the small Start-menu tile to the large icon view.
ICO_SIZES: Final = [(16, 16), (24, 24), (32, 32), (48, 48), (64, 64), (128, 128), (256, 256)]


def app_data() -> str:
    """``%APPDATA%``: the user's roaming profile folder, which holds their Start menu."""
    return os.environ.get("APPDATA") or os.path.join(os.path.expanduser("~"), "AppData", "Roaming")


def shortcut_path(home: str | None = None) -> str:
    programs = os.path.join(home or app_data(), "Microsoft", "Windows", "Start Menu", "Programs")
    return os.path.join(programs, SHORTCUT_NAME)


def ico_path(home: str | None = None) -> str:
    return os.path.join(home or app_data(), APP_ID, f"{APP_ID}.ico")


def gui_program() -> tuple[str, str]:
    """The program and arguments a shortcut starts: the ``tkshm-gui.exe`` that pip made for
    the Python running us (beside ``python.exe`` in a venv, in ``Scripts`` otherwise, or in the
    user's ``Scripts`` after ``pip install --user``); else ``pythonw.exe -m tkshm gui``.
    Both are GUI programs: Windows opens no console for them."""
    here = os.path.dirname(os.path.abspath(sys.executable))
    for folder in (here, sysconfig.get_path("scripts"), sysconfig.get_path("scripts", f"{os.name}_user")):
        program = os.path.join(folder, "tkshm-gui.exe")
        if os.path.isfile(program):
            return program, ""
    pythonw = os.path.join(here, "pythonw.exe")
    return (pythonw if os.path.isfile(pythonw) else os.path.abspath(sys.executable)), "-m tkshm gui"


def _install_shortcut(home: str | None = None) -> list[str]:
    """Write the icon and the Start-menu shortcut; return the paths written."""
    from PIL import Image

    link, icon = shortcut_path(home), ico_path(home)
    os.makedirs(os.path.dirname(icon), exist_ok=True)
    with Image.open(asset("tkshm.png")) as picture:
        picture.save(icon, sizes=ICO_SIZES)
    os.makedirs(os.path.dirname(link), exist_ok=True)
    program, arguments = gui_program()
    temporary = link + ".tmp"  # not a .lnk: the Start menu never shows a half-written link
    _shared_moment(lambda: _save_shell_link(temporary, program, arguments, icon))
    _shared_moment(lambda: os.replace(temporary, link))
    return [link, icon]


def _shared_moment(action: Callable[[], object]) -> None:
    """Run ``action``, trying again for a moment while another program has the file open.
    On Windows the shell (Wine's menu builder, a virus scanner, a search indexer) reads a new
    link just after it is written, and a file open there cannot be written or replaced: a
    sharing violation that passes within milliseconds."""
    end = time.monotonic() + _SHARING_PATIENCE_S
    while True:
        try:
            action()
            return
        except OSError as exc:  # (a COM error becomes one too: see _save_shell_link)
            if getattr(exc, "winerror", None) != _ERROR_SHARING_VIOLATION or time.monotonic() > end:
                raise
        time.sleep(0.05)


def _uninstall_shortcut(home: str | None = None) -> list[str]:
    """Remove the shortcut and the icon if present (and our folder, once empty)."""
    removed = _remove(shortcut_path(home), ico_path(home))
    folder = os.path.dirname(ico_path(home))
    if os.path.isdir(folder) and not os.listdir(folder):
        os.rmdir(folder)
    return removed


# The platform is decided once, here.
if sys.platform == "win32":  # pragma: no cover - runs only on Windows
    WHAT: Final = "Start-menu shortcut"

    def _save_shell_link(path: str, program: str, arguments: str, icon: str) -> None:
        import pythoncom
        import pywintypes
        from win32com.shell import shell

        try:
            pythoncom.CoInitialize()  # COM, once per thread; a second call is a no-op
            link: Any = pythoncom.CoCreateInstance(  # an IShellLink; the stubs say only IUnknown
                shell.CLSID_ShellLink, None, pythoncom.CLSCTX_INPROC_SERVER, shell.IID_IShellLink
            )
            link.SetPath(program)
            link.SetArguments(arguments)
            link.SetDescription(COMMENT)
            link.SetIconLocation(icon, 0)
            link.SetWorkingDirectory(os.path.expanduser("~"))  # where the Load dialog starts
            link.QueryInterface(pythoncom.IID_IPersistFile).Save(path, 0)
        except pywintypes.com_error as exc:
            # An HRESULT of facility 7 wraps a Win32 error code: OSError maps it (5 -> PermissionError).
            hresult, strerror = exc.args[0] & 0xFFFFFFFF, exc.args[1]
            winerror = hresult & 0xFFFF if hresult >> 16 == 0x8007 else None
            raise OSError(None, strerror, path, winerror) from exc

    install, uninstall = _install_shortcut, _uninstall_shortcut
else:
    WHAT: Final = "desktop entry"

    def _save_shell_link(path: str, program: str, arguments: str, icon: str) -> None:
        raise OSError(None, "Shell links (.lnk files) exist only on Windows.", path)

    install, uninstall = _install_xdg, _uninstall_xdg
