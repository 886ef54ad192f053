"""NumPy in and out of a segment: ``array()``, ``read_array``, ``write_array`` and the helpers.

The promises: ``array()`` *is* the frame in shared memory (no copy), read-only, leased while
its block runs, and a writer never waits for it, even when its holder is stopped; an array
kept after the block never crashes its process and never keeps the segment from going;
``write_array`` takes every layout OpenCV and NumPy hand out and stores exactly the RGBA that
Pillow would; and every bad array is one sentence, with nothing published.
"""

from __future__ import annotations

import gc
import hashlib
import os
import subprocess
import sys

import pytest

np = pytest.importorskip("numpy")

from patterns import pattern, seed_of  # noqa: E402
from peer import Peer, wait_until  # noqa: E402
from PIL import Image  # noqa: E402
from platforms import resume, suspend  # noqa: E402

from tkshm import ipc  # noqa: E402
from tkshm.errors import ArrayError, ImageTooLargeError, TkshmError  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rgba(width: int, height: int, seed: int):  # type: ignore[no-untyped-def]
    """A pattern image (tests/patterns.py) as an H x W x 4 array."""
    return np.asarray(pattern(width, height, seed))


def seed_of_array(array) -> int:  # type: ignore[no-untyped-def]
    return seed_of(Image.fromarray(np.ascontiguousarray(array)))


def test_an_array_published_here_is_read_in_another_process_byte_for_byte(key: str, peer: Peer) -> None:
    array = rgba(320, 240, 17)
    with ipc.publish_array(array, key=key):
        assert peer.call("read_array", key=key) == {"seed": 17, "shape": [240, 320, 4]}
        digest = peer.call("digest", key=key)
        assert digest["sha256"] == hashlib.sha256(array.tobytes()).hexdigest()


def test_an_array_published_by_another_process_is_read_with_array_and_read_array(
    key: str, peer: Peer
) -> None:
    peer.call("publish_array", key=key, width=200, height=100, seed=9)
    expected = rgba(200, 100, 9)
    copy = ipc.read_array(key=key)
    assert copy.shape == (100, 200, 4) and copy.dtype == np.uint8 and copy.flags.writeable
    assert np.array_equal(copy, expected)
    with ipc.Segment.attach(key) as segment, segment.array() as frame:
        assert np.array_equal(frame, expected)


def test_array_is_the_frame_in_the_mapping_itself_and_cannot_be_written(key: str) -> None:
    with ipc.publish_array(rgba(64, 48, 3), key=key) as segment, segment.array() as frame:
        mapping = np.frombuffer(segment._mapping(), dtype=np.uint8)
        assert np.shares_memory(frame, mapping)  # no copy: the frame where it lies
        assert (frame.shape, frame.dtype, frame.flags.writeable) == ((48, 64, 4), np.uint8, False)
        with pytest.raises(ValueError, match="read-only"):
            frame[0, 0, 0] = 1
        with pytest.raises(ValueError, match="WRITEABLE"):
            frame.flags.writeable = True
        assert seed_of_array(frame) == 3


def test_array_keeps_its_frame_while_another_handle_writes_new_ones(key: str) -> None:
    with ipc.publish_array(rgba(64, 48, 1), key=key) as writer, ipc.Segment.attach(key) as reader:
        with reader.array() as frame:
            for seed in range(2, 12):
                writer.write_array(rgba(64, 48, seed), timeout=1.0)  # never waits for the lease
                assert seed_of_array(frame) == 1
        assert seed_of_array(reader.read_array()) == 11


def test_writer_never_waits_for_a_stopped_process_holding_an_array(key: str) -> None:
    with ipc.publish_array(rgba(640, 480, 1), key=key) as writer, Peer() as holder:
        assert holder.call("hold_array", key=key)["seed"] == 1
        suspend(holder.pid)
        try:
            for seed in range(2, 52):  # a LockTimeoutError here would be the writer waiting
                writer.write_array(rgba(640, 480, seed), timeout=0.5)
            assert seed_of_array(ipc.read_array(key=key, timeout=1.0)) == 51
        finally:
            resume(holder.pid)


def test_a_process_killed_while_it_holds_an_array_frees_the_frame_at_once(key: str) -> None:
    with ipc.publish_array(rgba(32, 32, 1), key=key) as writer, Peer() as holder:
        holder.call("hold_array", key=key)
        holder.kill()
        with writer.lock(exclusive=True, timeout=5.0):  # every slot free: nobody holds a frame
            pass


def test_a_writer_killed_in_a_loop_of_write_array_leaves_a_whole_frame(key: str) -> None:
    with ipc.publish_array(rgba(320, 240, 1), key=key), Peer() as holder, Peer() as writer:
        holder.call("hold_lock", key=key, exclusive=False)  # a reader keeps the ring in use
        writer.call("array_loop", key=key, width=320, height=240, seed=100)
        with ipc.Segment.attach(key) as reader:
            wait_until(lambda: reader.peek_generation() > 20, "the writer to publish")
            writer.kill()  # wherever it is in a frame
            assert seed_of_array(reader.read_array(timeout=5.0)) in (100, 101)


def test_an_array_kept_after_its_block_and_after_detach_never_crashes_nor_keeps_the_segment(key: str) -> None:
    segment = ipc.publish_array(rgba(64, 48, 5), key=key)
    with segment.array() as frame:
        pass
    kept = frame[10:20]  # a slice of it, too, holds the pages
    assert segment.detach() is True  # the last holder: the segment goes, the array notwithstanding
    assert int(kept[0, 0, 3]) == 10 and seed_of_array(frame) == 5  # its pages are still mapped
    del frame, kept
    gc.collect()
    assert ipc.remains(key) == []


def test_a_reader_keeping_an_array_follows_a_segment_that_grows(key: str, peer: Peer) -> None:
    peer.call("publish_array", key=key, width=32, height=32, seed=1)
    with ipc.Segment.attach(key) as reader:
        with reader.array() as small:
            pass
        peer.call("write", key=key, width=1024, height=768, seed=2)  # the segment grows
        assert seed_of_array(reader.read_array()) == 2  # the old mapping is let go, not closed
        assert seed_of_array(small) == 1
    peer.call("detach", key=key)


@pytest.mark.parametrize("channels", ["rgb", "bgr", "bgra", "gray"])
def test_write_array_stores_what_pillow_makes_of_the_same_pixels(key: str, channels: str) -> None:
    source = rgba(97, 61, 4242)  # odd sizes: no row happens to line up
    if channels == "rgb":
        array = source[..., :3]
        expected = Image.fromarray(np.ascontiguousarray(array)).convert("RGBA")
    elif channels == "bgr":
        array = source[..., 2::-1]  # what cv2.cvtColor(..., COLOR_RGB2BGR) gives
        expected = Image.fromarray(np.ascontiguousarray(source[..., :3])).convert("RGBA")
    elif channels == "bgra":
        array = np.ascontiguousarray(source[..., [2, 1, 0, 3]])
        expected = Image.fromarray(source)
    else:
        array = source[..., 2]
        expected = Image.fromarray(np.ascontiguousarray(array)).convert("RGBA")
    with ipc.publish_array(array, key=key, channels=channels):  # type: ignore[arg-type]
        assert ipc.read_array(key=key).tobytes() == expected.tobytes()


@pytest.mark.parametrize(
    "layout", ["every other pixel", "a crop", "upside down", "transposed", "Fortran order"]
)
def test_write_array_takes_arrays_that_are_not_contiguous(key: str, layout: str) -> None:
    big = rgba(160, 120, 7)
    array = {
        "every other pixel": big[::2, ::2],
        "a crop": big[10:70, 20:140],
        "upside down": big[::-1],
        "transposed": big.transpose(1, 0, 2),
        "Fortran order": np.asfortranarray(big),
    }[layout]
    assert layout == "Fortran order" or not array.flags.c_contiguous
    with ipc.publish_array(array, key=key):
        assert np.array_equal(ipc.read_array(key=key), array)


def test_read_array_into_fills_the_callers_array_in_place(key: str) -> None:
    with ipc.publish_array(rgba(40, 30, 5), key=key) as segment:
        target = np.zeros((30, 40, 4), np.uint8)
        assert segment.read_array(into=target) is target
        assert seed_of_array(target) == 5
        segment.write_array(rgba(40, 30, 6))
        assert ipc.read_array(key=key, into=target) is target and seed_of_array(target) == 6


@pytest.mark.parametrize(
    "into",
    [
        np.zeros((40, 30, 4), np.uint8),
        np.zeros((30, 40, 3), np.uint8),
        np.zeros((30, 40, 4), np.float32),
        "array",
    ],
    ids=["transposed", "RGB", "float", "not an array"],
)
def test_read_array_into_an_array_the_frame_does_not_fit_is_refused_and_left_alone(
    key: str, into: object
) -> None:
    with ipc.publish_array(rgba(40, 30, 5), key=key) as segment:
        before = into.copy() if isinstance(into, np.ndarray) else into
        with pytest.raises(ArrayError, match=r"40x30 frame .* shape \(30, 40, 4\)"):
            segment.read_array(into=into)  # type: ignore[arg-type]
        assert not isinstance(into, np.ndarray) or np.array_equal(into, before)


def test_read_array_into_a_read_only_array_is_refused(key: str) -> None:
    target = np.zeros((30, 40, 4), np.uint8)
    target.flags.writeable = False
    with ipc.publish_array(rgba(40, 30, 5), key=key), pytest.raises(ArrayError, match="writable"):
        ipc.read_array(key=key, into=target)


@pytest.mark.parametrize(
    ("bad", "channels", "sentence"),
    [
        ([[1, 2], [3, 4]], None, "Expected a numpy.ndarray of pixels, not list"),
        (np.zeros((4, 4, 4), np.float64), None, "dtype is float64"),
        (np.zeros((4, 4, 4), np.uint16), None, "dtype is uint16"),
        (np.zeros((4, 4, 2), np.uint8), None, r"shape \(4, 4, 2\) is not an image"),
        (np.zeros((4,), np.uint8), None, r"shape \(4,\) is not an image"),
        (np.zeros((2, 4, 4, 4), np.uint8), None, r"shape \(2, 4, 4, 4\) is not an image"),
        (np.zeros((0, 640, 4), np.uint8), None, "has no pixels"),
        (np.zeros((480, 0), np.uint8), None, "has no pixels"),
        (np.zeros((4, 4, 3), np.uint8), "rgba", "say channels='rgb' or 'bgr', not 'rgba'"),
        (np.zeros((4, 4), np.uint8), "bgr", "say channels='gray', not 'bgr'"),
    ],
    ids=[
        "list",
        "float64",
        "uint16",
        "2 channels",
        "1-D",
        "4-D",
        "0 rows",
        "0 columns",
        "RGB as RGBA",
        "gray as BGR",
    ],
)
def test_a_bad_array_is_one_sentence_and_nothing_is_published(
    key: str, bad: object, channels: str | None, sentence: str
) -> None:
    with pytest.raises(ArrayError, match=sentence) as raised:
        ipc.publish_array(bad, key=key, channels=channels)  # type: ignore[arg-type]
    assert "\n" not in str(raised.value) and str(raised.value).endswith(".")
    assert ipc.remains(key) == []
    with ipc.publish_array(rgba(8, 8, 1), key=key) as segment:
        with pytest.raises(ArrayError):
            segment.write_array(bad, channels=channels)  # type: ignore[arg-type]
        assert segment.info().generation == 1 and seed_of_array(segment.read_array()) == 1


def test_an_array_too_large_for_a_frame_is_refused_before_anything_is_allocated(key: str) -> None:
    huge = np.broadcast_to(np.zeros((1, 1, 4), np.uint8), (10_001, 10_001, 4))  # no memory of its own
    with pytest.raises(ImageTooLargeError, match="10001x10001 pixels, more than the 100,000,000"):
        ipc.publish_array(huge, key=key)
    assert ipc.remains(key) == []


def test_without_numpy_tkshm_works_and_the_array_calls_name_the_extra(key: str) -> None:
    script = (
        "import sys; sys.modules['numpy'] = None\n"
        "from tkshm import ipc\n"
        "from PIL import Image\n"
        f"with ipc.publish(Image.new('RGB', (4, 4)), key={key!r}) as segment:\n"
        "    try:\n"
        "        segment.read_array()\n"
        "    except ipc.TkshmError as error:\n"
        "        print(error)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT, check=False
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.strip() == "Arrays need NumPy: pip install 'tkshm[numpy]'."


def test_the_array_errors_are_tkshm_errors() -> None:
    assert issubclass(ArrayError, TkshmError) and issubclass(ArrayError, ValueError)
