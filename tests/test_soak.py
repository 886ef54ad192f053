"""Soak: several writers and several readers on one key for a while (tests/_soak_child.py).

Bounded in time: ``--soak-seconds N`` or ``TKSHM_SOAK_SECONDS`` (default 20). Counts
operations, torn reads (must be 0), errors by kind (none expected: nobody dies and no lock
is held for anywhere near the 5 s timeout), deadlocks (a process that does not answer by
its deadline) and files left once everyone has detached (must be 0). The figures are
printed in pytest's terminal summary (see the block at the end of conftest.py).
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import pytest
from conftest import files_for

HERE = os.path.dirname(os.path.abspath(__file__))
WRITERS = 3
READERS = 3
DEFAULT_SECONDS = 20.0
# After the end time, every process must answer within this long, or it counts as deadlocked.
GRACE = 30.0
# No process dies and none holds a lock for long, so no TkshmError at all is expected.
EXPECTED_ERRORS: frozenset[str] = frozenset()


def soak_seconds(config: pytest.Config) -> float:
    option = config.getoption("--soak-seconds", default=None)
    return float(option or os.environ.get("TKSHM_SOAK_SECONDS") or DEFAULT_SECONDS)


def _start(role: str, key: str, index: int, *end: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, os.path.join(HERE, "_soak_child.py"), role, key, str(index), *map(repr, end)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _answer(proc: subprocess.Popen[str], deadline: float) -> dict[str, Any] | None:
    """The next JSON line of ``proc``, or None if it gives none before ``deadline``."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
            return None
    line = proc.stdout.readline()
    return json.loads(line) if line else {"crash": f"exited with status {proc.wait()}"}


def _tell(procs: list[subprocess.Popen[str]], line: str) -> None:
    for proc in procs:
        if proc.poll() is None and proc.stdin is not None:
            proc.stdin.write(line + "\n")
            proc.stdin.flush()


def test_soak_many_writers_and_readers_no_torn_reads_no_deadlocks_no_leftovers(
    key: str, request: pytest.FixtureRequest, record_property: Any
) -> None:
    seconds = soak_seconds(request.config)
    procs: list[tuple[str, subprocess.Popen[str]]] = []
    figures: dict[str, Any] = {"seconds": seconds, "writers": WRITERS, "readers": READERS}
    ops: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    crashes: list[str] = []
    torn = deadlocks = 0
    try:
        # Writers first: each publishes once and says "ready", so readers never start
        # before there is an image.
        writers = [_start("writer", key, i + 1) for i in range(WRITERS)]
        procs += [("writer", p) for p in writers]
        for proc in writers:
            assert _answer(proc, time.monotonic() + GRACE) == {"ready": True}, proc.args
        end = time.monotonic() + seconds
        _tell(writers, repr(end))
        readers = [_start("reader", key, i + 1, end) for i in range(READERS)]
        procs += [("reader", p) for p in readers]
        deadline = end + GRACE
        for role, proc in procs:
            answer = _answer(proc, deadline)
            if answer is None:
                deadlocks += 1
                continue
            if "crash" in answer:
                crashes.append(f"{role} {proc.pid}: {answer['crash']}")
                continue
            ops[role] += answer["ops"]
            torn += answer["torn"]
            errors.update(answer["errors"])
        _tell(writers, "detach")  # every reader is done: the writers may detach now
        for role, proc in procs:
            try:
                status = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                deadlocks += 1
                continue
            if status != 0:
                crashes.append(f"{role} {proc.pid} exited with status {status}: {proc.stderr.read()[-2000:]}")
    finally:
        for _, proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
    left = files_for(key)
    figures.update(
        writes=ops["writer"], reads=ops["reader"], torn_reads=torn, errors=dict(errors),
        deadlocks=deadlocks, crashes=len(crashes), files_left=len(left),
    )  # fmt: skip
    summary = "soak: " + ", ".join(f"{name} {value}" for name, value in figures.items())
    record_property("tkshm_soak", summary)
    print(f"\n{summary}")
    assert crashes == []
    assert deadlocks == 0
    assert torn == 0
    assert set(errors) <= EXPECTED_ERRORS, errors
    assert left == []
    assert ops["writer"] > 0 and ops["reader"] > 0
