"""A command left running in a test (``tkshm put``), its output read as it comes.

One thread reads stdout line by line into a queue, so every wait has a deadline; another
collects stderr, so a chatty ``--trace`` can never fill its pipe and stall the process. With
``merged=True`` stderr goes into stdout instead, in the order a terminal would show them.

Ending it: on POSIX :meth:`Running.stop` sends a signal (``put`` catches SIGINT and SIGTERM
and detaches). On Windows a child started with pipes has no console to send Ctrl+C through
(test_windows_habits.py makes one for that test alone), so there ``stop`` terminates it
(``TerminateProcess``, a kill) and then removes the lock file the kill left, as the next attach
would.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
from collections.abc import Sequence
from typing import IO

from platforms import WINDOWS, remove_orphans

DEADLINE = 60.0


class Running:
    """``argv`` started now; :meth:`line` waits for its next stdout line, :meth:`stop` ends it."""

    def __init__(
        self,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        merged: bool = False,
        stdin: bool = False,
    ) -> None:
        self.env = {**os.environ, **(env or {})}
        self.proc = subprocess.Popen(
            list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT if merged else subprocess.PIPE,
            stdin=subprocess.PIPE if stdin else None, text=True, env=self.env, cwd=cwd,
        )  # fmt: skip
        self._stdout: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        self._ended: tuple[int, list[str], str] | None = None
        self._threads = [threading.Thread(target=self._read_stdout, args=(self.proc.stdout,), daemon=True)]
        if not merged:
            self._threads.append(
                threading.Thread(target=self._stderr.extend, args=(self.proc.stderr,), daemon=True)
            )
        for thread in self._threads:
            thread.start()

    def _read_stdout(self, stream: IO[str]) -> None:
        for line in stream:
            self._stdout.put(line)
        self._stdout.put(None)  # the end

    def lines(self, count: int) -> list[str]:
        """The next ``count`` lines, without their line ends: while it runs, or after it ended."""
        if self._ended is not None:
            rest = self._ended[1]
            taken, rest[:] = rest[:count], rest[count:]
            return [line.rstrip("\n") for line in taken]
        return [self.line().rstrip("\n") for _ in range(count)]

    def line(self) -> str:
        """The next line on stdout (for ``put``: the one it prints once the image is published)."""
        try:
            line = self._stdout.get(timeout=DEADLINE)
        except queue.Empty:
            raise AssertionError(f"process {self.proc.pid} printed nothing within {DEADLINE} s") from None
        assert line is not None, f"process {self.proc.pid} exited early: {self.finish()}"
        return line

    def stderr_so_far(self) -> str:
        """What it has written to stderr up to now (it is collected as it comes)."""
        return "".join(self._stderr)

    def finish(self) -> tuple[int, list[str], str]:
        """Wait for the exit; return the status, the stdout lines not yet read, and stderr."""
        if self._ended is None:
            status = self.proc.wait(timeout=DEADLINE)
            for thread in self._threads:
                thread.join(timeout=DEADLINE)
            rest: list[str] = []
            while (line := self._stdout.get_nowait()) is not None:
                rest.append(line)
            self._ended = status, rest, "".join(self._stderr)
        return self._ended

    def stop(self, signum: int = signal.SIGTERM) -> tuple[int, list[str], str]:
        """Send ``signum`` unless it has exited, then :meth:`finish`. On Windows: terminate
        it, then remove the lock file it leaves (see the module docstring)."""
        if WINDOWS:
            ended = self.kill()
            remove_orphans(self.env)
            return ended
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        return self.finish()

    def end_input(self) -> tuple[int, list[str], str]:
        """Close its standard input (started with ``stdin=True``), then :meth:`finish`: a
        command that waits for the end of its input exits by itself, alike on every platform."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        return self.finish()

    def kill(self) -> tuple[int, list[str], str]:
        """SIGKILL or TerminateProcess: no detach, so a segment it held alone is left as an orphan."""
        if self.proc.poll() is None:
            self.proc.kill()
        return self.finish()

    def close(self) -> None:
        """Teardown: stop it if still running (put detaches on SIGTERM), then close the pipes."""
        self.stop(signal.SIGTERM)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
