"""Build the real-files corpus: image files as real programs write them, in the variants that
once escaped tkshm as a traceback, a wrong refusal or stray lines on standard error.

Generated here with Pillow and hand-packed bytes, nothing downloaded::

    python tests/make_real_files.py OUTDIR      # writes the files and prints one line per file

or, from a test, ``build(directory)``, which returns ``{file name: RealFile}``.

Two kinds of file:

* ``SHARED``: Pillow itself opens and loads it, so ``tkshm put`` must share it, pixel for
  pixel what Pillow decodes (turned into RGBA);
* ``REFUSED``: Pillow cannot decode it; ``tkshm put`` must say so in one line that contains
  ``RealFile.says``, whatever the C library underneath printed on its own.
"""

from __future__ import annotations

import functools
import io
import random
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from make_corpus import generator_main, write_files
from PIL import Image

SHARED: Final = "shared"
REFUSED: Final = "refused"
GHOSTSCRIPT: Final = "ghostscript"

# DirectDraw Surface: the pixel format record starts at byte 76 (after "DDS " and 72 bytes
# of the header); its flags are at 80 and its FourCC at 84. A DX10 file has a 20-byte
# extension header after the 128 bytes of the first one.
_DDS_PIXEL_FLAGS: Final = 80
_DDS_FOURCC: Final = 84
_DDS_HEADER_END: Final = 128
_DDPF_FOURCC: Final = 0x4
_DXGI_R16G16B16A16_FLOAT: Final = 10
_TIFF_LZW: Final = 5


@dataclass(frozen=True)
class RealFile:
    """One corpus file and what ``tkshm put`` must do with it."""

    kind: str  # SHARED or REFUSED
    description: str
    needs: str | None = None  # a program Pillow needs for this format (GHOSTSCRIPT)
    says: str = ""  # REFUSED: a fragment of the one line on standard error


def _noise(mode: str, width: int, height: int, seed: int) -> Image.Image:
    rng = random.Random(seed)
    bands = len(Image.new(mode, (1, 1)).getbands())
    return Image.frombytes(mode, (width, height), rng.randbytes(width * height * bands))


def _encoded(image: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


# ---------------------------------------------------------------------------- DDS
def _dds_with_fourcc(fourcc: bytes) -> bytes:
    """A DXT1 texture relabelled with a compression Pillow does not implement."""
    data = bytearray(_encoded(_noise("RGBA", 16, 8, 1), "DDS", pixel_format="DXT1"))
    data[_DDS_FOURCC : _DDS_FOURCC + 4] = fourcc
    return bytes(data)


def _dds_dx10(dxgi_format: int) -> bytes:
    """A DX10 texture (the extended header) in a DXGI format Pillow does not implement."""
    data = bytearray(_encoded(_noise("RGBA", 16, 8, 2), "DDS", pixel_format="DXT1"))
    data[_DDS_FOURCC : _DDS_FOURCC + 4] = b"DX10"
    dx10 = struct.pack("<IIIII", dxgi_format, 3, 0, 1, 0)  # format, 2D texture, -, 1 array slice, -
    return bytes(data[:_DDS_HEADER_END]) + dx10 + bytes(data[_DDS_HEADER_END:])


def _dds_unknown_flags() -> bytes:
    data = bytearray(_encoded(_noise("RGBA", 16, 8, 3), "DDS"))
    struct.pack_into("<I", data, _DDS_PIXEL_FLAGS, 0x80000)  # no RGB, FOURCC, LUMINANCE...
    return bytes(data)


# ---------------------------------------------------------------------------- PSD
def _pascal(name: bytes, pad: int) -> bytes:
    raw = bytes([len(name)]) + name
    return raw + b"\0" * (-len(raw) % pad)


def layered_psd(composite: Image.Image, layers: list[Image.Image]) -> bytes:
    """A Photoshop file (8-bit RGB, uncompressed) with layers and the composite image.

    Pillow numbers a PSD's layers as frames 1..n; the image it opens at is the composite.
    """
    width, height = composite.size
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, height, width, 8, 3)  # v1, 3 channels, RGB
    records, channel_data = b"", b""
    for number, layer in enumerate(layers, 1):
        lw, lh = layer.size
        records += struct.pack(">iiiiH", 0, 0, lh, lw, 3)  # top, left, bottom, right, channels
        for channel in range(3):
            records += struct.pack(">hI", channel, 2 + lw * lh)
        extra = struct.pack(">II", 0, 0) + _pascal(f"layer {number}".encode(), 4)  # no mask, no ranges
        records += b"8BIMnorm" + bytes([255, 0, 0, 0]) + struct.pack(">I", len(extra)) + extra
        for plane in layer.split():
            channel_data += struct.pack(">H", 0) + plane.tobytes()  # raw
    info = struct.pack(">h", len(layers)) + records + channel_data
    info += b"\0" * (len(info) % 2)
    layer_and_mask = struct.pack(">I", len(info)) + info + struct.pack(">I", 0)
    image = struct.pack(">H", 0) + b"".join(plane.tobytes() for plane in composite.split())
    no_colour_data = no_resources = struct.pack(">I", 0)
    return (
        header
        + no_colour_data
        + no_resources
        + struct.pack(">I", len(layer_and_mask))
        + layer_and_mask
        + image
    )


def _psd() -> bytes:
    composite = _noise("RGB", 40, 24, 4)
    return layered_psd(
        composite, [Image.new("RGB", (40, 24), (255, 0, 0)), Image.new("RGB", (40, 24), "blue")]
    )


# ---------------------------------------------------------------------------- TIFF
def _lzw_tiff_claiming_more_than_it_holds() -> bytes:
    """An LZW TIFF whose StripByteCounts claims four times the bytes there are: libtiff
    prints "TIFFFillStrip: Read error on strip 0; got N bytes, expected M." on descriptor 2
    by itself, and Pillow then fails with only "decoder error -2"."""
    data = bytearray(_encoded(_noise("RGB", 64, 48, 5), "TIFF", compression="tiff_lzw"))
    ifd = struct.unpack_from("<I", data, 4)[0]
    (count,) = struct.unpack_from("<H", data, ifd)
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        tag, _type, _count, value = struct.unpack_from("<HHII", data, entry)
        if tag == 279:  # StripByteCounts
            struct.pack_into("<I", data, entry + 8, value * 4)
    return bytes(data)


@functools.cache
def generate() -> dict[str, tuple[bytes, RealFile]]:
    """Every file, in memory: ``{file name: (contents, RealFile)}``."""
    unimplemented = "Pillow cannot decode"
    return {
        "dds-rgba.dds": (
            _encoded(_noise("RGBA", 24, 16, 6), "DDS"),
            RealFile(SHARED, "an uncompressed RGBA DDS"),
        ),
        "dds-dxt1.dds": (
            _encoded(_noise("RGBA", 24, 16, 7), "DDS", pixel_format="DXT1"),
            RealFile(SHARED, "a DXT1-compressed DDS"),
        ),
        "dds-atc.dds": (
            _dds_with_fourcc(b"ATC "),
            RealFile(REFUSED, "a DDS in ATC, a FourCC Pillow does not implement", says=unimplemented),
        ),
        "dds-dx10-half-float.dds": (
            _dds_dx10(_DXGI_R16G16B16A16_FLOAT),
            RealFile(REFUSED, "a DX10 DDS of 16-bit floats, a DXGI format Pillow lacks", says=unimplemented),
        ),
        "dds-unknown-flags.dds": (
            _dds_unknown_flags(),
            RealFile(REFUSED, "a DDS whose pixel format flags name no format", says=unimplemented),
        ),
        "picture.eps": (
            _encoded(_noise("RGB", 40, 30, 8), "EPS"),
            RealFile(SHARED, "an EPS file (Pillow renders it with Ghostscript)", needs=GHOSTSCRIPT),
        ),
        "layered.psd": (_psd(), RealFile(SHARED, "a Photoshop file with two layers")),
        "single.spider": (
            _encoded(_noise("L", 32, 20, 9).convert("F"), "SPIDER"),
            RealFile(SHARED, "a SPIDER file that is one image, not a stack"),
        ),
        "lzw.tiff": (
            _encoded(_noise("RGB", 64, 48, 10), "TIFF", compression="tiff_lzw"),
            RealFile(SHARED, "an LZW-compressed TIFF (decoded by libtiff)"),
        ),
        "lzw-short-strip.tiff": (
            _lzw_tiff_claiming_more_than_it_holds(),
            RealFile(REFUSED, "an LZW TIFF whose strip is shorter than it claims", says="TIFFFillStrip"),
        ),
    }


def build(directory: str | Path) -> dict[str, RealFile]:
    """Write every file into ``directory``; return ``{file name: RealFile}``."""
    return write_files(directory, generate())


def main(argv: list[str]) -> int:
    return generator_main(argv, "make_real_files.py", build, kind_width=8, name_width=26)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
