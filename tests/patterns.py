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
