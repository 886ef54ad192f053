"""Draw the application icon, assets/tkshm.png: two windows showing one picture.

Run ``python scripts/make_icon.py`` after changing it; the PNG is committed, so installing
tkshm needs no drawing. Drawn at 4x and scaled down, which smooths the edges.
"""

from __future__ import annotations

import os

from PIL import Image, ImageDraw

SIZE = 256
SCALE = 4
OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets", "tkshm.png")


def _window(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int]) -> None:
    """A small window: title bar, and a picture of a sun over a hill."""
    s = SCALE
    left, top, right, bottom = (v * s for v in box)
    draw.rounded_rectangle(
        (left, top, right, bottom), radius=10 * s, fill=(250, 250, 252), outline=(40, 50, 70), width=4 * s
    )
    draw.rectangle((left + 4 * s, top + 4 * s, right - 4 * s, top + 20 * s), fill=(70, 110, 180))
    pic = (left + 12 * s, top + 30 * s, right - 12 * s, bottom - 12 * s)
    draw.rectangle(pic, fill=(255, 196, 110))
    w, h = pic[2] - pic[0], pic[3] - pic[1]
    draw.ellipse(
        (pic[0] + w * 0.55, pic[1] + h * 0.15, pic[0] + w * 0.85, pic[1] + h * 0.15 + w * 0.3),
        fill=(255, 245, 200),
    )
    draw.polygon(
        [(pic[0], pic[3]), (pic[0], pic[1] + h * 0.7), (pic[0] + w * 0.35, pic[1] + h * 0.35),
         (pic[0] + w * 0.7, pic[1] + h * 0.75), (pic[2], pic[1] + h * 0.55), (pic[2], pic[3])],
        fill=(60, 70, 110),
    )  # fmt: skip


def make_icon() -> Image.Image:
    big = SIZE * SCALE
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle(
        (8 * SCALE, 8 * SCALE, big - 8 * SCALE, big - 8 * SCALE), radius=48 * SCALE, fill=(32, 58, 96)
    )
    # The shared segment: a band of memory cells between the two windows.
    for i in range(8):
        x = (40 + i * 23) * SCALE
        draw.rectangle((x, 118 * SCALE, x + 17 * SCALE, 138 * SCALE), fill=(120, 200, 170))
    _window(draw, (24, 36, 134, 120))
    _window(draw, (122, 136, 232, 220))
    return image.resize((SIZE, SIZE), Image.Resampling.LANCZOS)


if __name__ == "__main__":
    make_icon().save(OUT, optimize=True)
    print(f"wrote {OUT}")
