"""The ``tkshm`` command line, run as a user runs it: ``python -m tkshm ...`` in a subprocess.

Every test runs in a private segment directory (``TKSHM_DIR``, in /dev/shm), because ``list``
and ``clean`` act on *all* of this user's segments. Errors must be one line on stderr, never
a traceback; ``put`` stays attached until a signal; and nothing but the window needs tkinter.

On Windows a test cannot send ``put`` Ctrl+C or SIGTERM (see tests/commands.py): the signal
tests are POSIX-only, and ``put`` is ended there with TerminateProcess, after which the lock
file it leaves is removed as the next attach would. A killed ``put`` is tested on both.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from commands import Running
from conftest import files_for
from patterns import sample
from PIL import Image
from platforms import KILLED, STOPPED, WINDOWS, directory_entries, orphan_path, posix_only

from tkshm import ipc
from tkshm.images import MAX_PIXELS, load_image

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
SIGNALS = posix_only("no Ctrl+C or SIGTERM can be sent to a child without a console on Windows")


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


def test_killed_put_leaves_an_orphan_that_the_next_get_removes_saying_load_an_image_first(
    key: str, picture: Path, puts: list[Running]
) -> None:
    put = start_put(puts, picture, key)
    assert put.line().startswith(f"Published {picture} (97x61) under key {key!r}")
    assert put.kill()[0] == KILLED  # SIGKILL, or TerminateProcess on Windows: no detach
    assert files_for(key) != []  # its files (on Windows, its lock file) outlive it
    result = tkshm("get", "--key", key, "-o", str(picture.parent / "copy.png"))
    assert_one_line_error(result, "Load an image first")  # never the killed put's image
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


def test_get_with_nothing_published_says_to_load_an_image_first(key: str, tmp_path: Path) -> None:
    out = tmp_path / "copy.png"
    assert_one_line_error(tkshm("get", "--key", key, "-o", str(out)), "Load an image first")
    assert not out.exists()
    assert files_for(key) == []


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
    assert_one_line_error(tkshm("info", "--key", key), "Load an image first")
    assert_one_line_error(tkshm("info", "--json", "--key", key), "Load an image first")


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
    lines = sorted(text.stdout.splitlines())
    assert len(lines) == 2
    (orphaned,) = [line for line in lines if " orphaned " in line]
    (in_use,) = [line for line in lines if line != orphaned]
    if WINDOWS:  # named by its native name: the key was in the header
        assert orphaned.startswith(dead) and " gone " in orphaned, orphaned
    else:
        assert orphaned.startswith(orphan) and "97x61" in orphaned, orphaned
    assert in_use.startswith(key + "-alive") and " in use " in in_use, in_use
    # Listing does not read the orphan: a reader afterwards gets "not found".
    assert_one_line_error(tkshm("get", "--key", orphan, "-o", str(tmp_path / "x.png")), "Load an image first")


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
    assert result.stdout == f"Removed {orphan_path(orphan)}\nRemoved 1 orphaned file(s).\n"
    assert files_for(orphan) == []
    assert [s.key for s in ipc.list_segments()] == [key + "-alive"]
    assert ipc.read_image(key=key + "-alive").size == (97, 61)
    again = tkshm("clean")
    assert again.stdout == "Removed 0 orphaned file(s).\n"
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


@pytest.mark.parametrize("subcommand", ["put", "get", "info", "list", "clean", "gui"])
def test_every_subcommand_has_help_with_the_key_option(subcommand: str) -> None:
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
    for name in ("tkshm.png", "samples/sunset.jpg"):
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
    assert len(result.stdout.splitlines()) == 1, result.stdout
