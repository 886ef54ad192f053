"""Regenerate the sample images in assets/samples/ that ``tkshm demo`` offers (nothing downloaded).

Two pictures that look different at a glance, of different sizes, so that a class sees the
second one replace the first and the segment grow: ``sunset.jpg`` (1280x800) and
``moonrise.jpg`` (1920x1200, the same kind of scene in cold colours).
"""

from __future__ import annotations

from pathlib import Path

from photo import make_photo
from PIL import Image

SAMPLES = Path(__file__).resolve().parent.parent / "assets" / "samples"

if __name__ == "__main__":
    SAMPLES.mkdir(exist_ok=True)
    make_photo(1280, 800, seed=1).save(SAMPLES / "sunset.jpg", quality=88, optimize=True)
    red, green, blue = make_photo(1920, 1200, seed=5).split()
    Image.merge("RGB", (blue, green, red)).save(SAMPLES / "moonrise.jpg", quality=88, optimize=True)
