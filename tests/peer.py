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
  publish_loop key width height         publish pattern images forever (a target for SIGKILL)
  pid                                   -> {"pid"}
  exit                                  detach everything and exit 0
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DEADLINE = 60.0


class PeerError(AssertionError):
    """The peer replied with an error, died, or did not answer in time."""


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
        """SIGKILL: no atexit, no finally, no detach -- the crash the protocol must survive."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=DEFAULT_DEADLINE)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call("exit", deadline=DEFAULT_DEADLINE)
            except (PeerError, BrokenPipeError, OSError):
                pass
            try:
                self.proc.wait(timeout=DEFAULT_DEADLINE)
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
    from patterns import pattern, seed_of

    from tkshm import ipc
    from tkshm.images import load_image

    handles: dict[str, ipc.Segment] = {}

    def say(**answer: Any) -> None:
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()

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
            segment = handles.setdefault(key, ipc.Segment.attach(key))
            lock = segment.lock(exclusive=cmd.get("exclusive", True))
            lock.__enter__()  # held until the process exits or is killed
            say(locked=True)
        elif op == "publish_loop":
            segment = handles.setdefault(key, ipc.Segment.create(key))
            say(started=True)
            seed = cmd.get("seed", 1)
            while True:
                segment.write_image(pattern(cmd["width"], cmd["height"], seed))
                seed = (seed + 1) % 65536
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
