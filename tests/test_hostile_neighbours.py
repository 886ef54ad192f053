"""Hostile neighbours: what someone else (or a careless script) left where tkshm keeps its files.

A symlink planted at the segment file, the lock file or the per-user directory is refused
and its target is never touched; a directory or file that belongs to another user, or that
others may read, is refused with a message naming the path and the problem; a segment file
cut shorter than its header says gives a clear error, never SIGBUS.

Each test points ``TKSHM_DIR`` at a directory of its own, so nothing here can disturb the
real ``/dev/shm/tkshm-<uid>``.

All of this is POSIX: symbolic links and ``O_NOFOLLOW``, user ids and modes, and a segment
that is a file a neighbour can truncate. On Windows the segment is a named mapping, whose size
no one can change under a reader, and what keeps it private is the user's own temporary folder
(the lock file) and the session's ``Local\\`` namespace (the mappings). What applies there: a
junction in place of the folder is refused (a Windows-only test; Wine cannot make junctions, so
it skips under Wine), and a damaged header that claims more than the segment holds (both).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from patterns import pattern
from peer import Peer
from platforms import WINDOWS, overwrite_header, posix_only, windows_only

from tkshm import ipc
from tkshm.errors import UnsafePathError
from tkshm.header import HEADER_SIZE, Header, State

NOBODY = 65534
DEADLINE = 60.0
OLD_TIME_NS = 1_000_000_000 * 10**9  # 2001: any write through a symlink would change it
SYMLINKS = posix_only("symbolic links and O_NOFOLLOW")
MODES = posix_only("file modes; Windows keeps the files in the user's own temporary folder")
CUT = posix_only("truncates the segment file; a Windows mapping's size is fixed when it is made")
OTHER_USERS = posix_only("user ids and chown")
needs_root = pytest.mark.skipif(WINDOWS or os.geteuid() != 0, reason="chown to another user needs root")


@pytest.fixture
def key() -> str:
    """A unique key. (The shared fixture checks the default directory, which these tests,
    each with its own ``TKSHM_DIR``, never use; they check their directory themselves.)"""
    return f"test-neighbours-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def private_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh segment directory (0700, ours) named by ``TKSHM_DIR``."""
    directory = tmp_path / "segments"
    directory.mkdir(mode=0o700)
    monkeypatch.setenv("TKSHM_DIR", str(directory))
    yield directory


@dataclass(frozen=True)
class Target:
    """A file someone would like us to overwrite, and what it looked like beforehand."""

    path: Path
    content: bytes | None
    mtime_ns: int | None

    @classmethod
    def make(cls, path: Path, exists: bool) -> Target:
        if not exists:
            return cls(path, None, None)
        path.write_bytes(b"precious data, not a segment\n")
        os.utime(path, ns=(OLD_TIME_NS, OLD_TIME_NS))
        return cls(path, path.read_bytes(), path.stat().st_mtime_ns)

    def assert_untouched(self) -> None:
        if self.content is None:
            assert not self.path.exists() and not self.path.is_symlink(), f"{self.path} was created"
            return
        assert self.path.read_bytes() == self.content
        assert self.path.stat().st_mtime_ns == self.mtime_ns


def _path_of(directory: Path, key: str, suffix: str) -> Path:
    return directory / (ipc.native_name(key) + suffix)


ATTEMPTS: dict[str, Callable[[str], object]] = {
    "publish": lambda key: ipc.publish(pattern(8, 8, 3), key=key).close(),
    "read": lambda key: ipc.read_image(key=key),
    "info": lambda key: ipc.info(key=key),
}


def assert_refused(key: str, attempt: str, path: Path, problem: str) -> UnsafePathError:
    with pytest.raises(UnsafePathError) as caught:
        ATTEMPTS[attempt](key)
    message = str(caught.value)
    assert str(path) in message, message
    assert problem in message, message
    assert caught.value.path == str(path)
    return caught.value


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tkshm", *args], capture_output=True, text=True, timeout=DEADLINE, check=False
    )


def assert_cli_refuses(key: str, path: Path, problem: str) -> None:
    for command in (["info"], ["get", "-o", os.devnull + ".png"]):
        run = cli(*command, "--key", key)
        assert run.returncode == 1, run
        lines = run.stderr.splitlines()
        assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
        assert str(path) in lines[0] and problem in lines[0], lines[0]


# ---------------------------------------------------------------------------- symlinks
@pytest.mark.parametrize("target_exists", [True, False], ids=["existing-target", "dangling"])
@pytest.mark.parametrize("attempt", sorted(ATTEMPTS))
@SYMLINKS
def test_symlink_at_segment_file_is_refused_and_target_untouched(
    private_dir: Path, tmp_path: Path, key: str, attempt: str, target_exists: bool
) -> None:
    target = Target.make(tmp_path / "precious", target_exists)
    link = _path_of(private_dir, key, ".seg")
    link.symlink_to(target.path)
    assert_refused(key, attempt, link, "symbolic link")
    target.assert_untouched()
    assert ipc.clean() == []  # clean and list never follow it either
    assert [s for s in ipc.list_segments() if s.path == str(link)] == []
    target.assert_untouched()
    assert sorted(os.listdir(private_dir)) == [link.name]


@pytest.mark.parametrize("target_exists", [True, False], ids=["existing-target", "dangling"])
@SYMLINKS
def test_symlink_at_lock_file_is_refused_and_target_untouched(
    private_dir: Path, tmp_path: Path, key: str, target_exists: bool
) -> None:
    target = Target.make(tmp_path / "precious", target_exists)
    link = _path_of(private_dir, key, ".lock")
    link.symlink_to(target.path)
    assert_refused(key, "publish", link, "symbolic link")
    target.assert_untouched()
    assert not _path_of(private_dir, key, ".seg").exists(), "the refused segment was left behind"


@SYMLINKS
def test_symlink_swapped_in_for_a_live_lock_file_is_refused_by_the_next_reader(
    private_dir: Path, tmp_path: Path, key: str, peer: Peer
) -> None:
    peer.call("publish", key=key, width=8, height=8, seed=9)
    target = Target.make(tmp_path / "precious", True)
    lock = _path_of(private_dir, key, ".lock")
    lock.unlink()
    lock.symlink_to(target.path)
    assert_refused(key, "read", lock, "symbolic link")
    assert_refused(key, "publish", lock, "symbolic link")
    target.assert_untouched()
    peer.call("detach", key=key)
    target.assert_untouched()
    assert sorted(os.listdir(private_dir)) == []


@pytest.mark.parametrize("target_exists", [True, False], ids=["existing-target", "dangling"])
@pytest.mark.parametrize("attempt", sorted(ATTEMPTS))
@SYMLINKS
def test_symlink_at_segment_directory_is_refused_and_target_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str, attempt: str, target_exists: bool
) -> None:
    real = tmp_path / "real"
    if target_exists:
        real.mkdir(mode=0o700)
        os.utime(real, ns=(OLD_TIME_NS, OLD_TIME_NS))
    link = tmp_path / "tkshm-link"
    link.symlink_to(real, target_is_directory=True)
    monkeypatch.setenv("TKSHM_DIR", str(link))
    assert_refused(key, attempt, link, "symbolic link")
    if target_exists:
        assert os.listdir(real) == []
        assert real.stat().st_mtime_ns == OLD_TIME_NS
    else:
        assert not real.exists()
    for listing in (ipc.clean, ipc.list_segments):
        with pytest.raises(UnsafePathError):
            listing()
    if attempt == "info":
        assert_cli_refuses(key, link, "symbolic link")


@windows_only("the counterpart of the symbolic link tests above")
def test_junction_at_segment_directory_is_refused_and_target_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    import _winapi  # the stdlib's Win32 bindings: CreateJunction needs no privilege

    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "tkshm-junction"
    try:
        _winapi.CreateJunction(str(real), str(link))
    except OSError as exc:  # Wine 8: "Request not supported"
        pytest.skip(f"cannot make a junction here: {exc}")
    monkeypatch.setenv("TKSHM_DIR", str(link))
    for attempt in sorted(ATTEMPTS):
        assert_refused(key, attempt, link, "symbolic link or junction")
    assert os.listdir(real) == []
    assert_cli_refuses(key, link, "symbolic link or junction")


# ---------------------------------------------------------------------------- other users
def _segment_file(path: Path, uid: int, mode: int) -> None:
    """A well-formed empty segment file, as another user's tkshm would have left it."""
    path.write_bytes(Header.empty(4096, 1).pack().ljust(HEADER_SIZE + 4096, b"\0"))
    os.chown(path, uid, uid)
    os.chmod(path, mode)


@needs_root
@pytest.mark.parametrize("attempt", sorted(ATTEMPTS))
@OTHER_USERS
def test_segment_directory_of_another_user_is_refused(private_dir: Path, key: str, attempt: str) -> None:
    os.chown(private_dir, NOBODY, NOBODY)
    assert_refused(key, attempt, private_dir, f"belongs to user id {NOBODY}")
    assert os.listdir(private_dir) == []
    if attempt == "info":
        assert_cli_refuses(key, private_dir, f"belongs to user id {NOBODY}")


@needs_root
@pytest.mark.parametrize(("suffix", "attempt"), [(".seg", "publish"), (".seg", "read"), (".lock", "publish")])
@OTHER_USERS
def test_segment_file_of_another_user_is_refused(
    private_dir: Path, key: str, suffix: str, attempt: str
) -> None:
    path = _path_of(private_dir, key, suffix)
    _segment_file(path, NOBODY, 0o600)
    before = path.read_bytes()
    assert_refused(key, attempt, path, f"belongs to user id {NOBODY}")
    if suffix == ".seg":
        assert path.read_bytes() == before and path.stat().st_uid == NOBODY
    # Our own half-built segment was rolled back. (Rolling back also unlinks a foreign .lock
    # file it refused to open: harmless in a directory only we can write to.)
    assert sorted(os.listdir(private_dir)) in ([path.name], [])


@pytest.mark.parametrize("mode", [0o755, 0o750, 0o701])
@MODES
def test_segment_directory_others_may_open_is_refused(private_dir: Path, key: str, mode: int) -> None:
    os.chmod(private_dir, mode)
    error = assert_refused(key, "publish", private_dir, f"mode {mode:04o}")
    assert "chmod 700" in str(error)
    assert os.listdir(private_dir) == []
    assert_cli_refuses(key, private_dir, f"mode {mode:04o}")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o606])
@MODES
def test_segment_file_others_may_open_is_refused(private_dir: Path, key: str, mode: int) -> None:
    path = _path_of(private_dir, key, ".seg")
    _segment_file(path, os.geteuid(), mode)
    error = assert_refused(key, "read", path, f"mode {mode:04o}")
    assert "chmod 600" in str(error)
    assert_refused(key, "publish", path, f"mode {mode:04o}")
    assert_cli_refuses(key, path, f"mode {mode:04o}")
    assert stat_mode(path) == mode  # refused, not "fixed" behind the owner's back
    path.unlink()


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


# ---------------------------------------------------------------------------- short files
# A reader in its own process: attach (and map the file at its current size), say so, wait
# for a line on stdin, then read through the same handle. Reading past the end of a mapped
# file is SIGBUS -- which would kill it with -7 rather than let it print an answer.
_READER = r"""
import json, sys
from tkshm import ipc
segment = ipc.Segment.attach(sys.argv[1])
print(json.dumps({"attached": segment.size}), flush=True)
sys.stdin.readline()
for what in ("read_image", "info"):
    try:
        getattr(segment, what)()
        print(json.dumps({what: "ok"}), flush=True)
    except ipc.TkshmError as exc:
        print(json.dumps({what: type(exc).__name__, "message": str(exc)}), flush=True)
segment.detach()
"""


def _read_in_child(key: str, cut: Callable[[], None] | None) -> list[dict[str, object]]:
    reader = subprocess.Popen(
        [sys.executable, "-c", _READER, key],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert reader.stdout is not None and reader.stdin is not None
        first = reader.stdout.readline()
        answers: list[dict[str, object]] = [json.loads(first)] if first else []
        if cut is not None and answers:
            cut()
        out, err = reader.communicate("go\n", timeout=DEADLINE)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    assert reader.returncode == 0, err  # not -SIGBUS, or any other death
    return answers + [json.loads(line) for line in out.splitlines()]


CUTS = [HEADER_SIZE + 100, HEADER_SIZE, 100, 0]


@pytest.mark.parametrize("size", CUTS)
@CUT
def test_segment_file_cut_short_under_an_attached_reader_gives_clear_error_not_sigbus(
    isolated_dir: str, key: str, peer: Peer, size: int
) -> None:
    """A neighbour (same user, so nothing stops it) truncates a published segment while a
    reader is attached with the old size mapped: its next read must report damage."""
    peer.call("publish", key=key, width=64, height=64, seed=2)  # 16 KiB of pixels
    path = _path_of(Path(isolated_dir), key, ".seg")
    answers = _read_in_child(key, cut=lambda: os.truncate(path, size))
    assert answers[0] == {"attached": HEADER_SIZE + 64 * 64 * 4}
    assert [next(iter(a)) for a in answers[1:]] == ["read_image", "info"]
    for answer in answers[1:]:
        assert next(iter(answer.values())) == "CorruptSegmentError", answer
        message = str(answer["message"])
        assert "damaged" in message or "too short" in message, message
    peer.call("detach", key=key)


@pytest.mark.parametrize("size", CUTS)
@CUT
def test_segment_file_cut_short_gives_next_reader_clear_error_not_sigbus(
    isolated_dir: str, key: str, peer: Peer, size: int
) -> None:
    peer.call("publish", key=key, width=64, height=64, seed=2)
    os.truncate(_path_of(Path(isolated_dir), key, ".seg"), size)
    try:
        late = cli("get", "--key", key, "-o", os.path.join(isolated_dir, "out.png"))
    finally:
        peer.call("detach", key=key)
    assert late.returncode != -signal.SIGBUS, "the reader died of SIGBUS"
    assert late.returncode == 1, late
    lines = late.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in late.stderr, late.stderr
    assert "damaged" in lines[0] or "too short" in lines[0], lines[0]


def test_valid_header_over_a_short_file_is_reported_damaged(isolated_dir: str, key: str, peer: Peer) -> None:
    """The header is intact and its checksum right, but claims 16 KiB the segment does not have."""
    peer.call("publish", key=key, width=8, height=8, seed=1)
    claim = Header(State.READY, 7, 64, 64, 64 * 64 * 4, 1, 1).pack()
    with ipc.Segment.attach(key) as neighbour:
        assert neighbour.size < HEADER_SIZE + 64 * 64 * 4
        overwrite_header(neighbour, claim)
    answers = _read_in_child(key, cut=None)
    assert answers[1]["read_image"] == "CorruptSegmentError", answers
    assert "more capacity than the segment holds" in str(answers[1]["message"])
    peer.call("detach", key=key)
    assert os.listdir(isolated_dir) == []
