"""Put the window in the desktop menu: an XDG ``.desktop`` entry and the icon, for one user.

Desktops (GNOME, KDE, Xfce, ...) build their application menus from ``*.desktop`` files in
``$XDG_DATA_HOME/applications`` (default ``~/.local/share/applications``) and find icons by
name in the ``hicolor`` theme under ``$XDG_DATA_HOME/icons``. Installing is writing two
files; uninstalling is removing them. No root, no system directories.

This module imports no tkinter, so ``tkshm install-desktop`` works on any Python.
"""

from __future__ import annotations

import gettext
import os
import shutil
import sys
from typing import Final

from . import asset

APP_ID: Final = "tkshm"  # the desktop file id (tkshm.desktop) and the icon name
ICON_SIZE: Final = "256x256"
# Tk sets WM_CLASS from the Tk(className=...) the window is created with, capitalised.
WM_CLASS: Final = "Tkshm"
LOCALE_DIR: Final = os.path.join(os.path.dirname(os.path.abspath(__file__)), "locale")
TRANSLATED: Final = ("zh_CN",)


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


def install(home: str | None = None) -> list[str]:
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


def uninstall(home: str | None = None) -> list[str]:
    """Remove the entry and the icon if present; return the paths removed."""
    removed = []
    for path in (entry_path(home), icon_install_path(home)):
        try:
            os.remove(path)
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed
