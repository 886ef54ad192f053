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
import queue
import subprocess
import sys
import threading
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


class Child:
    """One soak process. A thread reads its stdout into a queue, so that every wait has a
    deadline (on POSIX and on Windows, where ``select`` does not work on pipes)."""

    def __init__(self, role: str, key: str, index: int, *end: float) -> None:
        self.role = role
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "_soak_child.py"), role, key, str(index), *map(repr, end)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self._lines: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put("")  # the end

    def answer(self, deadline: float) -> dict[str, Any] | None:
        """The next JSON line, or None if none comes before ``deadline`` (a monotonic time)."""
        try:
            line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return None
        return json.loads(line) if line else {"crash": f"exited with status {self.proc.wait()}"}


def _tell(children: list[Child], line: str) -> None:
    for child in children:
        if child.proc.poll() is None and child.proc.stdin is not None:
            child.proc.stdin.write(line + "\n")
            child.proc.stdin.flush()


def test_soak_many_writers_and_readers_no_torn_reads_no_deadlocks_no_leftovers(
    key: str, request: pytest.FixtureRequest, record_property: Any
) -> None:
    seconds = soak_seconds(request.config)
    children: list[Child] = []
    figures: dict[str, Any] = {"seconds": seconds, "writers": WRITERS, "readers": READERS}
    ops: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    crashes: list[str] = []
    torn = deadlocks = 0
    try:
        # Writers first: each publishes once and says "ready", so readers never start
        # before there is an image.
        writers = [Child("writer", key, i + 1) for i in range(WRITERS)]
        children += writers
        for writer in writers:
            assert writer.answer(time.monotonic() + GRACE) == {"ready": True}, writer.proc.args
        end = time.monotonic() + seconds
        _tell(writers, repr(end))
        children += [Child("reader", key, i + 1, end) for i in range(READERS)]
        deadline = end + GRACE
        for child in children:
            answer = child.answer(deadline)
            if answer is None:
                deadlocks += 1
                continue
            if "crash" in answer:
                crashes.append(f"{child.role} {child.proc.pid}: {answer['crash']}")
                continue
            ops[child.role] += answer["ops"]
            torn += answer["torn"]
            errors.update(answer["errors"])
        _tell(writers, "detach")  # every reader is done: the writers may detach now
        for child in children:
            try:
                status = child.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                deadlocks += 1
                continue
            if status != 0:
                assert child.proc.stderr is not None
                stderr = child.proc.stderr.read()[-2000:]
                crashes.append(f"{child.role} {child.proc.pid} exited with status {status}: {stderr}")
    finally:
        for child in children:
            if child.proc.poll() is None:
                child.proc.kill()
                child.proc.wait()
            child.reader.join(timeout=GRACE)  # it has read to the end: the pipe may close
            for stream in (child.proc.stdin, child.proc.stdout, child.proc.stderr):
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
