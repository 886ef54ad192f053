"""Build the hostile-image corpus: files that must be refused, and odd files that must work.

Everything is generated here with Pillow (and a few hand-packed bytes); nothing is
downloaded, so the corpus is the same on every machine::

    python tests/make_corpus.py OUTDIR      # writes the files and prints one line per file

or, from a test, ``build_corpus(directory)``, which returns ``{file name: Entry}``.

Three kinds of entry:

* ``BAD``: not an image, or a damaged one -- :func:`tkshm.images.load_image` must raise
  :class:`~tkshm.errors.ImageError`;
* ``BOMB``: a few hundred bytes whose header claims a gigantic image -- it must raise
  :class:`~tkshm.errors.ImageTooLargeError` *before* decoding (allocating) anything;
* ``GOOD``: unusual but valid files -- 16-bit, CMYK, palette with transparency, animated,
  EXIF-rotated -- that must be published and read back looking like ``Entry.expected``.

Cases that only exist at test time (a directory, a file we may not read, a path that does
not exist) are made by the tests themselves.
"""

from __future__ import annotations

import functools
import io
import random
import struct
import sys
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol, TypeVar

from PIL import Image

BAD: Final = "bad"
BOMB: Final = "bomb"
GOOD: Final = "good"

# What a bomb claims: 10 billion pixels, 40 GB as RGBA.
BOMB_SIDE: Final = 100_000
# Where each valid file is cut: a few bytes into the signature, just past the header, and
# at fractions of the pixel data. The trailer alone (PNG's IEND, JPEG's EOI) is not cut,
# because a file whose every pixel is present is not damaged in any way a viewer can see.
_CUTS: Final = (("sig", 4), ("head", 24), ("q1", 0.25), ("half", 0.5), ("q3", 0.75))


@dataclass(frozen=True)
class Entry:
    """One corpus file and what loading it must give."""

    kind: str  # BAD, BOMB or GOOD
    description: str
    # GOOD only: what the image must look like once loaded (RGBA, upright, first frame),
    # how far each channel may differ (lossy formats), and how many frames the file holds.
    expected: Image.Image | None = None
    tolerance: int = 0
    frame_count: int = 1


def _noise(width: int, height: int, seed: int) -> Image.Image:
    """Incompressible pixels, so that cutting a file at 50% really cuts pixel data."""
    rng = random.Random(seed)
    return Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))


def _encoded(image: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def _truncated(data: bytes) -> dict[str, bytes]:
    cuts: dict[str, bytes] = {}
    for label, where in _CUTS:
        at = where if isinstance(where, int) else int(len(data) * where)
        cuts[label] = data[:at]
    return cuts


def _png_chunk(tag: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))


def png_bomb(width: int = BOMB_SIDE, height: int = BOMB_SIDE) -> bytes:
    """A valid-looking PNG (correct CRCs) whose IHDR claims ``width`` x ``height`` RGBA pixels.

    Its one IDAT holds a few zlib-compressed rows of zeros: decoding it would need the full
    40 GB frame before discovering that the data runs out.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8-bit RGBA, no interlace
    idat = zlib.compress(b"\0" * (1 + width * 4) * 4, 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def bmp_bomb(width: int = BOMB_SIDE, height: int = BOMB_SIDE) -> bytes:
    """A BMP header (BITMAPINFOHEADER, 24-bit) for a huge image, followed by one row."""
    row = b"\0" * ((width * 3 + 3) & ~3)
    info = struct.pack(
        "<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(row) * height & 0xFFFFFFFF, 2835, 2835, 0, 0
    )
    header = struct.pack("<2sIHHI", b"BM", (14 + 40 + len(row)) & 0xFFFFFFFF, 0, 0, 14 + 40)
    return header + info + row


def gif_bomb(width: int = 65_535, height: int = 65_535) -> bytes:
    """GIF sizes are 16-bit: 65535 x 65535 (4.3 billion pixels) is the biggest it can claim."""
    screen = struct.pack("<6sHHBBB", b"GIF89a", width, height, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    descriptor = b"," + struct.pack("<HHHHB", 0, 0, width, height, 0)
    lzw = b"\x02\x02\x44\x01\x00"  # minimum code size 2, one tiny sub-block, terminator
    return screen + descriptor + lzw + b";"


def _sixteen_bit() -> tuple[bytes, Image.Image]:
    """A 16-bit greyscale PNG ramp; tkshm scales 16 bits to 8 (v >> 8), it does not clip."""
    width, height = 256, 4
    values = [x * 257 for x in range(width)] * height  # 0, 257, ..., 65535: exactly x after >> 8
    image = Image.frombytes("I;16", (width, height), struct.pack(f"<{len(values)}H", *values))
    expected = Image.frombytes("L", (width, height), bytes(range(width)) * height).convert("RGBA")
    return _encoded(image, "PNG"), expected


_CMYK_BLOCKS: Final = (
    ((0, 255, 255, 0), (255, 0, 0)),  # cyan 0, magenta+yellow full: red
    ((255, 0, 255, 0), (0, 255, 0)),  # green
    ((255, 255, 0, 0), (0, 0, 255)),  # blue
    ((0, 0, 0, 0), (255, 255, 255)),  # white paper
)


def _cmyk() -> tuple[bytes, Image.Image]:
    """Four flat blocks of CMYK ink whose RGB colours are known."""
    size = 32
    image = Image.new("CMYK", (size * len(_CMYK_BLOCKS), size))
    expected = Image.new("RGBA", image.size)
    for i, (ink, rgb) in enumerate(_CMYK_BLOCKS):
        box = (i * size, 0, (i + 1) * size, size)
        image.paste(ink, box)
        expected.paste((*rgb, 255), box)
    return _encoded(image, "JPEG", quality=95), expected


def _palette_with_transparency() -> tuple[bytes, Image.Image]:
    """A palette GIF: left half transparent (index 0), right half opaque red (index 1)."""
    width, height = 40, 20
    image = Image.new("P", (width, height), 0)
    image.putpalette([0, 0, 255, 255, 0, 0] + [0] * (256 * 3 - 6))
    image.paste(1, (width // 2, 0, width, height))
    expected = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    expected.paste((255, 0, 0, 255), (width // 2, 0, width, height))
    data = _encoded(image, "GIF", transparency=0)
    return data, expected


def _animated() -> tuple[bytes, Image.Image, int]:
    """Three flat frames, red then green then blue: the first frame (red) is the one shown."""
    colours = ((255, 0, 0), (0, 255, 0), (0, 0, 255))
    frames = [Image.new("RGB", (30, 20), colour) for colour in colours]
    data = _encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return data, Image.new("RGBA", (30, 20), (255, 0, 0, 255)), len(frames)


def upright_reference() -> Image.Image:
    """How the EXIF-oriented photo must look: 60 wide, 40 high, a red top-left quarter on
    blue, and a green bottom row. Any rotation or mirror moves one of them."""
    image = Image.new("RGB", (60, 40), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 30, 20))
    image.paste((0, 255, 0), (0, 32, 60, 40))
    return image.convert("RGBA")


def _exif_rotated() -> tuple[bytes, Image.Image]:
    """The pixels are stored turned a quarter left, with EXIF orientation 6 ("rotate 90
    clockwise to display"), as a phone held upright writes them."""
    upright = upright_reference()
    stored = upright.convert("RGB").transpose(Image.Transpose.ROTATE_90)  # 40 wide, 60 high
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    return _encoded(stored, "JPEG", quality=95, subsampling=0, exif=exif.tobytes()), upright


@functools.cache
def generate() -> dict[str, tuple[bytes, Entry]]:
    """Every corpus file, in memory: ``{file name: (contents, Entry)}``."""
    files: dict[str, tuple[bytes, Entry]] = {
        "empty.png": (b"", Entry(BAD, "an empty file")),
        "text.png": (b"This is not a picture, only words.\n" * 20, Entry(BAD, "a text file named .png")),
    }
    # Valid files of every format, then cut short.
    source = _noise(96, 64, seed=4)
    encoded = {
        "png": _encoded(source, "PNG"),
        "jpg": _encoded(source, "JPEG", quality=90),
        "gif": _encoded(source.convert("P"), "GIF"),
        "webp": _encoded(source, "WEBP", lossless=True),
        "tiff": _encoded(source, "TIFF"),
        "bmp": _encoded(source, "BMP"),
    }
    for ext, data in encoded.items():
        for label, cut in _truncated(data).items():
            what = f"a {ext.upper()} file cut to {len(cut)} of {len(data)} bytes ({label})"
            files[f"truncated-{label}.{ext}"] = (cut, Entry(BAD, what))
    claim = f"claims {BOMB_SIDE:,}x{BOMB_SIDE:,} pixels"
    files["bomb.png"] = (png_bomb(), Entry(BOMB, f"a PNG whose IHDR {claim}"))
    files["bomb.bmp"] = (bmp_bomb(), Entry(BOMB, f"a BMP whose header {claim}"))
    files["bomb.gif"] = (gif_bomb(), Entry(BOMB, "a GIF whose screen claims 65,535x65,535 pixels"))
    # Just above tkshm's own limit (100 million) but below Pillow's error threshold:
    # tkshm must refuse it itself, not rely on Pillow's warning.
    files["bomb-100mp.png"] = (png_bomb(10_001, 10_000), Entry(BOMB, "a PNG claiming 10,001x10,000 pixels"))

    data, expected = _sixteen_bit()
    files["sixteen-bit.png"] = (data, Entry(GOOD, "a 16-bit greyscale PNG", expected))
    data, expected = _cmyk()
    files["cmyk.jpg"] = (data, Entry(GOOD, "a CMYK JPEG", expected, tolerance=8))
    data, expected = _palette_with_transparency()
    files["palette-transparent.gif"] = (data, Entry(GOOD, "a palette GIF with transparency", expected))
    data, expected, frames = _animated()
    files["animated.gif"] = (data, Entry(GOOD, "an animated GIF", expected, frame_count=frames))
    data, expected = _exif_rotated()
    files["exif-orientation-6.jpg"] = (data, Entry(GOOD, "a JPEG with EXIF orientation 6", expected, 8))

    return files


T = TypeVar("T")


def write_files(directory: str | Path, files: dict[str, tuple[bytes, T]]) -> dict[str, T]:
    """Write generated ``{file name: (bytes, description)}`` into ``directory``; return the
    descriptions by file name."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    for name, (data, _) in files.items():
        (out / name).write_bytes(data)
    return {name: entry for name, (_, entry) in files.items()}


def build_corpus(directory: str | Path) -> dict[str, Entry]:
    """Write every corpus file into ``directory``; return ``{file name: Entry}``."""
    return write_files(directory, generate())


class Listed(Protocol):
    """What a generator's command line prints of each file it wrote."""

    @property
    def kind(self) -> str: ...

    @property
    def description(self) -> str: ...


def generator_main(
    argv: list[str],
    script: str,
    build: Callable[[str], Mapping[str, Listed]],
    kind_width: int,
    name_width: int,
) -> int:
    """The command line of a corpus generator (this one, ``make_real_files.py``): write every
    file into OUTDIR, then print one line per file: its kind, its name and what it is."""
    if len(argv) != 1:
        print(f"usage: python tests/{script} OUTDIR", file=sys.stderr)
        return 2
    for name, entry in build(argv[0]).items():
        print(f"{entry.kind:<{kind_width}} {name:<{name_width}} {entry.description}")
    return 0


def main(argv: list[str]) -> int:
    return generator_main(argv, "make_corpus.py", build_corpus, kind_width=5, name_width=32)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
