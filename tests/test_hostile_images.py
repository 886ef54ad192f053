"""Hostile and unusual image files (corpus: tests/make_corpus.py).

Every bad file must give a documented error with one clear sentence, from the library
(``load_image``) and from the command line (``tkshm put FILE``: one stderr line, no
traceback, non-zero status), and must leave the image already published under the key
exactly as it was. Decompression bombs must be refused before anything large is allocated.
Odd-but-valid files (16-bit, CMYK, palette with transparency, animated, EXIF-rotated) must
be published and read back looking right.

POSIX only, and skipped on Windows with the reason: a named pipe (FIFO) as the file and a file
its owner may not read (mode 000, read as another user). A bomb is proved refused before any
large allocation under a memory cap: RLIMIT_AS on Linux, a job object's limit on Windows (which
Wine ignores, so the test skips there).
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from commands import Running
from conftest import files_for
from make_corpus import BAD, BOMB, GOOD, Entry, build_corpus, generate
from patterns import pattern, seed_of
from peer import Peer
from PIL import Image, ImageChops, ImageStat
from platforms import STOPPED, WINDOWS, posix_only

from tkshm import ipc
from tkshm.errors import ImageError, ImageTooLargeError, NotAnImageError
from tkshm.images import load_image

CORPUS = generate()
BAD_NAMES = sorted(name for name, (_, entry) in CORPUS.items() if entry.kind == BAD)
BOMB_NAMES = sorted(name for name, (_, entry) in CORPUS.items() if entry.kind == BOMB)
GOOD_NAMES = sorted(name for name, (_, entry) in CORPUS.items() if entry.kind == GOOD)
# Made at test time, by the `corpus` fixture: no file can be any of these in a repository.
MISSING = "does-not-exist.png"
FOLDER = "a-folder.png"
FIFO = "named-pipe.png"
SPECIAL_NAMES = [MISSING, FOLDER] if WINDOWS else [MISSING, FOLDER, FIFO]  # no FIFOs on Windows
HOLDER_SEED = 777
DEADLINE = 60.0
AT_ONCE = 6  # bad files tried by concurrent `tkshm put` processes
NOBODY = 65534


@dataclass(frozen=True)
class Run:
    """What one ``tkshm`` command did."""

    status: int
    stdout: str
    stderr: str


def _tkshm(*args: str, user: int | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tkshm", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd="/",
        user=user,
        group=user,
        extra_groups=[] if user is not None else None,
    )


def _finish(proc: subprocess.Popen[str]) -> Run:
    try:
        out, err = proc.communicate(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        proc.kill()  # a 'put' that wrongly succeeded stays attached forever
        out, err = proc.communicate()
        raise AssertionError(f"tkshm {proc.args} did not exit within {DEADLINE} s: {out} {err}") from None
    return Run(proc.returncode, out, err)


def assert_one_line_failure(run: Run, *expected: str) -> str:
    """The CLI's error contract: status 1, nothing on stdout, one stderr line, no traceback."""
    assert run.status == 1, run
    assert run.stdout == "", run
    assert "Traceback" not in run.stderr, run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}: {run.stderr!r}"
    assert lines[0].startswith("tkshm: "), lines
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def assert_sentence(error: Exception, path: str) -> None:
    """``str(error)`` names the file and reads as one sentence a person can act on."""
    message = str(error)
    assert path in message, message
    assert "\n" not in message and message.endswith("."), message
    assert "Traceback" not in message


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("corpus")
    build_corpus(directory)
    (directory / FOLDER).mkdir()
    if FIFO in SPECIAL_NAMES:
        os.mkfifo(directory / FIFO)
    yield directory


@dataclass(frozen=True)
class Published:
    key: str
    generation: int


@pytest.fixture(scope="module")
def published() -> Iterator[Published]:
    """An image published by another process under a key of our own, before any bad file
    is tried: every test checks it is still there, unchanged, afterwards."""
    key = f"test-hostile-images-{uuid.uuid4().hex[:8]}"
    with Peer() as holder:
        generation = holder.call("publish", key=key, width=32, height=24, seed=HOLDER_SEED)["gen"]
        yield Published(key, generation)
        assert holder.call("detach", key=key)["removed"] is True
    assert files_for(key) == []


def assert_untouched(published: Published) -> None:
    assert ipc.info(key=published.key).generation == published.generation
    assert seed_of(ipc.read_image(key=published.key)) == HOLDER_SEED


@pytest.fixture(scope="module")
def cli_runs(corpus: Path, published: Published) -> dict[str, Run]:
    """``tkshm put FILE`` for every bad file, under the published key, a few at a time (so
    that 40 interpreters starting at once on a small machine, or under Wine, meet no deadline)."""
    names = [*BAD_NAMES, *BOMB_NAMES, *SPECIAL_NAMES]
    runs: dict[str, Run] = {}
    for start in range(0, len(names), AT_ONCE):
        batch = names[start : start + AT_ONCE]
        procs = {name: _tkshm("put", "--key", published.key, str(corpus / name)) for name in batch}
        runs.update({name: _finish(proc) for name, proc in procs.items()})
    return runs


# ---------------------------------------------------------------------------- bad files
@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_file_gives_image_error_with_a_sentence(corpus: Path, name: str) -> None:
    path = str(corpus / name)
    with pytest.raises(ImageError) as caught:
        load_image(path)
    # A plain ImageError, or NotAnImageError for a file in no format Pillow knows; never a bomb.
    assert type(caught.value) in (ImageError, NotAnImageError), (
        f"{CORPUS[name][1].description}: {caught.value!r}"
    )
    assert caught.value.path == path
    assert_sentence(caught.value, path)


@pytest.mark.parametrize("name", BOMB_NAMES)
def test_decompression_bomb_gives_too_large_error_that_says_why(corpus: Path, name: str) -> None:
    path = str(corpus / name)
    with pytest.raises(ImageTooLargeError) as caught:
        load_image(path)
    assert_sentence(caught.value, path)
    assert "decompression bomb" in str(caught.value)
    assert "100,000,000" in str(caught.value)  # the limit, so the user knows what fits


@pytest.mark.parametrize(
    ("name", "says"),
    [
        (MISSING, "does not exist"),
        (FOLDER, "is a folder"),
        pytest.param(FIFO, "not a regular file", marks=posix_only("named pipes (mkfifo)")),
    ],
)
def test_path_that_is_not_a_readable_file_gives_image_error(corpus: Path, name: str, says: str) -> None:
    # A named pipe would block a naive open() forever, waiting for a writer.
    path = str(corpus / name)
    with pytest.raises(ImageError) as caught:
        load_image(path)
    assert type(caught.value) is ImageError
    assert says in str(caught.value)
    assert_sentence(caught.value, path)


@pytest.mark.parametrize("name", [*BAD_NAMES, *BOMB_NAMES, *SPECIAL_NAMES])
def test_cli_put_of_bad_file_fails_in_one_line_and_leaves_segment_untouched(
    cli_runs: dict[str, Run], corpus: Path, published: Published, name: str
) -> None:
    assert_one_line_failure(cli_runs[name], str(corpus / name))
    assert_untouched(published)


# How the child caps its memory a little above what it already uses: the address space
# (RLIMIT_AS, measured in /proc) on Linux; on Windows a job object's limit on committed memory.
_CAP_POSIX = r"""
import resource
status = open("/proc/self/status").read()
vm_kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmSize:")))
limit = vm_kb * 1024 + (96 << 20)
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
"""
_CAP_WINDOWS = r"""
import win32api, win32job, win32process
used = win32process.GetProcessMemoryInfo(win32api.GetCurrentProcess())["PagefileUsage"]
job = win32job.CreateJobObject(None, "")
limits = win32job.QueryInformationJobObject(job, win32job.JobObjectExtendedLimitInformation)
limits["BasicLimitInformation"]["LimitFlags"] |= win32job.JOB_OBJECT_LIMIT_PROCESS_MEMORY
limits["ProcessMemoryLimit"] = used + (96 << 20)
win32job.SetInformationJobObject(job, win32job.JobObjectExtendedLimitInformation, limits)
win32job.AssignProcessToJobObject(job, win32api.GetCurrentProcess())
"""
_DECODE_BOMBS = r"""
out = {}
for path in sys.argv[1:]:
    try:
        load_image(path)
        out[path] = "loaded"
    except ImageTooLargeError as exc:
        out[path] = "too large: " + str(exc)
    except MemoryError:
        out[path] = "MemoryError"
try:
    control = bytearray(256 << 20)
    out["control"] = "allocated 256 MB: the cap does not work"
except MemoryError:
    out["control"] = "MemoryError"
print(json.dumps(out))
"""


def test_bomb_is_refused_before_any_large_allocation(corpus: Path) -> None:
    """Decode every bomb in a process whose memory is capped a little above what it already
    uses: any attempt to allocate a frame (gigabytes) would fail with MemoryError, which
    load_image reports differently. A control allocation proves the cap bites."""
    script = (
        "import json, sys\n"
        "from tkshm.errors import ImageTooLargeError\n"
        "from tkshm.images import load_image\n"
        "import PIL.Image, PIL.PngImagePlugin, PIL.BmpImagePlugin, PIL.GifImagePlugin\n"
        + (_CAP_WINDOWS if WINDOWS else _CAP_POSIX)
        + _DECODE_BOMBS
    )
    paths = [str(corpus / name) for name in BOMB_NAMES]
    run = subprocess.run(
        [sys.executable, "-c", script, *paths], capture_output=True, text=True, timeout=DEADLINE, check=False
    )
    assert run.returncode == 0, run.stderr
    results = json.loads(run.stdout)
    control = results.pop("control")
    if WINDOWS and control != "MemoryError":  # Wine 8 accepts the job's limit but ignores it
        pytest.skip(f"a job object's memory limit does not bite here: {control}")
    assert control == "MemoryError"
    for path in paths:
        assert results[path].startswith("too large: ") and "not decoded" in results[path], (
            path,
            results[path],
        )


@pytest.fixture
def unreadable(tmp_path: Path) -> Iterator[str]:
    """A real PNG nobody may read (mode 000) in a folder everyone may enter."""
    folder = tempfile.mkdtemp(prefix="tkshm-unreadable-")
    os.chmod(folder, 0o755)
    path = os.path.join(folder, "secret.png")
    pattern(8, 8, 1).save(path)
    os.chmod(path, 0)
    yield path
    os.unlink(path)
    os.rmdir(folder)


# Root reads any file whatever its mode. So, as root, the check runs in a child that imports
# everything it needs, then gives up root for 'nobody' (the interpreter itself may live where
# 'nobody' cannot go, e.g. under /root), then loads the file or runs the CLI's main().
_AS_NOBODY = r"""
import json, os, sys
from PIL import Image
from tkshm import cli
from tkshm.errors import ImageError
from tkshm.images import load_image
Image.init()  # every Pillow plugin imported while we may still read them
if os.geteuid() == 0:
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)
what, path, key = sys.argv[1:]
if what == "cli":
    sys.exit(cli.main(["put", "--key", key, path]))
try:
    load_image(path)
except ImageError as exc:
    print(json.dumps([os.geteuid(), type(exc).__name__, str(exc)]))
""".replace("NOBODY", str(NOBODY))


@posix_only("mode 000 and reading as another user; Windows file modes only say read-only")
def test_file_without_read_permission_gives_image_error(unreadable: str, published: Published) -> None:
    def as_nobody(what: str) -> Run:
        child = subprocess.run(
            [sys.executable, "-c", _AS_NOBODY, what, unreadable, published.key],
            capture_output=True, text=True, timeout=DEADLINE, cwd="/", check=False,
        )  # fmt: skip
        if "Operation not permitted" in child.stderr and "setuid" in child.stderr:
            pytest.skip(f"running as root but cannot switch to uid {NOBODY}: {child.stderr.strip()}")
        return Run(child.returncode, child.stdout, child.stderr)

    loaded = as_nobody("load")
    assert loaded.status == 0, loaded.stderr
    uid, kind, message = json.loads(loaded.stdout)
    assert uid != 0 and kind == "ImageError", loaded.stdout
    assert "permission denied" in message and unreadable in message, message
    assert_one_line_failure(as_nobody("cli"), unreadable, "permission denied")
    assert_untouched(published)


# ---------------------------------------------------------------------------- odd but valid
def _normalised(image: Image.Image) -> Image.Image:
    """RGBA with every fully transparent pixel set to (0, 0, 0, 0): its colour is invisible."""
    clear = Image.new("RGBA", image.size, (0, 0, 0, 0))
    alpha = image.getchannel("A").point(lambda a: 255 if a else 0)
    return Image.composite(image, clear, alpha)


def assert_looks_like(image: Image.Image, entry: Entry) -> None:
    assert entry.expected is not None
    assert image.mode == "RGBA"
    assert image.size == entry.expected.size, "wrong size (or not turned upright)"
    diff = ImageChops.difference(_normalised(image), _normalised(entry.expected))
    if entry.tolerance == 0:
        assert diff.getbbox() is None, f"pixels differ in {diff.getbbox()}"
    else:  # lossy: the average error per channel stays small; a wrong turn or colour is ~100
        worst = max(ImageStat.Stat(diff).mean)
        assert worst <= entry.tolerance, f"mean channel error {worst:.1f} > {entry.tolerance}"


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_unusual_file_is_published_and_read_back_correctly(
    corpus: Path, key: str, peer: Peer, name: str
) -> None:
    entry = CORPUS[name][1]
    loaded = load_image(corpus / name)
    assert loaded.frame_count == entry.frame_count
    assert_looks_like(loaded.image, entry)
    peer.call("publish_file", key=key, path=str(corpus / name))
    assert_looks_like(ipc.read_image(key=key), entry)
    assert peer.call("detach", key=key)["removed"] is True


def test_exif_rotated_file_is_stored_sideways_and_comes_out_upright(corpus: Path) -> None:
    name = "exif-orientation-6.jpg"
    with Image.open(corpus / name) as raw:
        assert raw.size == (40, 60)  # the corpus really is sideways on disk
        assert raw.getexif()[0x0112] == 6
    loaded = load_image(corpus / name)
    assert loaded.image.size == (60, 40)
    assert_looks_like(loaded.image, CORPUS[name][1])


def test_animated_gif_uses_first_frame_and_cli_says_so(corpus: Path, key: str) -> None:
    loaded = load_image(corpus / "animated.gif")
    assert loaded.frame_count == 3 and loaded.is_animated
    assert loaded.image.getpixel((0, 0)) == (255, 0, 0, 255)  # frame 1 is red
    put = Running([sys.executable, "-m", "tkshm", "put", "--key", key, str(corpus / "animated.gif")])
    try:
        first = put.line()  # the 'Published ...' line: it is attached now
        assert "first of 3 frames" in first, first
        assert ipc.read_image(key=key).getpixel((5, 5)) == (255, 0, 0, 255)
        assert put.stop(signal.SIGINT)[0] == STOPPED
    finally:
        put.close()


def test_corpus_script_writes_every_file(tmp_path: Path) -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    run = subprocess.run(
        [sys.executable, os.path.join(here, "make_corpus.py"), str(tmp_path)],
        capture_output=True, text=True, timeout=DEADLINE, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    written = sorted(p.name for p in tmp_path.iterdir() if stat.S_ISREG(p.stat().st_mode))
    assert written == sorted(CORPUS)
    assert len(run.stdout.splitlines()) == len(CORPUS)
