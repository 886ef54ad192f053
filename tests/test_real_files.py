"""Image files as real programs write them (corpus: tests/make_real_files.py).

Every file that Pillow itself opens and loads must be shared by ``tkshm put`` pixel for
pixel what Pillow decodes; every file Pillow cannot decode must be refused in one line,
whatever a C library underneath (libtiff) printed on file descriptor 2 by itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from commands import Running
from make_real_files import GHOSTSCRIPT, REFUSED, SHARED, RealFile, build, generate
from PIL import EpsImagePlugin, Image, ImageOps
from platforms import STOPPED

from tkshm import ipc
from tkshm.errors import ImageError
from tkshm.images import load_image, to_rgba

pytest_plugins = ["tkshm.testing"]

CORPUS = generate()
SHARED_NAMES = sorted(name for name, (_, entry) in CORPUS.items() if entry.kind == SHARED)
REFUSED_NAMES = sorted(name for name, (_, entry) in CORPUS.items() if entry.kind == REFUSED)
DEADLINE = 60.0


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("real-files")
    build(directory)
    yield directory


def needs(entry: RealFile) -> None:
    if entry.needs == GHOSTSCRIPT and not EpsImagePlugin.has_ghostscript():
        pytest.skip(
            "Pillow reads EPS through Ghostscript, which is not installed (apt-get install ghostscript)"
        )


def pillow_decodes(path: Path) -> Image.Image:
    """What Pillow makes of the file on its own, as the RGBA that a segment holds."""
    with Image.open(path) as image:
        image.load()
        return to_rgba(ImageOps.exif_transpose(image))


@pytest.mark.parametrize("name", SHARED_NAMES)
def test_a_file_pillow_decodes_is_shared_pixel_for_pixel(corpus: Path, tkshm_key: str, name: str) -> None:
    needs(CORPUS[name][1])
    path = corpus / name
    expected = pillow_decodes(path)
    put = Running([sys.executable, "-m", "tkshm", "put", "--key", tkshm_key, str(path)])
    try:
        assert put.line().startswith(f"Published {path} ({expected.width}x{expected.height})")
        shared = ipc.read_image(key=tkshm_key)
        assert shared.size == expected.size
        assert shared.tobytes() == expected.tobytes()
    finally:
        status, rest, stderr = put.stop(signal.SIGTERM)
    assert (status, rest, stderr) == (STOPPED, [], "")  # nothing a decoder printed reaches the terminal


@pytest.mark.parametrize("name", REFUSED_NAMES)
def test_a_file_pillow_cannot_decode_is_refused_in_one_line(corpus: Path, tkshm_key: str, name: str) -> None:
    entry = CORPUS[name][1]
    path = str(corpus / name)
    with pytest.raises(ImageError) as caught:
        load_image(path)
    assert type(caught.value) is ImageError, f"{entry.description}: {caught.value!r}"
    run = subprocess.run(
        [sys.executable, "-m", "tkshm", "put", "--key", tkshm_key, path],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=DEADLINE,
    )  # fmt: skip
    assert (run.returncode, run.stdout) == (1, "")
    assert "Traceback" not in run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1, f"{entry.description}: {run.stderr!r}"
    assert lines[0].startswith(f"tkshm: {path} ") and entry.says in lines[0], lines[0]
    assert lines[0].endswith("."), lines[0]
    assert ipc.remains(tkshm_key) == []


def test_libtiffs_own_complaint_is_folded_into_the_sentence(corpus: Path, tkshm_key: str) -> None:
    path = str(corpus / "lzw-short-strip.tiff")
    run = subprocess.run(
        [sys.executable, "-m", "tkshm", "put", "--key", tkshm_key, path],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=DEADLINE,
    )  # fmt: skip
    assert run.stderr.startswith(f"tkshm: {path} is damaged or truncated and cannot be decoded")
    assert "; the decoder reported: TIFFFillStrip: Read error on strip 0; got " in run.stderr


def test_layered_psd_is_its_composite_image_not_one_of_its_layers(corpus: Path) -> None:
    loaded = load_image(corpus / "layered.psd")
    with Image.open(corpus / "layered.psd") as raw:
        assert raw.n_frames == 2  # Pillow's layer count, frames 1 and 2
    assert loaded.frame_count == 1 and not loaded.is_animated
    assert loaded.image.getpixel((0, 0)) not in ((255, 0, 0, 255), (0, 0, 255, 255))


def test_real_files_script_writes_every_file(tmp_path: Path) -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    run = subprocess.run(
        [sys.executable, os.path.join(here, "make_real_files.py"), str(tmp_path)],
        capture_output=True, text=True, timeout=DEADLINE, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(CORPUS)
    assert len(run.stdout.splitlines()) == len(CORPUS)
