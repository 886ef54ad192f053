"""Frames: the ring of slots, reading into an image or a view, and waking on a publish.

The promises of ``tkshm.frames``: the writer never waits for a reader, a reader never sees a
torn frame, ``read_image(into=)`` and ``view()`` copy nothing they need not, and
``wait_for_change`` is woken by the publish.
"""

from __future__ import annotations

import select
import threading

import pytest
from patterns import pattern, seed_of
from peer import Peer, wait_until
from PIL import Image
from platforms import WINDOWS, capacity_for, overwrite_header, posix_only, resume, suspend

from tkshm import frames, ipc, ring
from tkshm.errors import ImageError, LockTimeoutError
from tkshm.header import RECORD_SIZE


def test_read_into_fills_the_callers_image_in_place_and_returns_it(key: str) -> None:
    with ipc.publish(pattern(40, 30, 5), key=key) as segment:
        target = pattern(40, 30, 9)
        assert segment.read_image(into=target) is target
        assert seed_of(target) == 5
        segment.write_image(pattern(40, 30, 6))
        assert ipc.read_image(key=key, into=target) is target
        assert seed_of(target) == 6
        assert segment.last_frame is not None and segment.last_frame.generation == 2


@pytest.mark.parametrize(("mode", "size"), [("RGBA", (30, 40)), ("RGB", (40, 30)), ("RGBA", (1, 1))])
def test_read_into_an_image_of_another_size_or_mode_is_refused_and_left_alone(
    key: str, mode: str, size: tuple[int, int]
) -> None:
    with ipc.publish(pattern(40, 30, 5), key=key) as segment:
        target = Image.new(mode, size)
        before = target.tobytes()
        with pytest.raises(ImageError, match="40x30 frame"):
            segment.read_image(into=target)
        assert target.tobytes() == before


def test_view_shows_the_frame_without_a_copy_and_is_closed_after_the_block(key: str) -> None:
    with ipc.publish(pattern(64, 48, 7), key=key) as segment, ipc.Segment.attach(key) as reader:
        with reader.view() as image:
            assert (image.mode, image.size, image.readonly) == ("RGBA", (64, 48), 1)
            assert seed_of(image.copy()) == 7
            assert reader.last_frame is not None and reader.last_frame.generation == 1
        with pytest.raises(ValueError, match="closed image"):
            image.getpixel((0, 0))
        segment.write_image(pattern(64, 48, 8))
        assert reader.detach() is False  # the mapping closes: the view let go of it


def test_a_view_keeps_its_frame_while_another_handle_writes_new_ones(key: str) -> None:
    with ipc.publish(pattern(64, 48, 1), key=key) as writer, ipc.Segment.attach(key) as reader:
        with reader.view() as image:
            for seed in range(2, 12):
                writer.write_image(pattern(64, 48, seed), timeout=1.0)
                assert seed_of(image.copy()) == 1
        assert seed_of(reader.read_image()) == 11


def test_writer_never_waits_for_a_reader_stopped_mid_copy_or_a_stopped_view(key: str) -> None:
    with ipc.publish(pattern(640, 480, 1), key=key) as writer, Peer() as copying, Peer() as viewing:
        copying.call("hold_lock", key=key, exclusive=False)  # as a reader in the middle of its copy
        writer.write_image(pattern(640, 480, 2))
        assert viewing.call("hold_view", key=key)["seed"] == 2
        suspend(copying.pid)
        suspend(viewing.pid)
        try:
            for seed in range(3, 103):  # a LockTimeoutError here would be the writer waiting
                writer.write_image(pattern(640, 480, seed), timeout=0.5)
            assert seed_of(ipc.read_image(key=key, timeout=1.0)) == 102
            slots = [path for path in ipc.remains(key) if ".slot" in path]
            assert len(slots) <= ipc.MAX_SLOTS, slots  # a fixed ring, not a frame per reader
            assert writer.size <= 4096 + ipc.MAX_SLOTS * capacity_for(640 * 480 * 4) + 4096 * ipc.MAX_SLOTS
        finally:
            resume(copying.pid)
            resume(viewing.pid)


def test_a_reader_killed_while_it_holds_a_frame_frees_it_at_once(key: str) -> None:
    with ipc.publish(pattern(32, 32, 1), key=key) as writer, Peer() as reader:
        reader.call("hold_view", key=key)
        reader.kill()
        with writer.lock(exclusive=True, timeout=5.0):  # every slot free: nobody holds a frame
            pass


def test_writer_killed_mid_stream_leaves_the_last_complete_frame(key: str) -> None:
    with ipc.publish(pattern(160, 120, 1), key=key), Peer() as holder, Peer() as writer:
        holder.call("hold_lock", key=key, exclusive=False)  # a reader keeps the ring in use
        writer.call("publish_loop", key=key, width=160, height=120, seed=2)
        with ipc.Segment.attach(key) as reader:
            wait_until(lambda: reader.peek_generation() > 50, "the writer to publish")
            writer.kill()  # wherever it is in a frame
            assert not reader.publisher_alive()
            assert seed_of(reader.read_image(timeout=5.0)) >= 2  # whole: the newest complete frame


def test_a_writer_killed_while_rewriting_the_header_leaves_the_frame_it_named(key: str, peer: Peer) -> None:
    """The header is kept twice (``tkshm.header``): a writer killed half-way through storing
    one copy leaves the other whole, and readers read that one."""
    peer.call("publish", key=key, width=64, height=48, seed=3)
    with ipc.Segment.attach(key) as reader:
        peer.call("hold_lock", key=key, exclusive=True)  # a writer, about to store the header
        peer.call("tear_header", key=key)  # half of it stored...
        peer.kill()  # ...when it dies
        info = reader.info(timeout=1.0)
        assert (info.state, info.generation, info.width, info.height) == ("ready", 1, 64, 48)
        assert seed_of(reader.read_image(timeout=1.0)) == 3
        assert [entry.state for entry in ipc.list_segments() if entry.key == key] == ["ready"]
        reader.write_image(pattern(64, 48, 4))  # the next write repairs both copies
        assert seed_of(ipc.read_image(key=key)) == 4


def test_wait_for_change_is_woken_by_a_publish_in_another_process(key: str, peer: Peer) -> None:
    peer.call("publish", key=key, width=16, height=16, seed=1)
    with ipc.Segment.attach(key) as reader:
        assert reader.wait_for_change(0, timeout=5.0) == 1  # already newer: no wait
        woken: list[int] = []
        thread = threading.Thread(target=lambda: woken.append(reader.wait_for_change(1, timeout=60.0)))
        thread.start()
        peer.call("write", key=key, width=16, height=16, seed=2)
        thread.join(60.0)
        assert woken == [2]
        assert seed_of(reader.read_image()) == 2


def test_a_reader_that_starts_waiting_just_after_a_publish_is_woken_by_the_next(key: str) -> None:
    """The writer lists the wake-up sockets again only when the directory has changed
    (``tkshm._wake``): a socket bound in the same tick of the clock as its last listing must
    not be missed."""
    with ipc.publish(pattern(8, 8, 1), key=key) as writer:
        for seed in range(2, 12):
            with ipc.Segment.attach(key) as reader:
                generation = reader.peek_generation()
                fd = reader.wake_fileno()  # its socket, bound microseconds after that publish
                writer.write_image(pattern(8, 8, seed))
                if fd is not None:  # (None on Windows, which polls)
                    assert select.select([fd], [], [], 10.0)[0] == [fd], f"not woken for frame {seed}"
                assert reader.wait_for_change(generation, timeout=10.0) == generation + 1


def test_wait_for_change_returns_the_unchanged_generation_on_timeout(key: str) -> None:
    with ipc.publish(pattern(8, 8, 1), key=key) as segment:
        assert segment.wait_for_change(1, timeout=0.05) == 1
        assert segment.wait_for_change(5, timeout=0) == 1


def test_wake_descriptor_is_readable_after_a_publish_and_drained_after(key: str, peer: Peer) -> None:
    peer.call("publish", key=key, width=8, height=8, seed=1)
    with ipc.Segment.attach(key) as reader:
        fd = reader.wake_fileno()
        if WINDOWS:
            assert fd is None  # no wake-up sockets: Windows readers poll the generation
            return
        assert fd is not None
        assert select.select([fd], [], [], 0) == ([], [], [])
        peer.call("write", key=key, width=8, height=8, seed=2)
        assert select.select([fd], [], [], 30.0)[0] == [fd]
        reader.drain_wakeups()
        assert select.select([fd], [], [], 0) == ([], [], [])
    assert not any(".wake." in path for path in ipc.remains(key))  # the socket went with us


@posix_only("wake-up sockets")
def test_a_wake_socket_left_by_a_killed_reader_is_removed_by_the_next_publish(key: str) -> None:
    with ipc.publish(pattern(8, 8, 1), key=key) as writer, Peer() as reader:
        reader.call("attach", key=key)
        reader.send("wait_for_change", key=key, after=99)
        wait_until(lambda: any(".wake." in path for path in ipc.remains(key)), "the reader to wait")
        reader.kill()
        writer.write_image(pattern(8, 8, 2))
        assert not any(".wake." in path for path in ipc.remains(key))


def test_publisher_alive_follows_the_publishing_process(key: str, peer: Peer) -> None:
    peer.call("publish", key=key, width=8, height=8, seed=1)
    with ipc.Segment.attach(key) as reader:
        assert reader.publisher_alive()
        peer.kill()
        assert not reader.publisher_alive()
        assert seed_of(reader.read_image()) == 1  # its last frame stays while we hold it


def test_a_still_written_again_takes_turns_in_two_slots_and_a_lock_exclusive_block_keeps_readers_out(
    key: str,
) -> None:
    with ipc.publish(pattern(8, 8, 1), key=key) as writer, ipc.Segment.attach(key) as reader:
        assert [path for path in ipc.remains(key) if ".slot" in path][1:] == []  # one frame, in place
        for seed in range(2, 6):
            writer.write_image(pattern(8, 8, seed))
            assert seed_of(reader.read_image()) == seed
            assert writer.last_frame is not None and writer.last_frame.slot == (seed - 1) % 2  # 1, 0, 1, ...
        assert [path for path in ipc.remains(key) if ".slot" in path][2:] == []  # never a third
        with writer.lock(exclusive=True), pytest.raises(LockTimeoutError):
            reader.read_image(timeout=0.05)


def test_a_writer_stopped_while_it_lays_the_slots_out_keeps_no_reader_from_the_newest_frame(
    key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Until a reader has leased a frame, a write lays the slots out afresh (``Ring._compact``),
    holding every slot but the newest frame's. A reader that comes while the writer is stopped
    there (a SIGSTOP, a debugger; here a reader in another handle called from inside the
    lay-out) gets the newest frame at once instead of waiting for the writer."""
    seen: list[int] = []
    lay_out = ring.Ring._lay_out

    def reader_arrives(self: ring.Ring, newest: int | None, nbytes: int) -> frames.Slot:
        slot = lay_out(self, newest, nbytes)
        seen.append(seed_of(ipc.read_image(key=key, timeout=0.5)))  # a LockTimeoutError: it waited
        return slot

    with ipc.publish(pattern(64, 48, 1), key=key) as writer:
        monkeypatch.setattr(ring.Ring, "_lay_out", reader_arrives)
        writer.write_image(pattern(64, 48, 2))
        assert seen == [1]  # the frame before, whole, while the new one is laid out
        assert seed_of(ipc.read_image(key=key)) == 2


def test_a_header_damaged_while_readers_keep_the_frames_apart_is_repaired_by_the_next_write(key: str) -> None:
    with ipc.publish(pattern(32, 32, 1), key=key) as writer, ipc.Segment.attach(key) as reader:
        writer.write_image(pattern(32, 32, 2))
        frames.note_lease(writer._mapping(), missed=True)  # as a reader that found a slot taken
        overwrite_header(writer, bytes(RECORD_SIZE))  # both copies: a hostile neighbour's zeros
        writer.write_image(pattern(32, 32, 3))
        assert seed_of(reader.read_image()) == 3


def test_a_view_refuses_to_be_written_instead_of_changing_a_silent_copy(key: str) -> None:
    with ipc.publish(pattern(16, 16, 3), key=key) as segment, segment.view() as image:
        for write in (
            lambda: image.paste((1, 2, 3, 4), (0, 0, 4, 4)),
            lambda: image.putpixel((0, 0), (1, 2, 3, 4)),
            lambda: image.putalpha(7),
            lambda: image.putdata([(1, 2, 3, 4)] * 256),
        ):
            with pytest.raises(ImageError, match="view of the frame in shared memory"):
                write()
        assert seed_of(image.copy()) == 3  # untouched, and copies are free to change
        copy = image.copy()
        copy.putpixel((0, 0), (1, 2, 3, 4))


def test_detaching_inside_a_view_block_closes_the_view_and_the_mapping(key: str) -> None:
    with ipc.publish(pattern(16, 16, 3), key=key), ipc.Segment.attach(key) as reader:
        with reader.view() as image:
            assert reader.detach() is False
            with pytest.raises(ValueError, match="closed image"):
                image.getpixel((0, 0))
        assert not reader.is_attached
