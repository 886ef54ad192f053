"""A separate process that uses tkshm on command: the "other program" of every IPC test.

The parent side is :class:`Peer`. It starts ``python tests/peer.py`` as a real process
(as a second copy of the app would be) and talks to it in JSON lines over a pipe:
``peer.call("publish", key=k, width=64, height=64, seed=1)`` returns the reply dict, or raises
if the peer reports an error or does not answer before the deadline. No test sleeps to wait
for a peer: each reply *is* the synchronisation point.

Commands (child side, see ``_handle``):
  publish key width height seed [mode]  publish a pattern image, stay attached -> {"gen"}
  publish_file key path                 publish an image file, stay attached
  write key width height seed           write into the handle already open under key
  detach key                            detach the handle opened under key -> {"removed"}
  read key                              read_image -> {"seed", "width", "height"}
  read_error key                        read_image expecting an error -> {"error": class name}
  attach key                            attach and stay attached
  hold_lock key exclusive               attach, take the lock and keep holding it -> "locked"
  hold_view key                         attach, open view() and keep it open -> {"seed"}
  hold_array key                        attach, open array() and keep it open -> {"seed"}
  publish_array key width height seed   publish a pattern as a NumPy array, stay attached
  array_loop key width height seed      write_array pattern arrays forever (a target for a kill)
  read_array key                        ipc.read_array -> {"seed", "shape"}
  wait_for_change key after [timeout]   wait for a generation newer than ``after`` -> {"gen"}
  publish_loop key width height         publish pattern images forever (a target for a kill)
  publish_sample key mode width height seed
                                        publish patterns.sample(...) in that mode, stay attached
  read_handle key                       read through the handle already open under key
                                        -> {"seed", "width", "height", "size"}
  digest key                            read_image -> {"sha256" of the RGBA bytes, "width", ...}
  info key                              ipc.info -> the SegmentInfo fields
  write_loop key width height seeds duration
                                        write pattern(seed) for each seed in turn, through one
                                        handle, for ``duration`` seconds (at least once each)
                                        -> {"count"}
  read_loop key duration                read (alternately through a kept handle and with
                                        read_image), checking every image with seed_of,
                                        for ``duration`` seconds -> {"count", "seen": {seed: size}}
  tear_header key                       write half of a new header over the segment's header,
                                        as a writer preempted mid-copy leaves it (hold the lock)
  umask mask                            set this process's umask (POSIX: Windows has no modes)
  pid                                   -> {"pid"}
  exit                                  detach everything and exit 0
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DEADLINE = 60.0
T = TypeVar("T")


class PeerError(AssertionError):
    """The peer replied with an error, died, or did not answer in time."""


def wait_until(condition: Callable[[], T | None], what: str, deadline: float = DEFAULT_DEADLINE) -> T:
    """Poll ``condition`` until it returns something truthy, and return that; fail loudly
    with ``what`` if the deadline passes first. The short pause keeps the poll cheap; it is
    never what the test relies on."""
    end = time.monotonic() + deadline
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > end:
            raise PeerError(f"gave up after {deadline} s waiting for {what}")
        time.sleep(0.001)


class Peer:
    """Parent-side handle of one peer process."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "peer.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        # A reader thread feeds a queue, so every wait can have a deadline.
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, op: str, **args: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()

    def reply(self, deadline: float = DEFAULT_DEADLINE) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=deadline)
        except queue.Empty:
            raise PeerError(f"peer {self.pid} did not answer within {deadline} s") from None
        if line is None:
            raise PeerError(f"peer {self.pid} exited with status {self.proc.wait()}")
        answer: dict[str, Any] = json.loads(line)
        if "fail" in answer:
            raise PeerError(f"peer {self.pid} failed: {answer['fail']}")
        return answer

    def call(self, op: str, deadline: float = DEFAULT_DEADLINE, **args: Any) -> dict[str, Any]:
        self.send(op, **args)
        return self.reply(deadline)

    def kill(self) -> None:
        """SIGKILL (POSIX) or TerminateProcess (Windows): no atexit, no finally, no detach --
        the crash the protocol must survive."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=DEFAULT_DEADLINE)

    def close(self, deadline: float = DEFAULT_DEADLINE) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(PeerError, BrokenPipeError, OSError):
                self.call("exit", deadline=deadline)
            try:
                self.proc.wait(timeout=deadline)
            except subprocess.TimeoutExpired:
                self.kill()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------- child side
def _child() -> None:
    sys.path.insert(0, HERE)
    import itertools

    from patterns import pattern, sample, seed_of
    from PIL import Image

    try:
        import numpy
    except ImportError:  # the array commands need it; the others do not
        numpy = None  # type: ignore[assignment]

    from tkshm import ipc
    from tkshm.header import RECORD_SIZE, Header, State
    from tkshm.images import load_image

    handles: dict[str, ipc.Segment] = {}
    # Locks taken by hold_lock. Keeping the context managers referenced matters: a dropped
    # one is garbage-collected, which closes its generator and so releases the lock.
    locks: list[contextlib.AbstractContextManager[None]] = []

    def say(**answer: Any) -> None:
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()

    def held(key: str, create: bool) -> ipc.Segment:
        # The handle already open under key, or a new one (never a second, leaked attach).
        if key not in handles:
            handles[key] = ipc.Segment.create(key) if create else ipc.Segment.attach(key)
        return handles[key]

    def handle(cmd: dict[str, Any]) -> bool:
        op, key = cmd["op"], cmd.get("key", ipc.DEFAULT_KEY)
        if op == "publish":
            image = pattern(cmd["width"], cmd["height"], cmd["seed"])
            if cmd.get("mode"):
                image = image.convert(cmd["mode"])
            handles[key] = ipc.publish(image, key=key)
            say(gen=handles[key].info().generation)
        elif op == "publish_file":
            handles[key] = ipc.publish(load_image(cmd["path"]).image, key=key)
            say(gen=handles[key].info().generation)
        elif op == "write":
            info = handles[key].write_image(pattern(cmd["width"], cmd["height"], cmd["seed"]))
            say(gen=info.generation)
        elif op == "detach":
            say(removed=handles.pop(key).detach())
        elif op == "attach":
            handles[key] = ipc.Segment.attach(key)
            say(ok=True)
        elif op == "read":
            image = ipc.read_image(key=key)
            say(seed=seed_of(image), width=image.width, height=image.height)
        elif op == "read_error":
            try:
                ipc.read_image(key=key)
            except ipc.TkshmError as exc:
                say(error=type(exc).__name__, message=str(exc))
            else:
                say(error=None)
        elif op == "hold_lock":
            segment = held(key, create=False)
            lock = segment.lock(exclusive=cmd.get("exclusive", True))
            lock.__enter__()  # held until the process exits or is killed
            locks.append(lock)
            say(locked=True)
        elif op == "hold_view":
            segment = held(key, create=False)
            view = segment.view()
            image = view.__enter__()  # held until the process exits or is killed
            locks.append(view)  # type: ignore[arg-type]
            say(seed=seed_of(image))
        elif op == "hold_array":
            segment = held(key, create=False)
            block = segment.array()
            array = block.__enter__()  # held until the process exits or is killed
            locks.append(block)  # type: ignore[arg-type]
            say(seed=seed_of(Image.fromarray(array.copy())))
        elif op == "publish_array":
            array = numpy.asarray(pattern(cmd["width"], cmd["height"], cmd["seed"]))
            handles[key] = ipc.publish_array(array, key=key)
            say(gen=handles[key].info().generation)
        elif op == "array_loop":
            segment = held(key, create=True)
            arrays = [numpy.asarray(pattern(cmd["width"], cmd["height"], cmd["seed"] + n)) for n in range(2)]
            say(started=True)
            for count in itertools.count():
                segment.write_array(arrays[count % 2])
        elif op == "read_array":
            array = ipc.read_array(key=key)
            say(seed=seed_of(Image.fromarray(array)), shape=list(array.shape))
        elif op == "wait_for_change":
            say(gen=held(key, create=False).wait_for_change(cmd["after"], cmd.get("timeout")))
        elif op == "publish_loop":
            segment = held(key, create=True)
            say(started=True)
            seed = cmd.get("seed", 1)
            while True:
                segment.write_image(pattern(cmd["width"], cmd["height"], seed))
                seed = (seed + 1) % 65536
        elif op == "publish_sample":
            image = sample(cmd["mode"], cmd["width"], cmd["height"], cmd["seed"])
            handles[key] = ipc.publish(image, key=key)
            say(gen=handles[key].info().generation)
        elif op == "read_handle":
            image = handles[key].read_image()
            say(seed=seed_of(image), width=image.width, height=image.height, size=handles[key].size)
        elif op == "digest":
            image = ipc.read_image(key=key)
            digest = hashlib.sha256(image.tobytes()).hexdigest()
            say(sha256=digest, mode=image.mode, width=image.width, height=image.height)
        elif op == "info":
            say(**ipc.info(key=key).as_dict())
        elif op == "write_loop":
            segment = held(key, create=True)
            images = [pattern(cmd["width"], cmd["height"], seed) for seed in cmd["seeds"]]
            count, end = 0, time.monotonic() + cmd["duration"]
            while count < len(images) or time.monotonic() < end:
                segment.write_image(images[count % len(images)])
                count += 1
            say(count=count)
        elif op == "read_loop":
            segment = held(key, create=False)
            seen: dict[str, list[int]] = {}
            count, end = 0, time.monotonic() + cmd["duration"]
            while count < 2 or time.monotonic() < end:
                image = segment.read_image() if count % 2 else ipc.read_image(key=key)
                seen[str(seed_of(image))] = [image.width, image.height]
                count += 1
            say(count=count, seen=seen)
        elif op == "tear_header":
            # What a reader sees if it looks while a writer is half-way through copying the
            # 76-byte header record: the first half of the next header over the rest of this
            # one. Only ever done while holding the exclusive lock (hold_lock), as a writer
            # does. The bytes go straight into this handle's own mapping (of the file on POSIX,
            # of the named mapping on Windows): no public call writes half a header.
            mapping = handles[key]._mapping()
            old = Header.unpack(mapping[:RECORD_SIZE], len(mapping))
            new = Header(State.WRITING, old.generation + 1, 640, 480, old.capacity, os.getpid(), 0).pack()
            mapping[: len(new) // 2] = new[: len(new) // 2]
            say(ok=True)
        elif op == "umask":
            os.umask(cmd["mask"])
            say(ok=True)
        elif op == "pid":
            say(pid=os.getpid())
        elif op == "exit":
            for segment in handles.values():
                segment.detach()
            say(ok=True)
            return False
        else:
            say(fail=f"unknown op {op}")
        return True

    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            if not handle(cmd):
                break
        except Exception as exc:  # report to the parent; the test decides what it means
            say(fail=f"{type(exc).__name__}: {exc}")


if __name__ == "__main__":
    _child()
