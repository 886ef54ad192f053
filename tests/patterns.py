"""Test images that prove themselves: each pixel says which image and which place it came from.

Red and green carry a 16-bit *seed* (the same in every pixel of one image), blue is ``x ^ y``
and alpha is ``y``. A torn image -- rows from two writes -- mixes seeds; a shifted or
reordered copy breaks the blue/alpha pattern. Both checks run in Pillow's C code.
"""

from __future__ import annotations

from PIL import Image, ImageChops


def _tile_xor(width: int, height: int) -> Image.Image:
    # x ^ y (mod 256) repeats every 256 pixels in both directions: build one tile, then tile it.
    size = 256
    tile = Image.frombytes("L", (size, size), bytes((x ^ y) for y in range(size) for x in range(size)))
    band = Image.new("L", (width, height))
    for top in range(0, height, size):
        for left in range(0, width, size):
            band.paste(tile, (left, top))
    return band


def _row_band(width: int, height: int) -> Image.Image:
    column = Image.frombytes("L", (1, height), bytes(y & 0xFF for y in range(height)))
    return column.resize((width, height), Image.Resampling.NEAREST)


def pattern(width: int, height: int, seed: int) -> Image.Image:
    """An RGBA image that carries ``seed`` (0..65535) in every pixel."""
    red = Image.new("L", (width, height), seed & 0xFF)
    green = Image.new("L", (width, height), (seed >> 8) & 0xFF)
    return Image.merge("RGBA", (red, green, _tile_xor(width, height), _row_band(width, height)))


def seed_of(image: Image.Image) -> int:
    """The seed of an intact pattern image; raise AssertionError if it is torn or damaged."""
    assert image.mode == "RGBA", image.mode
    red, green, blue, alpha = image.split()
    (r_lo, r_hi), (g_lo, g_hi) = red.getextrema(), green.getextrema()
    assert r_lo == r_hi and g_lo == g_hi, f"torn image: seeds mixed (R {r_lo}..{r_hi}, G {g_lo}..{g_hi})"
    width, height = image.size
    assert ImageChops.difference(blue, _tile_xor(width, height)).getbbox() is None, "pixels moved"
    assert ImageChops.difference(alpha, _row_band(width, height)).getbbox() is None, "rows moved"
    return int(r_lo) | int(g_lo) << 8


# Every mode the segment must carry (``to_rgba`` turns each into RGBA). "La" is missing on
# purpose: Pillow has no route from it to RGB (see test_ipc_unit.py).
MODES = (
    "RGBA", "RGB", "RGBX", "RGBa", "L", "LA", "P", "PA", "1", "I;16", "I;16B", "I", "F",
    "CMYK", "YCbCr", "HSV", "LAB",
)  # fmt: skip


def _palette(seed: int) -> list[int]:
    return [channel for i in range(256) for channel in ((i * 7 + seed) % 256, (i * 13) % 256, 255 - i)]


def sample(mode: str, width: int, height: int, seed: int) -> Image.Image:
    """A ``width`` x ``height`` image in ``mode`` whose values span the mode's range.

    Deterministic, so the publishing and the reading process build the same image and can
    compare ``to_rgba`` of it byte for byte. Palette images carry a transparent index.
    """
    base = pattern(width, height, seed)
    red, green, blue, alpha = base.split()  # red/green: the seed; blue: x ^ y; alpha: y
    one = ImageChops.add_modulo(blue, red)
    two = ImageChops.add_modulo(alpha, green)
    three = ImageChops.invert(blue)
    if mode in ("RGBA", "RGBa"):
        return Image.merge("RGBA", (one, two, three, alpha)).convert(mode)
    if mode in ("RGB", "RGBX", "YCbCr", "HSV", "LAB"):
        rgb = Image.merge("RGB", (one, two, three))
        return rgb.convert(mode) if mode in ("RGBX", "YCbCr") else Image.merge(mode, rgb.split())
    if mode in ("L", "F"):
        return one.convert(mode)
    if mode == "LA":
        return Image.merge("LA", (one, alpha))
    if mode in ("P", "PA"):
        indexed = one.convert("P")
        indexed.putpalette(_palette(seed))
        if mode == "PA":
            return Image.merge("PA", (indexed, alpha))
        indexed.info["transparency"] = seed % 256
        return indexed
    if mode == "1":
        return one.convert("1", dither=Image.Dither.NONE)
    if mode in ("I", "I;16", "I;16B"):
        # 0..255 -> 0..65535, so the full 16-bit range (65535 included) is there.
        wide = one.convert("I").point(lambda v: v * 257)
        return wide if mode == "I" else wide.convert(mode)
    if mode == "CMYK":
        return Image.merge("CMYK", (one, two, three, alpha))
    raise ValueError(f"no sample for mode {mode!r}")
