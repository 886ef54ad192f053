"""Shared fixtures: a unique key per test, and proof that no test leaves segment files behind."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from peer import Peer  # noqa: E402

from tkshm import ipc  # noqa: E402


def files_for(key: str) -> list[str]:
    """Every file in the segment directory that belongs to ``key`` (temporary ones too)."""
    directory = ipc.segment_directory()
    if not os.path.isdir(directory):
        return []
    name = ipc.native_name(key)
    return sorted(entry for entry in os.listdir(directory) if entry.startswith(name))


@pytest.fixture
def key(request: pytest.FixtureRequest) -> Iterator[str]:
    """A key no other test uses; the test fails if files for it remain afterwards."""
    value = f"test-{request.node.name[:40]}-{uuid.uuid4().hex[:8]}"
    yield value
    left = files_for(value)
    if left:
        ipc.clean()  # do not let one broken test leak into the next
    assert not left, f"files left behind for key {value!r}: {left}"


@pytest.fixture
def peer() -> Iterator[Peer]:
    """One separate process running tkshm commands (see tests/peer.py)."""
    with Peer() as p:
        yield p


@pytest.fixture
def peers() -> Iterator[list[Peer]]:
    """Start more peers with ``peers.append(Peer())``; all are closed at the end."""
    started: list[Peer] = []
    yield started
    for p in started:
        p.close()
