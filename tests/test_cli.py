"""The ``tkshm`` command line, run as a user runs it: ``python -m tkshm ...`` in a subprocess.

Every test runs in a private segment directory (``TKSHM_DIR``, in /dev/shm), because ``list``
and ``clean`` act on *all* of this user's segments. Errors must be one line on stderr, never
a traceback; ``put`` stays attached until a signal; and nothing but the window needs tkinter.

On Windows these tests cannot send ``put`` Ctrl+C or SIGTERM (see tests/commands.py; Ctrl+C
in a console of its own is test_windows_habits.py's): the signal tests are POSIX-only, and
``put`` is ended there with TerminateProcess, after which the lock file it leaves is removed as
the next attach would. A killed ``put`` is tested on both.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import signal
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from commands import Running
from conftest import files_for
from patterns import sample
from peer import Peer
from PIL import Image
from platforms import KILLED, STOPPED, WINDOWS, directory_entries, orphan_path, posix_only

from tkshm import ipc
from tkshm.images import MAX_PIXELS, load_image

if TYPE_CHECKING:  # imported by pytest_plugins below, before this module could be rewritten
    from tkshm.testing import Publish

# tkshm's own plugin for its users' tests: tkshm_key and tkshm_publisher.
pytest_plugins = ["tkshm.testing"]

DEADLINE = 60.0

# Run before tkshm: make this Python behave as one built without tkinter, and record every
# attempt to import it (a caught ImportError would hide the attempt from sys.modules).
NO_TKINTER = r"""
import atexit, json, os, sys

attempts = []

class NoTkinter:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("tkinter", "_tkinter"):
            attempts.append(name)
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoTkinter())
for name in [m for m in sys.modules if m.partition(".")[0] in ("tkinter", "_tkinter")]:
    del sys.modules[name]

@atexit.register
def report():
    loaded = sorted(m for m in sys.modules if m.partition(".")[0] in ("tkinter", "_tkinter"))
    with open(os.environ["TKSHM_TEST_REPORT"], "w") as out:
        json.dump({"attempts": attempts, "loaded": loaded}, out)
"""
RUN_TKSHM = "import runpy; runpy.run_module('tkshm', run_name='__main__', alter_sys=True)"


@pytest.fixture(autouse=True)
def private_segments(isolated_dir: str) -> str:
    return isolated_dir


def command(*args: str, no_tkinter: bool = False) -> list[str]:
    if no_tkinter:
        return [sys.executable, "-c", NO_TKINTER + RUN_TKSHM, *args]
    return [sys.executable, "-m", "tkshm", *args]


def tkshm(
    *args: str, no_tkinter: bool = False, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(*args, no_tkinter=no_tkinter),
        capture_output=True, text=True, timeout=DEADLINE, env={**os.environ, **(env or {})},
    )  # fmt: skip


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """A failed command: non-zero status, nothing on stdout, exactly one line on stderr."""
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout == "", result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def puts() -> Iterator[list[Running]]:
    """``tkshm put`` processes started by a test; any still running is stopped at the end."""
    started: list[Running] = []
    yield started
    for put in started:
        put.close()


def start_put(
    puts: list[Running], image: Path, key: str, *, no_tkinter: bool = False, env: dict[str, str] | None = None
) -> Running:
    put = Running(command("put", "--key", key, str(image), no_tkinter=no_tkinter), env=env)
    puts.append(put)
    return put


@pytest.fixture
def picture(tmp_path: Path) -> Path:
    path = tmp_path / "picture.png"
    sample("RGBA", 97, 61, 5).save(path)
    return path


# -- put ---------------------------------------------------------------------------------
SIGNALS = posix_only("signals; Ctrl+C in a console of its own is in test_windows_habits.py")


@pytest.mark.parametrize(
    "signum",
    [pytest.param(signal.SIGINT, marks=SIGNALS), pytest.param(signal.SIGTERM, marks=SIGNALS)],
    ids=["SIGINT", "SIGTERM"],
)
def test_put_prints_one_line_once_published_and_detaches_on_signal(
    key: str, picture: Path, puts: list[Running], signum: int
) -> None:
    put = start_put(puts, picture, key)
    line = put.line()
    assert line.startswith(f"Published {picture} (97x61) under key {key!r}")
    # It is in shared memory now, and stays there while put waits.
    assert ipc.read_image(key=key).tobytes() == load_image(picture).image.tobytes()
    assert ipc.info(key=key).writer_pid == put.proc.pid
    assert read_with_get(key, picture.parent / "copy.png") == load_image(picture).image.tobytes()
    assert put.proc.poll() is None
    assert files_for(key) != []
    status, rest, stderr = put.stop(signum)
    assert (status, rest, stderr) == (0, [], "")
    assert files_for(key) == []


def test_killed_put_leaves_an_orphan_that_the_next_get_removes_saying_nothing_is_published(
    key: str, picture: Path, puts: list[Running]
) -> None:
    put = start_put(puts, picture, key)
    assert put.line().startswith(f"Published {picture} (97x61) under key {key!r}")
    assert put.kill()[0] == KILLED  # SIGKILL, or TerminateProcess on Windows: no detach
    assert files_for(key) != []  # its files (on Windows, its lock file) outlive it
    result = tkshm("get", "--key", key, "-o", str(picture.parent / "copy.png"))
    assert_one_line_error(result, "nothing is published")  # never the killed put's image
    assert files_for(key) == []


def read_with_get(key: str, out: Path) -> bytes:
    """Read the image in yet another process: ``tkshm get`` to a PNG."""
    result = tkshm("get", "--key", key, "-o", str(out))
    assert result.returncode == 0, result.stderr
    with Image.open(out) as saved:
        return saved.convert("RGBA").tobytes()


def test_second_put_under_the_same_key_overwrites_and_both_stay_attached(
    key: str, picture: Path, tmp_path: Path, puts: list[Running]
) -> None:
    other = tmp_path / "other.png"
    sample("L", 20, 30, 9).save(other)
    first = start_put(puts, picture, key)
    first.line()
    second = start_put(puts, other, key)
    assert "generation 2" in second.line()
    assert ipc.read_image(key=key).tobytes() == load_image(other).image.tobytes()
    assert first.stop(signal.SIGINT)[0] == STOPPED
    assert ipc.read_image(key=key).size == (20, 30)  # the second still holds it
    assert second.stop(signal.SIGTERM)[0] == STOPPED
    assert files_for(key) == []


# -- get ---------------------------------------------------------------------------------
@pytest.mark.parametrize("extension", ["png", "tiff"])
def test_get_saves_the_published_image_exactly_in_a_lossless_format(
    key: str, picture: Path, tmp_path: Path, puts: list[Running], extension: str
) -> None:
    start_put(puts, picture, key).line()
    out = tmp_path / f"copy.{extension}"
    result = tkshm("get", "--key", key, "-o", str(out))
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"Saved 97x61 image to {out}.\n"
    with Image.open(out) as saved:
        assert saved.convert("RGBA").tobytes() == load_image(picture).image.tobytes()


def test_get_saves_jpeg_without_alpha(key: str, tmp_path: Path, puts: list[Running]) -> None:
    source = tmp_path / "flat.png"
    Image.new("RGBA", (40, 30), (200, 100, 50, 255)).save(source)
    start_put(puts, source, key).line()
    out = tmp_path / "copy.jpg"
    result = tkshm("get", "--key", key, "-o", str(out))
    assert (result.returncode, result.stderr) == (0, "")
    with Image.open(out) as saved:
        assert (saved.format, saved.mode, saved.size) == ("JPEG", "RGB", (40, 30))
        # JPEG is lossy: a flat colour comes back within a few levels.
        assert all(abs(a - b) <= 3 for a, b in zip(saved.getpixel((20, 15)), (200, 100, 50), strict=True))


def test_get_with_nothing_published_says_how_to_publish(key: str, tmp_path: Path) -> None:
    out = tmp_path / "copy.png"
    line = assert_one_line_error(tkshm("get", "--key", key, "-o", str(out)))
    assert (
        line
        == f"tkshm: nothing is published under key {key!r}; publish one with `tkshm put --key {key} IMAGE`."
    )
    assert "Load an image first" not in line  # the window's sentence, not the command line's
    assert not out.exists()
    assert files_for(key) == []


def test_nothing_published_under_the_default_key_suggests_plain_put(tmp_path: Path) -> None:
    line = assert_one_line_error(tkshm("get", "-o", str(tmp_path / "copy.png")))
    assert line == "tkshm: nothing is published under key 'tkshm'; publish one with `tkshm put IMAGE`."


def test_get_to_an_unknown_format_fails_with_one_line(
    key: str, picture: Path, tmp_path: Path, puts: list[Running]
) -> None:
    start_put(puts, picture, key).line()
    assert_one_line_error(tkshm("get", "--key", key, "-o", str(tmp_path / "copy.nope")), "copy.nope")
    assert_one_line_error(tkshm("get", "--key", key, "-o", str(tmp_path / "no-dir" / "a.png")), "a.png")


# -- info ---------------------------------------------------------------------------------
def test_info_shows_the_header_fields(key: str, picture: Path, puts: list[Running]) -> None:
    put = start_put(puts, picture, key)
    put.line()
    result = tkshm("info", "--key", key)
    assert (result.returncode, result.stderr) == (0, "")
    rows = {line[:11].strip(): line[12:] for line in result.stdout.splitlines()}  # "label      value"
    assert rows["key"] == key
    assert rows["state"] == "ready"
    assert rows["in use"] == "yes"
    assert rows["generation"] == "1"
    assert rows["image"] == f"97x61 RGBA, {97 * 61 * 4:,} bytes"
    assert rows["writer pid"] == str(put.proc.pid)
    assert rows["path"] == ipc.info(key=key).path


def test_info_json_has_every_field(key: str, picture: Path, puts: list[Running]) -> None:
    put = start_put(puts, picture, key)
    put.line()
    result = tkshm("info", "--json", "--key", key)
    assert (result.returncode, result.stderr) == (0, "")
    fields = json.loads(result.stdout)
    assert fields == ipc.info(key=key).as_dict()
    assert (fields["width"], fields["height"], fields["state"]) == (97, 61, "ready")
    assert (fields["writer_pid"], fields["in_use"], fields["key"]) == (put.proc.pid, True, key)


def test_info_with_nothing_published_fails_with_one_line(key: str) -> None:
    for args in (["info", "--key", key], ["info", "--json", "--key", key]):
        assert_one_line_error(tkshm(*args), f"nothing is published under key {key!r}", "`tkshm put --key")


# -- list and clean --------------------------------------------------------------------------
def make_one_in_use_and_one_orphan(key: str, picture: Path, puts: list[Running]) -> tuple[Running, str]:
    alive = start_put(puts, picture, key + "-alive")
    alive.line()
    doomed = start_put(puts, picture, key)
    doomed.line()
    doomed.kill()  # SIGKILL or TerminateProcess: no detach, so its segment is left as an orphan
    return alive, key


def test_list_shows_segments_in_use_and_orphaned(
    key: str, picture: Path, tmp_path: Path, puts: list[Running]
) -> None:
    alive, orphan = make_one_in_use_and_one_orphan(key, picture, puts)
    result = tkshm("list", "--json")
    assert (result.returncode, result.stderr) == (0, "")
    listed = {entry["name"]: entry for entry in json.loads(result.stdout)}
    dead, live = ipc.native_name(orphan), ipc.native_name(key + "-alive")
    assert set(listed) == {dead, live}
    assert listed[dead]["in_use"] is False
    assert listed[live]["key"] == key + "-alive"
    assert (listed[live]["in_use"], listed[live]["state"]) == (True, "ready")
    assert listed[live]["writer_pid"] == alive.proc.pid
    # On POSIX the orphan's header is still there; on Windows it went with the mappings.
    if WINDOWS:
        assert (listed[dead]["key"], listed[dead]["state"]) == (None, "gone")
    else:
        assert (listed[dead]["key"], listed[dead]["state"]) == (orphan, "ready")

    text = tkshm("list")
    assert (text.returncode, text.stderr) == (0, "")
    header, *rows = text.stdout.splitlines()
    assert header.split() == ["KEY", "STATE", "IN", "USE", "IMAGE", "GENERATION", "PATH"]
    rows.sort()
    assert len(rows) == 2
    (orphaned,) = [row.split() for row in rows if " orphaned " in row]
    (in_use,) = [row.split() for row in rows if " orphaned " not in row]
    if WINDOWS:  # named by its native name: the key and image were in the mappings, now gone
        assert orphaned[:5] == [dead, "gone", "orphaned", "0x0", "0"], orphaned
    else:
        assert orphaned[:5] == [orphan, "ready", "orphaned", "97x61", "1"], orphaned
    assert in_use[:5] == [key + "-alive", "ready", "yes", "97x61", "1"], in_use
    # Listing does not read the orphan: a reader afterwards gets "not found".
    assert_one_line_error(
        tkshm("get", "--key", orphan, "-o", str(tmp_path / "x.png")), "nothing is published"
    )


def test_list_with_no_segments_says_so() -> None:
    result = tkshm("list")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"No segments in {os.environ['TKSHM_DIR']}.\n"
    assert json.loads(tkshm("list", "--json").stdout) == []


def test_clean_removes_orphans_but_never_a_segment_in_use(
    key: str, picture: Path, puts: list[Running]
) -> None:
    alive, orphan = make_one_in_use_and_one_orphan(key, picture, puts)
    result = tkshm("clean")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"Removed {orphan_path(orphan)}\nRemoved 1 orphaned segment.\n"
    assert files_for(orphan) == []
    assert [s.key for s in ipc.list_segments()] == [key + "-alive"]
    assert ipc.read_image(key=key + "-alive").size == (97, 61)
    again = tkshm("clean")
    assert again.stdout == "Removed 0 orphaned segments.\n"
    assert alive.stop(signal.SIGINT)[0] == STOPPED
    assert ipc.list_segments() == []


# -- bad input --------------------------------------------------------------------------------
def _png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def _bad_file(tmp_path: Path, kind: str) -> str:
    path = tmp_path / f"bad-{kind}.png"
    if kind == "missing":
        return str(tmp_path / "nowhere.png")
    if kind == "folder":
        return str(tmp_path)
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "not-an-image":
        path.write_text("this is a text file, not a picture\n")
    elif kind == "truncated-png":
        full = tmp_path / "full.png"
        sample("RGB", 300, 200, 1).save(full)
        path.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    elif kind == "truncated-jpeg":
        full = tmp_path / "full.jpg"
        sample("RGB", 300, 200, 1).save(full, quality=95)
        path = tmp_path / "bad.jpg"
        path.write_bytes(full.read_bytes()[: full.stat().st_size // 3])
    elif kind == "too-large":
        side = int(MAX_PIXELS**0.5) + 10  # its header promises more pixels than tkshm decodes
        path.write_bytes(_png_header_only(side, side))
    elif kind == "huge-bomb":
        path.write_bytes(_png_header_only(60_000, 60_000))
    return str(path)


BAD_FILES = [
    "missing",
    "folder",
    "empty",
    "not-an-image",
    "truncated-png",
    "truncated-jpeg",
    "too-large",
    "huge-bomb",
]


@pytest.mark.parametrize("kind", BAD_FILES)
def test_put_of_a_bad_file_gives_one_line_on_stderr_and_publishes_nothing(
    key: str, tmp_path: Path, kind: str
) -> None:
    bad = _bad_file(tmp_path, kind)
    line = assert_one_line_error(tkshm("put", "--key", key, bad))
    assert line.startswith("tkshm: ")
    assert os.path.basename(bad) in line
    assert files_for(key) == []


BAD_USAGE = {
    "unknown-option": ["--bogus"],
    "unknown-option-after-command": ["put", "--bogus", "x.png"],
    "unknown-command": ["frobnicate"],
    "put-without-image": ["put"],
    "get-without-output": ["get"],
    "info-extra-argument": ["info", "extra"],
    "key-without-value": ["list", "--key"],
}


@pytest.mark.parametrize("kind", list(BAD_USAGE))
def test_bad_usage_gives_one_line_on_stderr(kind: str) -> None:
    result = tkshm(*BAD_USAGE[kind])
    line = assert_one_line_error(result, "--help")
    assert result.returncode == 2
    assert line.startswith("tkshm")


@pytest.mark.parametrize(
    ("bad", "message"),
    [("", "non-empty string"), ("k" * 10_000, "use at most 255")],
    ids=["empty-key", "10000-char-key"],
)
@pytest.mark.parametrize("subcommand", [["get", "-o", "x.png"], ["info"], ["put", "{picture}"]])
def test_unusable_key_gives_one_line_on_stderr(
    picture: Path, bad: str, message: str, subcommand: list[str]
) -> None:
    args = [arg.replace("{picture}", str(picture)) for arg in subcommand]
    assert_one_line_error(tkshm(args[0], "--key", bad, *args[1:]), message)


def test_hostile_key_works_end_to_end(picture: Path, tmp_path: Path, puts: list[Running]) -> None:
    hostile = "../../etc/passwd"
    start_put(puts, picture, hostile).line()
    assert sorted(os.listdir(os.environ["TKSHM_DIR"])) == directory_entries(hostile)
    out = tmp_path / "copy.png"
    assert tkshm("get", "--key", hostile, "-o", str(out)).returncode == 0
    with Image.open(out) as saved:
        assert saved.convert("RGBA").tobytes() == load_image(picture).image.tobytes()


@pytest.mark.parametrize("subcommand", ["put", "get", "info", "list", "gui", "demo"])
def test_every_subcommand_that_uses_a_key_has_help_with_the_key_option(subcommand: str) -> None:
    result = tkshm(subcommand, "--help")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith(f"usage: tkshm {subcommand}")
    assert "--key KEY" in result.stdout


# -- without tkinter ---------------------------------------------------------------------------
def _report(tmp_path: Path) -> tuple[dict[str, str], Path]:
    path = tmp_path / "tkinter-report.json"
    return {"TKSHM_TEST_REPORT": str(path)}, path


def _tkinter_use(report: Path) -> dict[str, list[str]]:
    used: dict[str, list[str]] = json.loads(report.read_text())
    report.unlink()
    return used


def test_the_no_tkinter_simulation_really_hides_tkinter(tmp_path: Path) -> None:
    env, report = _report(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", NO_TKINTER + "import tkinter"],
        capture_output=True, text=True, timeout=DEADLINE, env={**os.environ, **env},
    )  # fmt: skip
    assert result.returncode != 0
    assert "ModuleNotFoundError: No module named 'tkinter'" in result.stderr
    assert _tkinter_use(report) == {"attempts": ["tkinter"], "loaded": []}


def test_ipc_imports_on_a_python_without_tkinter(tmp_path: Path) -> None:
    env, report = _report(tmp_path)
    code = NO_TKINTER + "import tkshm.ipc, tkshm.cli, tkshm.images, tkshm.header, tkshm.errors; print('ok')"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        env={**os.environ, **env},
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "ok\n", "")
    assert _tkinter_use(report) == {"attempts": [], "loaded": []}


def test_every_command_but_the_window_works_without_tkinter(
    key: str, picture: Path, tmp_path: Path, puts: list[Running]
) -> None:
    env, report = _report(tmp_path)
    put = start_put(puts, picture, key, no_tkinter=True, env=env)
    put.line()
    out = tmp_path / "copy.png"
    commands = [
        ["get", "--key", key, "-o", str(out)], ["info", "--key", key], ["info", "--json", "--key", key],
        ["list"], ["list", "--json"], ["clean"],
    ]  # fmt: skip
    for args in commands:
        result = tkshm(*args, no_tkinter=True, env=env)
        assert (result.returncode, result.stderr) == (0, ""), args
        assert _tkinter_use(report) == {"attempts": [], "loaded": []}, args
    with Image.open(out) as saved:
        assert saved.convert("RGBA").tobytes() == load_image(picture).image.tobytes()
    assert put.stop(signal.SIGTERM)[0] == STOPPED
    if not WINDOWS:  # a terminated put runs no atexit hook, so it writes no report
        assert _tkinter_use(report) == {"attempts": [], "loaded": []}
    assert files_for(key) == []


def test_window_without_tkinter_explains_in_one_line(tmp_path: Path) -> None:
    env, report = _report(tmp_path)
    assert_one_line_error(tkshm("gui", no_tkinter=True, env=env), "tkinter")
    assert _tkinter_use(report)["loaded"] == []


@posix_only("DISPLAY is X11's: Windows always has a desktop, and under Wine an empty DISPLAY opens one")
@pytest.mark.parametrize("subcommand", ["gui", "demo"])
def test_window_without_a_display_explains_in_one_line(subcommand: str) -> None:
    assert_one_line_error(tkshm(subcommand, env={"DISPLAY": ""}), "Cannot open a window")


def test_assets_are_found_in_a_source_checkout_that_is_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.resources

    import tkshm

    def not_installed(package: str) -> object:
        raise ModuleNotFoundError(f"No module named {package!r}")

    monkeypatch.setattr(importlib.resources, "files", not_installed)
    for name in ("tkshm.png", "samples/sunset.jpg", "samples/orbit.gif"):
        assert Path(tkshm.asset(name)).is_file(), name


# -- one line means one line -------------------------------------------------------------------
@posix_only("Windows file names cannot contain a newline")
def test_put_prints_exactly_one_line_even_for_a_file_name_with_a_newline(
    key: str, tmp_path: Path, puts: list[Running]
) -> None:
    odd = tmp_path / "two\nlines.png"
    sample("RGB", 5, 5, 1).save(odd, format="PNG")
    put = start_put(puts, odd, key)
    assert put.line().startswith("Published ")
    status, rest, stderr = put.stop(signal.SIGTERM)
    assert (status, rest, stderr) == (0, [], "")


def test_list_prints_one_row_per_segment_even_for_a_key_with_a_newline(
    key: str, picture: Path, puts: list[Running]
) -> None:
    start_put(puts, picture, key + "\nsecond line").line()
    result = tkshm("list")
    assert (result.returncode, result.stderr) == (0, "")
    assert len(result.stdout.splitlines()) == 2, result.stdout  # the header and one row


# -- a closed pipe (issue: "tkshm info | head -1" printed a BrokenPipeError traceback) ----------
@posix_only("Windows reports a closed pipe as EINVAL, not EPIPE")
@pytest.mark.parametrize(
    "args",
    [
        ["info"],
        ["info", "--json"],
        ["list"],
        ["list", "--json"],
        ["get", "-o", "-"],
        ["--help"],
        ["list", "--help"],
    ],
    ids=["info", "info-json", "list", "list-json", "get-to-stdout", "help", "list-help"],
)
def test_output_into_a_pipe_nobody_reads_ends_quietly(
    tkshm_key: str, tkshm_publisher: Publish, args: list[str]
) -> None:
    tkshm_publisher(sample("RGBA", 300, 200, 3))
    # The pipe's reading end is closed before the command starts, so its first write fails:
    # what "| head -1" does sooner or later, and "| true" at once, every time.
    reading, writing = os.pipe()
    os.close(reading)
    try:
        result = subprocess.run(
            command(*args, "--key", tkshm_key),
            stdout=writing,
            stderr=subprocess.PIPE,
            text=True,
            timeout=DEADLINE,
        )
    finally:
        os.close(writing)
    assert result.stderr == ""  # no traceback, and no "Exception ignored ... BrokenPipeError" at exit
    # 1, the Python documentation's choice: the output was cut short. (argparse itself ignores
    # a failed write of --help and exits 0.)
    assert result.returncode == (0 if "--help" in args else 1)


@posix_only("a shell pipeline with head")
def test_info_piped_into_head_prints_the_first_line_only(tkshm_key: str, tkshm_publisher: Publish) -> None:
    tkshm_publisher(sample("RGB", 30, 20, 1))
    for _ in range(5):  # "often", said the issue: try a few times
        result = subprocess.run(
            f"{shlex.join(command('info', '--key', tkshm_key))} | head -1",
            shell=True, capture_output=True, text=True, timeout=DEADLINE,
        )  # fmt: skip
        assert (result.stdout, result.stderr) == (f"key         {tkshm_key}\n", "")


# -- get -o -------------------------------------------------------------------------------
def test_get_to_dash_writes_a_png_to_standard_output(
    tkshm_key: str, tkshm_publisher: Publish, picture: Path
) -> None:
    tkshm_publisher(picture)
    result = subprocess.run(
        command("get", "--key", tkshm_key, "-o", "-"), capture_output=True, timeout=DEADLINE
    )
    assert (result.returncode, result.stderr) == (0, b"")
    with Image.open(io.BytesIO(result.stdout)) as saved:
        assert saved.format == "PNG"
        assert saved.convert("RGBA").tobytes() == load_image(picture).image.tobytes()


@posix_only("needs a pseudo-terminal")
def test_get_to_dash_refuses_to_write_binary_to_a_terminal(tkshm_key: str, tkshm_publisher: Publish) -> None:
    import pty

    tkshm_publisher(sample("RGB", 8, 8, 1))
    primary, terminal = pty.openpty()
    try:
        result = subprocess.run(
            command("get", "--key", tkshm_key, "-o", "-"), stdout=terminal, stderr=subprocess.PIPE,
            text=True, timeout=DEADLINE,
        )  # fmt: skip
    finally:
        os.close(terminal)
        os.close(primary)
    assert result.returncode == 1
    assert result.stderr.startswith("tkshm: Refusing to write a PNG to the terminal")
    assert len(result.stderr.splitlines()) == 1


def test_get_to_a_directory_says_it_is_one(tkshm_key: str, tkshm_publisher: Publish, tmp_path: Path) -> None:
    tkshm_publisher(sample("RGB", 8, 8, 1))
    line = assert_one_line_error(tkshm("get", "--key", tkshm_key, "-o", str(tmp_path)))
    example = tmp_path / "copy.png"
    assert (
        line == f"tkshm: Cannot save to {tmp_path}: it is a directory; name a file in it, such as {example}."
    )


@pytest.mark.parametrize("name", ["copy.nope", "copy", "copy.icns"])
def test_get_to_a_name_without_a_writable_extension_lists_the_formats_once(
    tkshm_key: str, tkshm_publisher: Publish, tmp_path: Path, name: str
) -> None:
    tkshm_publisher(sample("RGB", 8, 8, 1))
    line = assert_one_line_error(tkshm("get", "--key", tkshm_key, "-o", str(tmp_path / name)), name)
    assert "()" not in line and "( " not in line
    extensions = re.findall(r"\.[a-z0-9]+(?=[, ])", line.split("one of ", 1)[1])
    assert {".png", ".jpg", ".tiff", ".webp", ".ico"} <= set(extensions)
    assert len(extensions) == len(set(extensions)), "an extension is named twice"
    assert ".icns" not in extensions  # ICNS resizes to fixed squares: never the image whole
    assert line.count(". ") == 0 and line.endswith("standard output."), "one sentence"
    assert not (tmp_path / name).exists()


def test_get_refuses_an_ico_too_small_for_the_image_instead_of_shrinking_it(
    tkshm_key: str, tkshm_publisher: Publish, tmp_path: Path
) -> None:
    tkshm_publisher(sample("RGBA", 300, 200, 3))
    out = tmp_path / "icon.ico"
    assert_one_line_error(tkshm("get", "--key", tkshm_key, "-o", str(out)), "at most 256x256", "300x200")
    assert not out.exists()


def test_get_saves_an_ico_that_fits_whole_and_exactly(
    tkshm_key: str, tkshm_publisher: Publish, picture: Path, tmp_path: Path
) -> None:
    tkshm_publisher(picture)
    out = tmp_path / "icon.ico"
    result = tkshm("get", "--key", tkshm_key, "-o", str(out))
    assert (result.returncode, result.stderr, result.stdout) == (0, "", f"Saved 97x61 image to {out}.\n")
    with Image.open(out) as saved:
        assert saved.size == (97, 61)  # Pillow's default icon sizes would have made it 48x30
        assert saved.convert("RGBA").tobytes() == load_image(picture).image.tobytes()


def test_get_to_jpeg_says_it_dropped_transparency_only_if_there_was_some(
    tkshm_key: str, tkshm_publisher: Publish, picture: Path, tmp_path: Path
) -> None:
    tkshm_publisher(picture)  # sample("RGBA", ...) has transparent pixels
    result = tkshm("get", "--key", tkshm_key, "-o", str(tmp_path / "a.jpg"))
    assert result.stdout.endswith(", without transparency (JPEG cannot store it).\n")


# -- options that do something, or are refused ---------------------------------------------
REFUSED_OPTIONS = {
    "clean-key": (["clean", "--key", "k"], "clean removes every orphaned segment and takes no --key"),
    "key-clean": (["--key", "k", "clean"], "clean removes every orphaned segment and takes no --key"),
    "demo-trace": (["demo", "--trace"], "the demo always shows the trace"),
    "trace-demo": (["--trace", "demo"], "the demo always shows the trace"),
    "gui-lang-fr": (["gui", "--lang", "fr"], "--lang fr: the window speaks en and zh_CN only"),
    "lang-fr": (["--lang", "fr"], "--lang fr: the window speaks en and zh_CN only"),
    "demo-lang-fr": (["demo", "--lang", "fr"], "--lang fr: the window speaks en and zh_CN only"),
    "lang-put": (
        ["--lang", "zh_CN", "put", "x.png"],
        "--lang chooses the language of the window; put opens none",
    ),
    "key-install-desktop": (["--key", "k", "install-desktop"], "install-desktop takes no --key"),
}


@pytest.mark.parametrize("kind", list(REFUSED_OPTIONS))
def test_an_option_the_command_would_ignore_is_refused_in_one_line(kind: str) -> None:
    args, says = REFUSED_OPTIONS[kind]
    result = tkshm(*args, env={"DISPLAY": ""})  # were it accepted, no window could open anyway
    assert result.returncode == 2
    assert_one_line_error(result, says)


def test_list_with_a_key_lists_only_that_keys_segment(tkshm_key: str, tkshm_publisher: Publish) -> None:
    tkshm_publisher(sample("RGB", 8, 8, 1))
    tkshm_publisher(sample("RGB", 9, 9, 2), key=tkshm_key + "-other")
    result = tkshm("list", "--key", tkshm_key)
    assert (result.returncode, result.stderr) == (0, "")
    _header, *rows = result.stdout.splitlines()
    assert [row.split()[0] for row in rows] == [tkshm_key]
    listed = json.loads(tkshm("list", "--json", "--key", tkshm_key + "-other").stdout)
    assert [entry["key"] for entry in listed] == [tkshm_key + "-other"]
    nothing = tkshm("list", "--key", "nobody-uses-this-key")
    assert nothing.stdout == f"No segments under key 'nobody-uses-this-key' in {os.environ['TKSHM_DIR']}.\n"


def test_every_subcommand_has_a_one_line_description() -> None:
    overview = tkshm("--help", env={"COLUMNS": "100"}).stdout
    commands = overview.split("\n  COMMAND\n", 1)[1].split("\n\n", 1)[0]
    # argparse moves the help of a name longer than its column (uninstall-desktop) to the
    # next line, deeper indented; that is still one line of text.
    commands = re.sub(r"\n {10,}", " ", commands)
    summaries = dict(line.split(None, 1) for line in commands.splitlines())
    names = [
        "put", "play", "watch", "record", "get", "info", "list", "clean", "gui", "demo", "install-desktop",
        "uninstall-desktop",
    ]  # fmt: skip
    assert list(summaries) == names
    for name in names:
        result = tkshm(name, "--help", env={"COLUMNS": "100"})
        assert result.returncode == 0, name
        description = result.stdout.split("\n\n")[1]
        assert " ".join(description.split()).endswith("."), (name, description)
        assert summaries[name].endswith("."), (name, summaries[name])


def test_gui_follow_opens_the_window_following_the_key(key: str, peer: Peer) -> None:
    """``tkshm-gui --follow`` (what the demo's right window is started with): the window
    opens with Follow changes on and shows what is published, and then each new image."""
    peer.call("publish", key=key, width=32, height=24, seed=5)
    window = Running(command("gui", "--key", key, "--lang", "en", "--follow"), env={"TKSHM_TEST_EVENTS": "1"})
    try:
        following = f"LABEL Following key {key}: showing generation {{}} from shared memory."
        lines = [window.line().rstrip("\n") for _ in range(2)]  # (each within DEADLINE)
        while following.format(1) not in lines:
            assert len(lines) < 100, lines
            lines.append(window.line().rstrip("\n"))
        peer.call("write", key=key, width=32, height=24, seed=6)
        while following.format(2) not in lines:
            assert len(lines) < 200, lines
            lines.append(window.line().rstrip("\n"))
    finally:
        window.kill()  # (nothing to leave: the peer holds the segment too)
        for stream in (window.proc.stdout, window.proc.stderr):
            if stream is not None:
                stream.close()


def test_window_languages_are_what_the_catalogues_provide() -> None:
    from tkshm.cli import available_languages

    assert available_languages() == ["en", "zh_CN"]
    help_text = tkshm("gui", "--help", env={"COLUMNS": "200"}).stdout
    assert "language of the window: en or zh_CN" in help_text


# -- info on an orphan ---------------------------------------------------------------------
def test_info_reports_an_orphan_without_removing_it(tkshm_key: str, tkshm_publisher: Publish) -> None:
    publisher = tkshm_publisher(sample("RGB", 30, 20, 4))
    publisher.kill()  # SIGKILL / TerminateProcess: no detach, so an orphan stays
    before = ipc.remains(tkshm_key)
    assert before

    result = tkshm("info", "--key", tkshm_key)
    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    rows = {line[:11].strip(): line[12:] for line in lines[:-1]}
    assert (rows["key"], rows["in use"]) == (tkshm_key, "no (orphaned)")
    if not WINDOWS:  # on Windows only the lock file is left, with no header to show
        assert rows["image"].split()[0] == "30x20"
    assert "'tkshm clean' would remove it" in lines[-1]
    fields = json.loads(tkshm("info", "--json", "--key", tkshm_key).stdout)
    assert (fields["in_use"], fields["key"]) == (False, tkshm_key)
    assert ipc.remains(tkshm_key) == before  # shown, not removed
    assert [s.in_use for s in ipc.list_segments()] == [False]

    assert tkshm("clean").stdout.endswith("Removed 1 orphaned segment.\n")
    assert ipc.remains(tkshm_key) == []


def test_info_on_a_segment_in_use_is_unchanged_by_the_orphan_check(
    tkshm_key: str, tkshm_publisher: Publish
) -> None:
    publisher = tkshm_publisher(sample("RGB", 30, 20, 4))
    info = ipc.info(key=tkshm_key)
    assert (info.in_use, info.writer_pid, info.generation) == (True, publisher.pid, publisher.generation)


# -- what C libraries print while decoding -------------------------------------------------
def test_decoder_output_on_descriptor_2_is_dropped_when_the_file_loads(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], picture: Path
) -> None:
    from tkshm import cli

    def chatty(path: str) -> object:
        os.write(2, b"TIFFReadDirectory: Warning, Unknown field with tag 65000 (0xfde8) encountered.\n")
        return load_image(path)

    monkeypatch.setattr(cli, "load_image", chatty)
    assert cli._load_quietly(str(picture)).image.size == (97, 61)
    assert capfd.readouterr().err == ""


def test_decoder_output_on_descriptor_2_is_folded_into_the_one_sentence(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from tkshm import cli
    from tkshm.errors import ImageError

    def failing(path: str) -> object:
        os.write(2, b"TIFFFillStrip: Read error on strip 0; got 10 bytes, expected 40.\n")
        os.write(2, b"TIFFFillStrip: Read error on strip 0; got 10 bytes, expected 40.\n")
        raise ImageError(f"{path} is damaged or truncated and cannot be decoded (decoder error -2).", path)

    monkeypatch.setattr(cli, "load_image", failing)
    with pytest.raises(ImageError) as caught:
        cli._load_quietly("x.tiff")
    assert str(caught.value) == (
        "x.tiff is damaged or truncated and cannot be decoded (decoder error -2); "
        "the decoder reported: TIFFFillStrip: Read error on strip 0; got 10 bytes, expected 40."
    )
    assert capfd.readouterr().err == ""
