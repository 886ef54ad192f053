"""Behaviour 7: segment files are private, keys never share a segment, and a hostile key either
maps to a safe name inside the segment directory or is refused with a sentence.

The segments are made by separate processes (peers); this process checks the files.

Modes and owners are POSIX checks. On Windows what keeps a segment private is where its names
live: the lock file in the user's own temporary folder and the mappings in the session's
``Local\\`` namespace; the tests of keys and names apply everywhere (see tests/platforms.py)."""

from __future__ import annotations

import os
import re
import stat
import tempfile
from pathlib import Path

import pytest
from conftest import files_for
from patterns import seed_of
from peer import Peer, PeerError
from platforms import assert_held, directory_entries, lock_file, posix_only, windows_only

from tkshm import ipc

SAFE_FILE = re.compile(r"tkshm_[A-Za-z0-9_-]+\.(seg|lock|slot[0-3])")


def mode_of(path: str | Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@posix_only("file modes and owners; Windows has neither for these files")
def test_segment_files_are_0600_in_a_0700_directory_even_with_a_loose_umask(
    isolated_dir: str, key: str
) -> None:
    fresh = os.path.join(isolated_dir, "not-yet-made")
    with Peer(env={"TKSHM_DIR": fresh}) as peer:
        peer.call("umask", mask=0)  # what a careless parent shell might pass on
        peer.call("publish", key=key, width=8, height=8, seed=1)
        assert mode_of(fresh) == 0o700
        entries = sorted(os.listdir(fresh))
        assert entries == directory_entries(key)
        for entry in entries:
            assert mode_of(os.path.join(fresh, entry)) == 0o600, entry
            assert os.stat(os.path.join(fresh, entry)).st_uid == os.geteuid()
        assert peer.call("detach", key=key)["removed"] is True
    assert os.listdir(fresh) == []
    os.rmdir(fresh)


@posix_only("the default directory is /dev/shm/tkshm-<uid>, checked by mode")
def test_default_segment_directory_and_files_are_private(key: str, peer: Peer) -> None:
    peer.call("umask", mask=0)
    peer.call("publish", key=key, width=8, height=8, seed=1)
    directory = ipc.segment_directory()
    assert directory == f"/dev/shm/tkshm-{os.geteuid()}"
    assert mode_of(directory) == 0o700
    for path in files_for(key):
        assert mode_of(path) == 0o600, path
    assert peer.call("detach", key=key)["removed"] is True


@windows_only("the counterpart of the /dev/shm/tkshm-<uid> test above")
def test_default_lock_files_are_in_the_users_temp_folder_and_go_with_the_last_holder(
    key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TKSHM_DIR", raising=False)
    directory = os.path.join(tempfile.gettempdir(), "tkshm")
    assert ipc.segment_directory() == directory
    with Peer() as peer:
        peer.call("publish", key=key, width=8, height=8, seed=1)
        assert_held(key)
        assert lock_file(key) == os.path.join(directory, ipc.native_name(key) + ".lock")
        assert os.path.isfile(lock_file(key))
        assert ipc.info(key=key).path == "Local\\" + ipc.native_name(key)  # the session's namespace
        assert peer.call("detach", key=key)["removed"] is True
    assert files_for(key) == []
    assert not os.path.exists(lock_file(key))


LOOKALIKE_SUFFIXES = ["/x", "_x", " x", ".x", "\\x", "__x", "/X", "x" * 40 + "1", "x" * 40 + "2"]


def test_keys_that_look_alike_never_share_a_segment(key: str, peers: list[Peer]) -> None:
    keys = [key + suffix for suffix in LOOKALIKE_SUFFIXES]
    writer, reader = Peer(), Peer()
    peers.extend([writer, reader])  # closing the writer detaches whatever a failure left
    for seed, k in enumerate(keys, start=1):
        writer.call("publish", key=k, width=4 + seed, height=4, seed=seed)
    for seed, k in enumerate(keys, start=1):
        assert reader.call("read", key=k) == {"seed": seed, "width": 4 + seed, "height": 4}
        assert seed_of(ipc.read_image(key=k)) == seed
        assert_held(k)
    for k in keys:
        assert writer.call("detach", key=k)["removed"] is True
    assert all(files_for(k) == [] for k in keys)


HOSTILE_KEYS = {
    "parent-dirs": "../../etc/passwd",
    "absolute": "/etc/passwd",
    "slash": "/",
    "dot": ".",
    "dot-dot": "..",
    "traversal-in-middle": "a/../../b",
    "tilde": "~root",
    "option-like": "--help",
    "shell": "$(touch pwned); `id`",
    "glob": "*",
    "space": " ",
    "newline": "a\nb",
    "looks-like-our-file": "tkshm_x.seg",
    "cjk-with-slash": "图像/键",
    "cyrillic": "ключ",
    "emoji": "🖼️ photo",
    "right-to-left-override": "\u202egpj.exe",
    "nfd": "e\u0301",
    "nfc": "\u00e9",
    "lone-surrogate": "\ud800",
    "255-wide-chars": "鍵" * 255,
}


@pytest.mark.parametrize("kind", list(HOSTILE_KEYS))
def test_hostile_key_maps_to_a_safe_name_inside_the_segment_directory(
    isolated_dir: str, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One level down, so that anything escaping the directory would show up beside it.
    directory = os.path.join(isolated_dir, "segments")
    monkeypatch.setenv("TKSHM_DIR", directory)
    hostile = HOSTILE_KEYS[kind]
    with Peer() as peer:
        peer.call("publish", key=hostile, width=3, height=5, seed=77)
        entries = sorted(os.listdir(directory))
        assert entries == directory_entries(hostile)
        assert all(SAFE_FILE.fullmatch(e) for e in entries), entries
        assert os.listdir(isolated_dir) == ["segments"]  # nothing was made beside it
        assert seed_of(ipc.read_image(key=hostile)) == 77
        (listed,) = ipc.list_segments()
        if kind != "lone-surrogate":  # stored as UTF-8 with surrogatepass, shown with U+FFFD
            assert listed.key == hostile
        assert peer.call("detach", key=hostile)["removed"] is True
    assert os.listdir(directory) == []
    os.rmdir(directory)


def test_unicode_normal_forms_are_different_keys(key: str, peer: Peer) -> None:
    composed, decomposed = key + "\u00e9", key + "e\u0301"
    peer.call("publish", key=composed, width=2, height=2, seed=1)
    peer.call("publish", key=decomposed, width=2, height=2, seed=2)
    assert seed_of(ipc.read_image(key=composed)) == 1
    assert seed_of(ipc.read_image(key=decomposed)) == 2
    assert peer.call("detach", key=composed)["removed"] is True
    assert peer.call("detach", key=decomposed)["removed"] is True
    assert files_for(composed) == files_for(decomposed) == []


REFUSED_KEYS = {
    "empty": ("", "non-empty string"),
    "nul": ("a\0b", "must not contain a NUL character"),
    "only-nul": ("\0", "must not contain a NUL character"),
    "10000-chars": ("k" * 10_000, "The key is 10,000 characters long; use at most 255."),
    "256-chars": ("k" * 256, "The key is 256 characters long; use at most 255."),
    "10000-chars-of-slashes": ("../" * 3334, "use at most 255"),
}


@pytest.mark.parametrize("kind", list(REFUSED_KEYS))
def test_unusable_key_is_refused_with_a_clear_message(isolated_dir: str, peer: Peer, kind: str) -> None:
    bad, message = REFUSED_KEYS[kind]
    # In another process, through the whole API ...
    answer = peer.call("read_error", key=bad)
    assert answer["error"] == "InvalidKeyError"
    assert message in answer["message"]
    with pytest.raises(PeerError, match="InvalidKeyError"):
        peer.call("publish", key=bad, width=1, height=1, seed=1)
    # ... and in this one.
    for use in (
        lambda: ipc.native_name(bad),
        lambda: ipc.Segment.create(bad),
        lambda: ipc.Segment.attach(bad),
        lambda: ipc.read_image(key=bad),
        lambda: ipc.info(key=bad),
    ):
        with pytest.raises(ipc.InvalidKeyError, match=re.escape(message)) as raised:
            use()
        assert isinstance(raised.value, ipc.TkshmError)
        text = str(raised.value)
        assert text.endswith(".") and "\n" not in text and len(text) < 200
    assert not os.path.exists(isolated_dir) or os.listdir(isolated_dir) == []
