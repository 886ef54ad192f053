"""Qt's own protocol against the real thing: PySide6's ``QSharedMemory`` on the other side.

Each test runs ``tests/qt_peer.py`` (PySide6 doing what Qt's example's two slots do) as a
separate process, with both of Qt's key styles: ``legacy`` keys (``--qt 5``) and ``native``
keys (``--qt 6``). On Unix they are System V and POSIX objects; on Windows both are a named
file mapping and a named semaphore, under different names. Images go both ways, pixel for
pixel; Qt's semaphore is honoured, with tkshm's timeout; what a killed Qt program leaves is
repaired; and anything at Qt's key that is not a QDataStream'd image gets one sentence.

Every test gets its own key and its own Qt temporary directory (``TMPDIR``, where Qt 5 keeps
its key files on Unix), and leaves nothing behind: no System V object, ``/dev/shm`` entry or
key file on Unix, no file mapping or semaphore on Windows.
"""

from __future__ import annotations

import ast
import io
import os
import re
import signal
import struct
import subprocess
import sys
import time
import tkinter as tk
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from commands import Running
from patterns import pattern
from PIL import Image
from platforms import KILLED, STOPPED, WINDOWS, posix_only, windows_only
from tk_fixtures import App, pump

sysv_ipc = pytest.importorskip("sysv_ipc") if not WINDOWS else None
posix_ipc = pytest.importorskip("posix_ipc") if not WINDOWS else None

if not WINDOWS:
    from qt_objects import remove_sysv  # (needs sysv_ipc, checked above)

from tkshm import qt  # noqa: E402
from tkshm.errors import (  # noqa: E402
    CorruptSegmentError,
    ImageError,
    ImageTooLargeError,
    LockTimeoutError,
    SegmentInUseError,
    UnsafePathError,
)
from tkshm.qt import keys, payload  # noqa: E402

QT_PEER = str(Path(__file__).with_name("qt_peer.py"))
STYLES = {5: "legacy", 6: "native"}
IDS = {5: "qt5-legacy-win", 6: "qt6-native-win"} if WINDOWS else {5: "qt5-legacy-sysv", 6: "qt6-native-posix"}


def versions(*which: int) -> pytest.MarkDecorator:
    """Run the test with ``qt_key`` in each of Qt's key styles named."""
    return pytest.mark.parametrize("qt_key", which, indirect=True, ids=[IDS[v] for v in which])


VERSIONS = versions(5, 6)


@dataclass
class QtKey:
    key: str
    version: int
    env: dict[str, str]  # TMPDIR for both sides

    @property
    def style(self) -> str:
        return STYLES[self.version]

    def peer(self, *args: str) -> Running:
        """qt_peer.py; one that waits (load, lock-and-wait) goes on until :func:`let_go`."""
        argv = [sys.executable, QT_PEER, args[0], self.key, self.style, *args[1:]]
        return Running(argv, env=self.env, stdin=True)

    @property
    def windows_names(self) -> tuple[str, str]:
        """The file mapping's and the semaphore's names on Windows, as Qt derives them."""
        if self.version == 5:
            return keys.legacy_name(self.key, "sharedmemory"), keys.legacy_name(self.key, "systemsem")
        return keys.native_windows_names(self.key)

    @property
    def semaphore(self) -> str:
        """Qt's semaphore as tkshm's sentences name it."""
        return self.windows_names[1] if WINDOWS else "/" + self.key

    def tkshm(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "tkshm", *args, "--qt", str(self.version), "--key", self.key]
        done = subprocess.run(
            argv, capture_output=True, text=True, env={**os.environ, **self.env}, timeout=60
        )
        if check:
            assert done.returncode == 0, done.stderr
        return done

    def leftovers(self) -> list[str]:
        if WINDOWS:  # kernel objects, which live while some process has a handle to them
            from tkshm import _mappings
            from tkshm.qt import win

            mapping, semaphore = self.windows_names
            return [f"file mapping {mapping}"] * _mappings.exists(mapping) + [
                f"semaphore {semaphore}"
            ] * win.semaphore_exists(semaphore)
        found = [p for p in os.listdir(self.env["TMPDIR"]) if p.startswith("qipc_")]
        for path in (f"/dev/shm/{self.key}", f"/dev/shm/sem.{self.key}"):
            if os.path.lexists(path):
                found.append(path)
        return found


@pytest.fixture
def qt_key(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[QtKey]:
    """A fresh key and Qt temporary directory; fails if anything of the key is left afterwards."""
    version = request.param
    tmpdir = tmp_path / "qt-tmp"
    tmpdir.mkdir(mode=0o700)
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    made = QtKey(f"tkshmTest{uuid.uuid4().hex[:10]}", version, {"TMPDIR": str(tmpdir)})
    yield made
    left = made.leftovers()
    # Qt 6 itself leaves /dev/shm/K on every exit (PySide6 as the loader): not tkshm's to judge.
    qt_left = [p for p in left if p == f"/dev/shm/{made.key}" and getattr(request.node, "qt_leaks", False)]
    for path in left:
        if path.startswith("/dev/shm/"):
            os.unlink(path)
    sysv_left = remove_sysv(made.key, str(tmpdir)) if not WINDOWS else []
    assert not [p for p in left if p not in qt_left] and not sysv_left, f"left behind: {left} {sysv_left}"


def leaks(request: pytest.FixtureRequest) -> None:
    """Mark the test as one where Qt 6 (PySide6) leaves its /dev/shm object, as Qt 6 does on
    Linux (on Windows the kernel removes what Qt leaves)."""
    request.node.qt_leaks = True


def let_go(peer: Running) -> None:
    """End a waiting qt_peer.py as Qt's example ends: it detaches, then exits."""
    status, _, err = peer.end_input()
    assert status == 0, err


def picture(alpha: bool) -> Image.Image:
    image = pattern(97, 61, 7)  # odd sizes: no row padding can hide
    if not alpha:
        image.putalpha(255)
    return image


# -- Qt's names -------------------------------------------------------------------------------
@VERSIONS
@pytest.mark.parametrize("tail", ["", " key-1 x", " Ünï ключ"], ids=["letters", "punctuation", "unicode"])
def test_tkshm_finds_qts_objects_by_qts_own_names(
    qt_key: QtKey, tail: str, request: pytest.FixtureRequest
) -> None:
    """Qt names its segment (``nativeKey()``) and holds its semaphore; tkshm derives both names
    from the key alone, attaches to that segment, and finds that semaphore taken."""
    leaks(request)
    qt_key.key += tail  # the fixture checks what is left under the key as it is at the end
    holder = qt_key.peer("names")
    try:
        word, _, literal = holder.line().strip().partition(" ")
        assert word == "NAMES", literal
        native_key = ast.literal_eval(literal)
        if WINDOWS:
            assert native_key == qt_key.windows_names[0]
        elif qt_key.version == 5:
            assert native_key == keys.legacy_key_file(qt_key.key, "sharedmemory")
        else:  # shm_open("K") and shm_open("/K") name the same /dev/shm/K
            assert "/" + native_key.lstrip("/") == keys.native_posix_name(qt_key.key)
        with qt.backend(qt_key.key, qt_key.version) as handle:
            assert handle.attach() >= 1
            with pytest.raises(LockTimeoutError), handle.lock(0.2):
                pass  # pragma: no cover - Qt holds the lock
    finally:
        let_go(holder)


# -- both ways, pixel for pixel ---------------------------------------------------------------
@VERSIONS
@pytest.mark.parametrize("alpha", [True, False], ids=["with-alpha", "opaque"])
def test_tkshm_put_is_displayed_by_qt_pixel_for_pixel(qt_key: QtKey, tmp_path: Path, alpha: bool) -> None:
    source, out = tmp_path / "source.png", tmp_path / "qt.png"
    picture(alpha).save(source)
    put = Running([sys.executable, "-m", "tkshm", "put", "--qt", str(qt_key.version), "--key", qt_key.key,
                   str(source)], env=qt_key.env)  # fmt: skip
    try:
        assert f"in Qt {qt_key.version}'s format" in put.line()
        shown = qt_key.peer("display", str(out))
        assert shown.line().startswith("SAVED 97x61")
        assert shown.finish()[0] == 0
    finally:
        status, _, err = put.stop(signal.SIGINT)
    assert status == STOPPED, err
    got = Image.open(out).convert("RGBA")
    assert got.tobytes() == picture(alpha).tobytes()


@VERSIONS
@pytest.mark.parametrize("alpha", [True, False], ids=["with-alpha", "opaque"])
def test_what_qt_loads_tkshm_get_saves_pixel_for_pixel(
    qt_key: QtKey, tmp_path: Path, alpha: bool, request: pytest.FixtureRequest
) -> None:
    leaks(request)
    source, out = tmp_path / "source.png", tmp_path / "got.png"
    picture(alpha).save(source)
    loader = qt_key.peer("load", str(source))
    try:
        assert loader.line().strip() == "READY"
        done = qt_key.tkshm("get", "-o", str(out), check=True)
        assert done.stdout.strip() == f"Saved 97x61 image to {out}."
    finally:
        let_go(loader)
    assert Image.open(out).convert("RGBA").tobytes() == picture(alpha).tobytes()


@VERSIONS
def test_the_library_publishes_and_reads_for_qt_both_ways(qt_key: QtKey, tmp_path: Path) -> None:
    image = picture(True)
    with qt.publish(image, qt_key.key, qt_key.version) as published:
        assert len(published.objects()) == 2
        out = tmp_path / "qt.png"
        shown = qt_key.peer("display", str(out))
        assert shown.line().startswith("SAVED")
        assert qt.read_image(qt_key.key, qt_key.version).tobytes() == image.tobytes()
    assert Image.open(out).convert("RGBA").tobytes() == image.tobytes()


# -- the lock ---------------------------------------------------------------------------------
@VERSIONS
def test_a_qt_process_holding_the_lock_for_a_second_delays_get_by_that_second(
    qt_key: QtKey, tmp_path: Path
) -> None:
    with qt.publish(picture(True), qt_key.key, qt_key.version):
        holder = qt_key.peer("hold", "1.0")
        assert holder.line().strip() == "LOCKED"
        started = time.monotonic()
        qt_key.tkshm("get", "-o", str(tmp_path / "got.png"), check=True)
        waited = time.monotonic() - started
        assert holder.line().strip() == "UNLOCKED"
        assert holder.finish()[0] == 0
    # The holder sleeps a whole second after saying LOCKED; the get cannot have copied before.
    assert waited >= 0.5, f"get took {waited:.2f} s: it did not wait for Qt's lock"


@VERSIONS
def test_a_lock_held_for_ever_is_waited_for_only_the_timeout(qt_key: QtKey) -> None:
    with qt.publish(picture(True), qt_key.key, qt_key.version):
        holder = qt_key.peer("lock-and-wait")
        try:
            assert holder.line().strip() == "LOCKED"
            started = time.monotonic()
            with pytest.raises(LockTimeoutError, match=re.escape("stayed taken for more than 0.3 s")):
                qt.read_image(qt_key.key, qt_key.version, timeout=0.3)
            assert time.monotonic() - started < 30  # bounded: never Qt's wait for ever
        finally:
            holder.kill()


@versions(5)
@posix_only("System V's SEM_UNDO; a Windows semaphore has none (see the test after next)")
def test_a_qt5_holder_killed_inside_lock_gives_the_lock_back(qt_key: QtKey) -> None:
    with qt.publish(picture(True), qt_key.key, 5):
        holder = qt_key.peer("lock-and-wait")
        assert holder.line().strip() == "LOCKED"
        holder.kill()  # SEM_UNDO: the kernel gives the semaphore back as the holder dies
        assert qt.read_image(qt_key.key, 5).tobytes() == picture(True).tobytes()


# -- crashes ----------------------------------------------------------------------------------
@VERSIONS
@posix_only("System V keeps a killed creator's segment, POSIX its semaphore; Windows keeps neither")
def test_after_a_qt_loader_is_killed_put_still_publishes(
    qt_key: QtKey, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    source = tmp_path / "source.png"
    picture(True).save(source)
    loader = qt_key.peer("load", str(source))
    assert loader.line().strip() == "READY"
    loader.kill()  # SIGKILL: Qt never detaches; System V keeps the segment with nattch 0
    with qt.publish(picture(False), qt_key.key, qt_key.version):
        assert qt.read_image(qt_key.key, qt_key.version).tobytes() == picture(False).tobytes()
    # What is left is the killed Qt's semaphore (it made it, and died before removing it).
    assert qt_key.leftovers()
    repaired = qt_key.tkshm("clean", check=True)
    assert "which no segment uses" in repaired.stdout
    assert qt_key.leftovers() == []


@VERSIONS
@windows_only("the kernel destroys an object with its last handle, a killed holder's too")
def test_a_killed_qt_loader_takes_its_mapping_and_semaphore_with_it(qt_key: QtKey, tmp_path: Path) -> None:
    source = tmp_path / "source.png"
    picture(True).save(source)
    loader = qt_key.peer("load", str(source))
    assert loader.line().strip() == "READY"
    assert qt_key.leftovers() == [f"file mapping {qt_key.windows_names[0]}", f"semaphore {qt_key.semaphore}"]
    assert loader.kill()[0] == KILLED  # TerminateProcess: Qt never detaches
    assert qt_key.leftovers() == []
    with qt.publish(picture(False), qt_key.key, qt_key.version):
        assert qt.read_image(qt_key.key, qt_key.version).tobytes() == picture(False).tobytes()
    repaired = qt_key.tkshm("clean", check=True)
    assert repaired.stdout == f"Nothing to repair under Qt's key {qt_key.key!r}.\n"


@VERSIONS
def test_put_refuses_a_key_a_live_qt_process_holds_in_one_sentence(
    qt_key: QtKey, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    leaks(request)
    source = tmp_path / "source.png"
    picture(True).save(source)
    loader = qt_key.peer("load", str(source))
    try:
        assert loader.line().strip() == "READY"
        done = qt_key.tkshm("put", str(source))
        with pytest.raises(SegmentInUseError):
            qt.publish(picture(True), qt_key.key, qt_key.version)
    finally:
        let_go(loader)
    assert done.returncode == 1
    assert re.fullmatch(r"tkshm: Unable to create shared memory segment: .*\.\n", done.stderr), done.stderr
    # Linux names the holder (nattch and its creator, or /proc); Windows does not say who has a handle.
    holder = "held by another process" if WINDOWS else f"process {loader.proc.pid}"
    assert holder in done.stderr


@versions(5, 6) if WINDOWS else versions(6)
def test_a_holder_killed_inside_lock_is_said_within_the_timeout_and_clean_repairs_it(
    qt_key: QtKey,
) -> None:
    """A POSIX semaphore (Qt 6 on Unix) and a Windows semaphore (both key styles) have no
    undo: a holder killed inside lock() leaves them taken while another process has them
    open (here: tkshm's publisher)."""
    version = qt_key.version
    with qt.publish(picture(True), qt_key.key, version):
        holder = qt_key.peer("lock-and-wait")
        assert holder.line().strip() == "LOCKED"
        holder.kill()
        started = time.monotonic()
        advice = f"tkshm clean --qt {version} --key {qt_key.key} releases it"
        with pytest.raises(LockTimeoutError, match=advice):
            qt.read_image(qt_key.key, version, timeout=0.3)
        assert time.monotonic() - started < 30  # bounded: never Qt's wait for ever
        done = qt_key.tkshm("get", "-o", str(Path(qt_key.env["TMPDIR"]) / "got.png"))
        assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
        assert "stayed taken for more than" in done.stderr
        repaired = qt_key.tkshm("clean", check=True)
        assert repaired.stdout.startswith(f"Released Qt's semaphore {qt_key.semaphore}:"), repaired.stdout
        assert qt.read_image(qt_key.key, version).tobytes() == picture(True).tobytes()
        # Qt itself, whose attach() and lock() wait for ever, gets through again too.
        shown = qt_key.peer("display", str(Path(qt_key.env["TMPDIR"]) / "qt.png"))
        assert shown.line().startswith("SAVED 97x61")


# -- what is not a QDataStream'd image --------------------------------------------------------
def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _bomb() -> bytes:
    """A PNG whose header claims 40000x40000 pixels (1.6 billion): a few hundred bytes."""
    data = bytearray(_png(Image.new("RGBA", (1, 1))))
    ihdr = struct.pack(">IIBBBBB", 40000, 40000, 8, 6, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    data[8:33] = struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
    return bytes(data)


HOSTILE = {
    "garbage": (
        b"\x89garbage that is not a stream" * 3,
        CorruptSegmentError,
        "does not hold a QDataStream'd image",
    ),
    "null-image": (payload.null_image(), ImageError, "holds a null image"),
    "truncated-png": (payload.encode(pattern(64, 64, 3))[:300], ImageError, "damaged or truncated"),
    "bomb": (b"\x00\x00\x00\x01" + _bomb(), ImageTooLargeError, "more than the 100,000,000"),
    # Windows maps whole pages: a reader (Qt's too) sees the three bytes and zeros after them,
    # the marker 0 of a null image.
    "three-bytes": (b"\x00\x00\x00", ImageError, "holds a null image")
    if WINDOWS
    else (b"\x00\x00\x00", CorruptSegmentError, "too few for a QDataStream'd image"),
}


@VERSIONS
@pytest.mark.parametrize("name", list(HOSTILE))
def test_anything_else_at_qts_key_gets_one_sentence(qt_key: QtKey, name: str) -> None:
    data, error, words = HOSTILE[name]
    handle = qt.backend(qt_key.key, qt_key.version)
    try:
        handle.create(len(data))
        with handle.lock(1.0):
            handle.write(data)
        with pytest.raises(error, match=re.escape(words)):
            qt.read_image(qt_key.key, qt_key.version)
        done = qt_key.tkshm("get", "-o", os.devnull + ".png")
        assert done.returncode == 1
        assert done.stderr.count("\n") == 1 and words in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    finally:
        handle.close()


@versions(6)
@posix_only("a POSIX object of any size, made with posix_ipc (Windows: the test below)")
@pytest.mark.parametrize("size", [0, 2 * 1024**3], ids=["empty", "2GB"])
def test_a_segment_of_0_bytes_or_2_gb_is_refused_before_it_is_read(qt_key: QtKey, size: int) -> None:
    memory = posix_ipc.SharedMemory("/" + qt_key.key, posix_ipc.O_CREX, mode=0o600, size=size)  # sparse
    memory.close_fd()
    try:
        started = time.monotonic()
        words = "too few for" if size == 0 else "more than a QDataStream'd image of the largest size"
        with pytest.raises(CorruptSegmentError, match=words):
            qt.read_image(qt_key.key, 6)
        assert time.monotonic() - started < 10  # 2 GB were not copied
    finally:
        posix_ipc.unlink_shared_memory("/" + qt_key.key)
        for path in (f"/dev/shm/sem.{qt_key.key}",):
            if os.path.exists(path):
                os.unlink(path)


@VERSIONS
@windows_only("a file mapping of 2 GB (Windows cannot make an empty one: CreateFileMapping refuses size 0)")
def test_a_mapping_of_2_gb_is_refused_before_it_is_read(qt_key: QtKey) -> None:
    import _winapi

    size = 2 * 1024**3  # committed only as it is touched
    handle = _winapi.CreateFileMapping(
        _winapi.INVALID_HANDLE_VALUE, _winapi.NULL, _winapi.PAGE_READWRITE, size >> 32, size & 0xFFFFFFFF,
        qt_key.windows_names[0],
    )  # fmt: skip
    try:
        started = time.monotonic()
        with pytest.raises(CorruptSegmentError, match="more than a QDataStream'd image of the largest size"):
            qt.read_image(qt_key.key, qt_key.version)
        assert time.monotonic() - started < 10  # 2 GB were not copied
    finally:
        _winapi.CloseHandle(handle)  # the last handle: Windows destroys the mapping


@versions(5)
@posix_only("Qt keeps key files for System V on Unix; Windows names its objects directly")
def test_a_planted_symlink_at_qts_key_file_is_refused(qt_key: QtKey, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("")
    link = Path(keys.legacy_key_file(qt_key.key, "sharedmemory"))
    link.symlink_to(target)
    try:
        with pytest.raises(UnsafePathError, match="symbolic link"):
            qt.publish(picture(True), qt_key.key, 5)
        with pytest.raises(UnsafePathError, match="symbolic link"):
            qt.read_image(qt_key.key, 5)
    finally:
        link.unlink()


# A native key names one object: a POSIX name has no "/" but the first; a Windows name has no
# backslash but after its namespace. Longer than 255 characters is refused everywhere.
BAD_NATIVE_KEYS = ["a\\b", "Local\\", "Global\\a\\b", "x" * 300] if WINDOWS else ["a/b", "..", "/", "x" * 300]


@versions(6)
@pytest.mark.parametrize("key", BAD_NATIVE_KEYS)
def test_a_key_that_cannot_name_a_native_object_is_refused(qt_key: QtKey, key: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tkshm", "get", "--qt", "6", "--key", key, "-o", "x.png"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


@pytest.mark.parametrize(("version", "package"), [(5, "sysv_ipc"), (6, "posix_ipc")])
@posix_only("the tkshm[qt] extra is for Unix; Windows needs no package (the test below)")
def test_without_the_qt_extra_one_sentence_names_it(version: int, package: str) -> None:
    code = (
        f"import sys; sys.modules[{package!r}] = None\n"  # as if it were not installed
        "from tkshm.cli import main\n"
        f"sys.exit(main(['get', '--qt', '{version}', '-o', 'x.png']))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr == (
        f"tkshm: Speaking Qt {version}'s protocol needs the {package} package: pip install 'tkshm[qt]'.\n"
    )


@VERSIONS
@windows_only("Unix needs the tkshm[qt] extra (the test above)")
def test_on_windows_no_extra_package_is_needed_or_asked_for(qt_key: QtKey) -> None:
    code = (
        "import sys; sys.modules['sysv_ipc'] = sys.modules['posix_ipc'] = None\n"  # as if absent
        "from tkshm.cli import main\n"
        f"sys.exit(main(['get', '--qt', '{qt_key.version}', '--key', {qt_key.key!r}, '-o', 'x.png']))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    mapping = qt_key.windows_names[0]
    assert done.stderr.startswith(
        f"tkshm: Nothing is published under Qt's key {qt_key.key!r}: there is no file mapping {mapping}."
    ), done.stderr
    usage = subprocess.run(
        [sys.executable, "-m", "tkshm", "get", "--help"], capture_output=True, text=True, timeout=60
    )
    assert "tkshm[qt]" not in usage.stdout and "POSIX" not in usage.stdout


# -- the window as a peer of Qt's example (tkshm gui --qt 5|6) --------------------------------
@pytest.fixture
def qt_window(qt_key: QtKey, tk_root: tk.Tk) -> Iterator[App]:
    app = App(tk_root, key=qt_key.key, lang="en", events=False, qt=qt_key.version)
    tk_root.update()
    yield app
    app.close()  # detaches, and removes what it published: the qt_key fixture checks


@VERSIONS
def test_the_window_speaks_qts_protocol_both_ways_and_says_so(
    qt_key: QtKey,
    qt_window: App,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    leaks(request)
    app = qt_window
    assert app.root.title() == f"SharedMemory Example · Qt {qt_key.version} protocol"
    assert str(app.status.cget("text")).startswith(f"Key: {qt_key.key} · Qt {qt_key.version} protocol: ")
    assert "disabled" in app.follow_check.state()  # Qt's segment has no generation to follow
    # Load publishes for Qt's example.
    source, out = tmp_path / "source.png", tmp_path / "qt.png"
    picture(True).save(source)
    monkeypatch.setattr(tk.filedialog, "askopenfilename", lambda **options: str(source))
    app.load_button.invoke()
    pump(app.root, lambda: app.picture_area.picture is not None, 30, "the loaded image")
    shown = qt_key.peer("display", str(out))
    assert shown.line().startswith("SAVED 97x61")
    assert Image.open(out).convert("RGBA").tobytes() == picture(True).tobytes()
    assert "PNG encoded and published in" in str(app.status.cget("text"))
    # Display shows what Qt's example loaded (after this window let go of its own).
    assert app.qt_peer is not None
    app.qt_peer.unpublish()
    other = tmp_path / "other.png"
    picture(False).save(other)
    loader = qt_key.peer("load", str(other))
    try:
        assert loader.line().strip() == "READY"
        app.display_button.invoke()
        pump(app.root, lambda: app.picture_area.picture.source == "shm", 30, "Qt's image")  # type: ignore[union-attr]
        assert app.picture_area.picture.image.tobytes() == picture(False).tobytes()  # type: ignore[union-attr]
        assert str(app.label.cget("text")) == f"Showing the image from shared memory (Qt's key {qt_key.key})."
        # While Qt's example holds the key, Load says what Qt's example would.
        app.load_button.invoke()
        pump(app.root, lambda: app.picture_area.picture is None, 30, "the refusal")
        assert str(app.label.cget("text")) == "Unable to create shared memory segment."
    finally:
        let_go(loader)
