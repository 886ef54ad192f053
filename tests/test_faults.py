"""Faults: writers killed at any moment, a full tmpfs, a lock held too long.

After ``kill -9`` of a writer -- before it takes the lock, while it holds it, half-way
through copying, after -- readers get the previous complete image or the new one, never an
incomplete one (only a first frame, with nothing before it, can be left incomplete: see
test_ipc_processes.py); the next writer always succeeds; and once the last holder is gone no
file is left. A tmpfs with no room gives OutOfSharedMemoryError, never SIGBUS, and the
image already there stays readable. A lock held longer than the timeout gives a "busy" error.

On Windows a kill is TerminateProcess; freezing a writer (SIGSTOP), the creator's temporary
file and a tmpfs to fill are POSIX things, and those tests say so when they skip.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from conftest import files_for
from patterns import pattern, seed_of
from peer import Peer, PeerError
from platforms import posix_only

from tkshm import ipc
from tkshm.errors import IncompleteImageError, LockTimeoutError, OutOfSharedMemoryError, SegmentNotFoundError
from tkshm.header import State

DEADLINE = 60.0
# Enough kills to land in every phase of a publish many times over, in a few seconds.
KILLS = int(os.environ.get("TKSHM_FAULT_KILLS", "16"))


def poll(condition: object, what: str, deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    while not condition():  # type: ignore[operator]
        if time.monotonic() > end:
            raise AssertionError(f"gave up after {deadline} s waiting for {what}")


def read_outcome(key: str, allowed: set[int]) -> str:
    """What a reader sees now: 'seed N' (checked intact and one of ``allowed``) or 'incomplete'."""
    try:
        image = ipc.read_image(key=key)
    except IncompleteImageError:
        return "incomplete"
    seed = seed_of(image)  # raises on a torn image
    assert seed in allowed, f"seed {seed} was never written (allowed: {sorted(allowed)[:8]}...)"
    return "complete"


@pytest.fixture
def holder(key: str) -> Iterator[Peer]:
    """A process that published seed 1 and stays attached, so the segment outlives victims."""
    with Peer() as peer:
        peer.call("publish", key=key, width=256, height=192, seed=1)
        yield peer
        assert peer.call("detach", key=key)["removed"] is True
    assert files_for(key) == []


# ---------------------------------------------------------------------------- kill -9
def test_writer_killed_at_random_moments_leaves_the_previous_or_the_new_image(key: str, holder: Peer) -> None:
    rng = random.Random(os.environ.get("TKSHM_FAULT_SEED", "4"))
    outcomes: Counter[str] = Counter()
    # Room for the victims' images first (two frames: the newest stays while the next is
    # written), so that they never grow the segment: on Windows a grown segment is a new
    # mapping, which a victim killed before anyone followed it would take with it (README,
    # "On Windows"); that case is not the one under test here.
    for seed in (1, 2):
        holder.call("write", key=key, width=1024, height=768, seed=seed)
    written = {2}
    for round_ in range(KILLS):
        base = 1000 * (round_ + 1)
        with Peer() as victim:
            victim.send("publish_loop", key=key, width=1024, height=768, seed=base)
            if round_ % 4:  # else: killed before it even attached or took the lock
                assert victim.reply()["started"]
                # A random moment of the loop: building the image (no lock), waiting for the
                # lock, copying, between writes. The pause picks the moment; it does not wait
                # for anything to happen.
                time.sleep(rng.uniform(0, 0.03))
            victim.kill()
        # The victim wrote seeds base, base+1, ... up to at most a few hundred.
        allowed = written | set(range(base, base + 1000))
        outcomes[read_outcome(key, allowed)] += 1
        # The next writer always succeeds.
        fixed = base + 999
        holder.call("write", key=key, width=256, height=192, seed=fixed)
        assert seed_of(ipc.read_image(key=key)) == fixed
        written = {fixed}
    print(f"\nkill -9 at random moments, {KILLS} rounds: {dict(outcomes)}")
    assert outcomes == Counter(complete=KILLS)


SLOT_STATES = struct.Struct("<" + "I60x" * 4)  # the state (u32) of each 64-byte slot record
SLOT_TABLE = 2048  # tkshm.frames.TABLE_OFFSET


def slot_writing(path: str) -> bool:
    """Whether a slot record says WRITING: a frame is being copied (read straight from the file)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return False
    try:
        raw = os.pread(fd, SLOT_STATES.size, SLOT_TABLE)
    finally:
        os.close(fd)
    return len(raw) == SLOT_STATES.size and State.WRITING in SLOT_STATES.unpack(raw)


def _stop_while_writing(victim: Peer, path: str) -> bool:
    """Freeze the victim (SIGSTOP) as soon as a slot says WRITING; True if it is frozen
    mid-copy, False if it finished in between (it is then let go again)."""
    poll(lambda: slot_writing(path), "a write in progress")
    os.kill(victim.pid, signal.SIGSTOP)
    if slot_writing(path):
        return True
    os.kill(victim.pid, signal.SIGCONT)
    return False


@posix_only("freezes the writer with SIGSTOP and reads the slot records with pread from the file")
def test_writer_killed_during_the_copy_leaves_the_previous_image(key: str, holder: Peer) -> None:
    path = os.path.join(ipc.segment_directory(), ipc.native_name(key) + ".seg")
    with Peer() as victim:
        victim.call("publish_loop", key=key, width=1024, height=1024, seed=5000)
        end = time.monotonic() + DEADLINE
        while not _stop_while_writing(victim, path):
            assert time.monotonic() < end, "never caught the writer mid-copy"
        newest = ipc.info(key=key).generation
        victim.kill()  # frozen with the lock held, half-way through a frame
    info = ipc.info(key=key)
    assert (info.state, info.generation) == ("ready", newest)  # the frame before, still whole
    assert seed_of(ipc.read_image(key=key)) in {1, *range(5000, 5000 + newest)}
    holder.call("write", key=key, width=64, height=64, seed=6)  # no timeout: the lock is free
    assert seed_of(ipc.read_image(key=key)) == 6


def test_writer_killed_while_holding_the_lock_leaves_previous_image(key: str, holder: Peer) -> None:
    with Peer() as victim:
        victim.call("hold_lock", key=key, exclusive=True)
        with pytest.raises(LockTimeoutError):
            ipc.read_image(key=key, timeout=0.05)
        victim.kill()
    assert seed_of(ipc.read_image(key=key)) == 1  # the kernel dropped the lock with the process
    holder.call("write", key=key, width=32, height=32, seed=7)
    assert seed_of(ipc.read_image(key=key)) == 7


def test_reader_sees_not_found_after_last_holder_is_killed_mid_write(key: str) -> None:
    with Peer() as victim:
        victim.call("publish_loop", key=key, width=1024, height=1024, seed=1)
        victim.kill()
    assert files_for(key) != []  # an orphan (on Windows, its lock file): nobody holds it any more
    with pytest.raises(SegmentNotFoundError):
        ipc.read_image(key=key)
    assert files_for(key) == []  # the reader's attach removed the orphan
    with ipc.publish(pattern(16, 16, 2), key=key):
        assert seed_of(ipc.read_image(key=key)) == 2


@posix_only("a segment file is built under a temporary name, then linked; a named mapping is made at once")
def test_creator_killed_before_linking_leaves_nothing_once_next_writer_detaches(key: str) -> None:
    directory = ipc.segment_directory()
    name = ipc.native_name(key)

    def temporaries() -> list[str]:
        return [e for e in os.listdir(directory) if e.startswith(name + ".") and e.endswith(".tmp")]

    try:
        end = time.monotonic() + DEADLINE
        while True:
            with Peer() as victim:
                # 64 MB to reserve: the temporary file exists for a while before the link.
                victim.send("publish", key=key, width=4096, height=4096, seed=1)
                poll(lambda: temporaries() or files_for(key), "the creator to start")
                os.kill(victim.pid, signal.SIGSTOP)
                caught = bool(temporaries()) and not os.path.exists(os.path.join(directory, name + ".seg"))
                victim.kill()
            if caught:
                break
            ipc.clean()
            assert time.monotonic() < end, "never caught the creator before its link"
        with ipc.publish(pattern(8, 8, 3), key=key):  # the next create, and its detach
            pass
        assert files_for(key) == []
    finally:
        ipc.clean()  # so the shared fixture does not also fail on the leftover


# ---------------------------------------------------------------------------- full tmpfs
@pytest.fixture
def small_tmpfs(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An 8 MB tmpfs of our own, with the segment directory (0700) in it."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root (and mount)")
    mountpoint = tempfile.mkdtemp(prefix="tkshm-tmpfs-")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tkshmtest", mountpoint],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:
        os.rmdir(mountpoint)
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        directory = os.path.join(mountpoint, "tkshm")
        os.mkdir(directory, 0o700)
        monkeypatch.setenv("TKSHM_DIR", directory)
        yield directory
        assert os.listdir(directory) == [], "files left on the small tmpfs"
    finally:
        subprocess.run(["umount", mountpoint], check=True, timeout=DEADLINE)
        os.rmdir(mountpoint)


@posix_only("fills a tmpfs of its own; a Windows mapping is backed by the page file")
def test_full_tmpfs_gives_out_of_shared_memory_never_sigbus(small_tmpfs: str, key: str) -> None:
    with Peer() as owner, Peer() as other:
        owner.call("publish", key=key, width=256, height=256, seed=11)  # 256 KiB: fits
        # Growing the existing segment to 16 MB, from another process: does not fit.
        with pytest.raises(PeerError, match="OutOfSharedMemoryError: There is not enough shared memory"):
            other.call("publish", key=key, width=2048, height=2048, seed=12)
        assert other.proc.poll() is None, "the writer died (SIGBUS?)"
        # And in this process: a new segment that does not fit, then growing the old one.
        with pytest.raises(OutOfSharedMemoryError, match="not enough shared memory"):
            ipc.publish(pattern(2048, 2048, 13), key=key + "-new")
        with ipc.Segment.attach(key) as segment, pytest.raises(OutOfSharedMemoryError) as caught:
            segment.write_image(pattern(2048, 2048, 14))
        assert small_tmpfs in str(caught.value)
        # The image already there is untouched and complete, for everyone.
        assert seed_of(ipc.read_image(key=key)) == 11
        assert other.call("read", key=key)["seed"] == 11
        # The CLI says it in one line, and does not die of SIGBUS either.
        with tempfile.TemporaryDirectory() as scratch:
            big = os.path.join(scratch, "big.png")
            pattern(2048, 2048, 15).save(big)
            run = subprocess.run(
                [sys.executable, "-m", "tkshm", "put", "--key", key, big],
                capture_output=True, text=True, timeout=DEADLINE, check=False,
            )  # fmt: skip
        assert run.returncode == 1, run
        assert run.stderr.count("\n") == 1 and "not enough shared memory" in run.stderr, run.stderr
        assert seed_of(ipc.read_image(key=key)) == 11
        # A smaller image still fits in what is left.
        owner.call("write", key=key, width=512, height=512, seed=16)
        assert other.call("read", key=key)["seed"] == 16
        owner.call("detach", key=key)
    assert files_for(key) == []


# ---------------------------------------------------------------------------- lock timeouts
@pytest.mark.parametrize("wanted", ["read", "write", "info"])
def test_lock_held_longer_than_timeout_gives_busy_error(key: str, holder: Peer, wanted: str) -> None:
    with Peer() as writer:
        writer.call("hold_lock", key=key, exclusive=True)
        with ipc.Segment.attach(key) as segment:
            attempt = {
                "read": lambda: segment.read_image(timeout=0.2),
                "write": lambda: segment.write_image(pattern(8, 8, 2), timeout=0.2),
                "info": lambda: segment.info(timeout=0.2),
            }[wanted]
            with pytest.raises(LockTimeoutError) as caught:
                attempt()
            message = str(caught.value)
            assert "busy" in message and repr(key) in message and "Try again" in message, message
            assert caught.value.timeout == 0.2
        writer.call("exit")
    assert seed_of(ipc.read_image(key=key)) == 1  # untouched, and readable once the lock is free


def test_writer_never_waits_for_a_reader_holding_the_shared_lock(key: str, holder: Peer) -> None:
    with Peer() as reader:
        reader.call("hold_lock", key=key, exclusive=False)
        assert seed_of(ipc.read_image(key=key, timeout=0.2)) == 1  # readers share
        with ipc.Segment.attach(key) as segment:
            # The reader holds the frame it locked; the writer writes another slot.
            assert segment.write_image(pattern(8, 8, 2), timeout=0.2).generation == 2
            assert seed_of(segment.read_image(timeout=0.2)) == 2
        with contextlib.suppress(PeerError):
            reader.call("exit")
