"""pytest helpers for programs that use tkshm; opt in from a test module or ``conftest.py``::

    pytest_plugins = ["tkshm.testing"]

This module is a pytest plugin and imports pytest, which tkshm itself does not need: import
it only under pytest. Nothing is registered unless a test suite opts in. It gives:

* the fixture ``tkshm_key``: a key no other test uses. After the test, the test fails if the
  operating system still holds anything for that key (:func:`tkshm.ipc.remains`: the
  segment's files on POSIX, its lock file and mapping on Windows) -- a handle left attached,
  or a publisher that was killed instead of detaching;
* the fixture ``tkshm_publisher``: ``tkshm_publisher(image)`` publishes an image (a
  ``PIL.Image`` or a file name) from a separate Python process under ``tkshm_key`` (or
  ``key=...``) and returns once it is published; every publisher still running detaches at
  the end of the test, before the check above;
* :class:`Publisher`, the same without pytest's fixtures.

The separate process is ``sys.executable`` started with :mod:`subprocess` (no ``fork``), and
it is synchronised through its pipes only: it prints the generation once it has published,
and detaches when its standard input is closed. So it works the same on Linux, macOS and
Windows, and every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import secrets
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import IO, Final, Protocol

import pytest
from PIL import Image

from . import ipc
from .images import to_rgba

__all__ = ["DEFAULT_DEADLINE", "Publish", "Publisher", "PublisherError", "tkshm_key", "tkshm_publisher"]

# Starting Python and importing Pillow takes a fraction of a second; a loaded CI machine
# can take many times that. Past this, something is wrong and the test says so.
DEFAULT_DEADLINE: Final = 60.0
_NOT_IN_A_KEY: Final = re.compile(r"[^A-Za-z0-9_.-]+")
# The publishing process. Raw RGBA on standard input ("-") or a file to decode; it prints
# the generation it wrote, then stays attached until its standard input is closed (or the
# parent dies, which closes it too), and detaches on the way out.
_CHILD: Final = """\
import sys
from PIL import Image
from tkshm import ipc
from tkshm.images import load_image

key, source = sys.argv[1], sys.argv[2]
if source == "-":
    width, height = map(int, sys.stdin.buffer.readline().split())
    image = Image.frombytes("RGBA", (width, height), sys.stdin.buffer.read(width * height * 4))
else:
    image = load_image(source).image
with ipc.publish(image, key=key) as segment:
    print(segment.info().generation, flush=True)
    sys.stdin.buffer.read()
"""


class PublisherError(AssertionError):
    """The publishing process failed, or did not publish within its deadline."""


class Publisher:
    """An image published under ``key`` by a separate Python process, kept until :meth:`close`.

    The constructor returns once the image is published (or raises :class:`PublisherError`
    after ``deadline`` seconds). ``generation`` is the generation the process wrote.
    """

    def __init__(
        self, image: Image.Image | str | os.PathLike[str], key: str, deadline: float = DEFAULT_DEADLINE
    ) -> None:
        self.key = key
        self._killed = False
        source = "-" if isinstance(image, Image.Image) else os.fspath(image)
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, key, source],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_child_environment(),
        )  # fmt: skip
        self._stdout: queue.Queue[bytes] = queue.Queue()
        self._stderr: list[bytes] = []
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._readers = [
            threading.Thread(target=_lines, args=(self._proc.stdout, self._stdout.put), daemon=True),
            threading.Thread(target=_lines, args=(self._proc.stderr, self._stderr.append), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        try:
            if isinstance(image, Image.Image):
                self._send(to_rgba(image))
            self.generation = self._published(deadline)
        except BaseException:
            self.kill()
            raise

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _send(self, rgba: Image.Image) -> None:
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(b"%d %d\n" % rgba.size + rgba.tobytes())
            self._proc.stdin.flush()
        except BrokenPipeError:  # it died before reading; _published says why
            pass

    def _published(self, deadline: float) -> int:
        try:
            line = self._stdout.get(timeout=deadline)
        except queue.Empty:
            raise PublisherError(
                f"the publisher of key {self.key!r} did not publish within {deadline:g} s"
            ) from None
        if not line:
            raise PublisherError(f"the publisher of key {self.key!r} failed: {self._last_error()}")
        return int(line)

    def _last_error(self) -> str:
        try:
            status = self._proc.wait(timeout=DEFAULT_DEADLINE)
        except subprocess.TimeoutExpired:
            status = None
        self._readers[1].join(timeout=DEFAULT_DEADLINE)
        lines = b"".join(self._stderr).decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else f"it exited with status {status} and said nothing"

    def close(self, deadline: float = DEFAULT_DEADLINE) -> None:
        """Let the process detach and exit (closing its standard input); wait ``deadline``
        seconds at most, then kill it and raise. Idempotent, and nothing to do after
        :meth:`kill`."""
        if self._killed:
            return
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self._proc.stdin.close()
        try:
            status = self._proc.wait(timeout=deadline)
        except subprocess.TimeoutExpired:
            self.kill()
            raise PublisherError(
                f"the publisher of key {self.key!r} did not detach within {deadline:g} s"
            ) from None
        self._close_pipes()
        if status != 0:
            raise PublisherError(f"the publisher of key {self.key!r} failed: {self._last_error()}")

    def kill(self) -> None:
        """End the process abruptly, as a crash would: it does not detach."""
        self._killed = True
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait(timeout=DEFAULT_DEADLINE)
        self._close_pipes()

    def _close_pipes(self) -> None:
        for reader in self._readers:
            reader.join(timeout=DEFAULT_DEADLINE)
        for stream in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
            if stream is not None and not stream.closed:
                with contextlib.suppress(BrokenPipeError):
                    stream.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Publish(Protocol):
    """The type of the ``tkshm_publisher`` fixture, for annotating tests that use it."""

    def __call__(
        self, image: Image.Image | str | os.PathLike[str], key: str | None = None, deadline: float = ...
    ) -> Publisher: ...


def _child_environment() -> dict[str, str]:
    """Our environment, plus what the child needs to import this very tkshm.

    An installed tkshm (site-packages, or an editable install) is found by the child as it
    was by us. A source checkout that pytest put on ``sys.path`` is not, so its folder is
    handed over through ``PYTHONPATH`` -- never site-packages itself, which would then come
    before the standard library.
    """
    env = dict(os.environ)
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.basename(package_parent) not in ("site-packages", "dist-packages"):
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    return env


def _lines(stream: IO[bytes], put: Callable[[bytes], object]) -> None:
    for line in stream:
        put(line)
    put(b"")  # the end


@pytest.fixture
def tkshm_key(request: pytest.FixtureRequest) -> Iterator[str]:
    """A key no other test uses; the test fails if anything for it is left behind."""
    key = f"test-{_NOT_IN_A_KEY.sub('-', request.node.name)[:40]}-{secrets.token_hex(4)}"
    yield key
    left = ipc.remains(key)
    if left:
        pytest.fail(
            f"the segment for key {key!r} was left behind: {', '.join(left)}. Detach every handle "
            "(or close the publisher) before the test ends; after a deliberate kill, ipc.clean() removes it.",
            pytrace=False,
        )


@pytest.fixture
def tkshm_publisher(tkshm_key: str) -> Iterator[Publish]:
    """``tkshm_publisher(image, key=None, deadline=...)``: publish from a separate process."""
    started: list[Publisher] = []

    def publish(
        image: Image.Image | str | os.PathLike[str],
        key: str | None = None,
        deadline: float = DEFAULT_DEADLINE,
    ) -> Publisher:
        publisher = Publisher(image, key if key is not None else tkshm_key, deadline)
        started.append(publisher)
        return publisher

    yield publish
    for publisher in reversed(started):
        publisher.close()
