"""Regenerate the samples in assets/samples/ that ``tkshm demo`` and the README use (nothing
downloaded).

Two pictures that look different at a glance, of different sizes, so that a class sees the
second one replace the first and the segment grow: ``sunset.jpg`` (1280x800) and
``moonrise.jpg`` (1920x1200, the same kind of scene in cold colours). And ``orbit.gif``, a
small animation for ``tkshm play`` (the README's stream examples play it): a sun going round
over the sunset, 36 frames of 40 ms, each numbered, so that a skipped frame can be seen.
Flat colours in a GIF of 320x200 keep it well under 200 KB.
"""

from __future__ import annotations

import math
from pathlib import Path

from photo import make_photo
from PIL import Image, ImageDraw

SAMPLES = Path(__file__).resolve().parent.parent / "assets" / "samples"
ANIMATION_SIZE = (320, 200)
ANIMATION_FRAMES = 36
FRAME_MS = 40


def make_orbit() -> list[Image.Image]:
    """The frames of ``orbit.gif``: one palette for all of them (the background's), so
    that a frame differs from the one before only where the sun and the number moved."""
    width, height = ANIMATION_SIZE
    background = make_photo(width, height, seed=1).quantize(48, dither=Image.Dither.NONE)
    frames = []
    for index in range(ANIMATION_FRAMES):
        frame = background.convert("RGB")
        draw = ImageDraw.Draw(frame)
        angle = 2 * math.pi * index / ANIMATION_FRAMES
        x, y = width / 2 + width * 0.35 * math.cos(angle), height * 0.45 + height * 0.3 * math.sin(angle)
        radius = height // 12
        draw.ellipse(
            (x - radius, y - radius, x + radius, y + radius), fill=(255, 230, 120), outline=(0, 0, 0)
        )
        draw.rectangle((4, 4, 40, 22), fill=(255, 255, 255), outline=(0, 0, 0))
        draw.text((9, 8), f"{index:02d}", fill=(0, 0, 0))
        frames.append(frame.quantize(palette=background, dither=Image.Dither.NONE))
    return frames


if __name__ == "__main__":
    SAMPLES.mkdir(exist_ok=True)
    make_photo(1280, 800, seed=1).save(SAMPLES / "sunset.jpg", quality=88, optimize=True)
    red, green, blue = make_photo(1920, 1200, seed=5).split()
    Image.merge("RGB", (blue, green, red)).save(SAMPLES / "moonrise.jpg", quality=88, optimize=True)
    first, *rest = make_orbit()
    first.save(
        SAMPLES / "orbit.gif", save_all=True, append_images=rest, duration=FRAME_MS, loop=0, optimize=True
    )
