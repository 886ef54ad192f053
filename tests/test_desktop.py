"""``tkshm install-desktop`` / ``uninstall-desktop``: an XDG menu entry and icon for one user,
checked with desktop-file-validate, in a temporary XDG_DATA_HOME (never the real one).

POSIX-only: XDG menus are the Linux and BSD desktops'; on Windows ``install-desktop`` makes a
Start-menu shortcut instead, tested in test_windows_habits.py."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from platforms import posix_only

from tkshm import desktop
from tkshm.cli import main

pytestmark = posix_only("an XDG menu entry; Windows gets a Start-menu shortcut (test_windows_habits.py)")


@pytest.fixture
def data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "share"
    monkeypatch.setenv("XDG_DATA_HOME", str(home))
    return home


def read_entry(path: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read(path, encoding="utf-8")
    return parser["Desktop Entry"]


@pytest.mark.skipif(shutil.which("desktop-file-validate") is None, reason="desktop-file-utils missing")
def test_installed_entry_passes_desktop_file_validate(data_home: Path) -> None:
    assert main(["install-desktop"]) == 0
    entry = data_home / "applications" / "tkshm.desktop"
    done = subprocess.run(["desktop-file-validate", str(entry)], capture_output=True, text=True)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def test_install_writes_entry_and_icon_where_xdg_says(
    data_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["install-desktop"]) == 0
    entry_file = data_home / "applications" / "tkshm.desktop"
    icon = data_home / "icons" / "hicolor" / "256x256" / "apps" / "tkshm.png"
    assert Image.open(icon).size == (256, 256)
    entry = read_entry(entry_file)
    assert entry["Name"] == "SharedMemory Example"
    assert entry["Name[zh_CN]"] == "共享内存示例"
    assert entry["Icon"] == "tkshm" and entry["Terminal"] == "false"
    program = entry["Exec"].split()[0].strip('"')
    assert os.path.basename(program) in ("tkshm-gui", os.path.basename(sys.executable))
    assert os.access(program, os.X_OK)  # it points at something that runs
    out = capsys.readouterr().out
    assert str(entry_file) in out and str(icon) in out


def test_uninstall_removes_both_and_is_harmless_twice(
    data_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["install-desktop"])
    assert main(["uninstall-desktop"]) == 0
    assert not (data_home / "applications" / "tkshm.desktop").exists()
    assert not (data_home / "icons" / "hicolor" / "256x256" / "apps" / "tkshm.png").exists()
    capsys.readouterr()
    assert main(["uninstall-desktop"]) == 0
    assert "nothing to remove" in capsys.readouterr().out


def test_default_location_is_local_share_and_relative_xdg_is_ignored(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", "relative/dir")
    assert desktop.entry_path() == str(tmp_path / ".local" / "share" / "applications" / "tkshm.desktop")


def test_install_failure_is_one_line_on_stderr(data_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_home.write_text("a file where a directory should be")
    assert main(["install-desktop"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tkshm: Cannot install the desktop entry:") and err.count("\n") == 1


def test_exec_paths_with_spaces_are_quoted_as_the_spec_says() -> None:
    assert desktop._quote_exec("/opt/tk shm/bin/tkshm-gui") == '"/opt/tk shm/bin/tkshm-gui"'
    assert desktop._quote_exec("/a$b") == '"/a\\\\$b"'
    assert desktop._quote_exec("/usr/bin/tkshm-gui") == "/usr/bin/tkshm-gui"
