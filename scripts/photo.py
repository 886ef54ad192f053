"""A photo-like test picture, generated (nothing downloaded): a sunset over hills and a lake.

Photographs compress badly and scale visibly; flat test patterns do neither. This picture has
smooth gradients, hard edges and fine grain, so PNG sizes, decode times and scaling artefacts
look like those of a real photo. Deterministic for a given size and seed.
"""

from __future__ import annotations

import random

from PIL import Image, ImageChops, ImageDraw, ImageFilter


def make_photo(width: int, height: int, seed: int = 1) -> Image.Image:
    """An RGB picture of ``width`` x ``height`` pixels; the same seed gives the same pixels."""
    rng = random.Random(seed)
    horizon = int(height * 0.62)
    # Sky: a vertical gradient from deep blue through orange to a pale glow at the horizon.
    ramp = Image.linear_gradient("L").resize((1, 256))
    sky = Image.merge(
        "RGB",
        (
            ramp.point(lambda v: 40 + v * 215 // 255),
            ramp.point(lambda v: 50 + v * 130 // 255),
            ramp.point(lambda v: 120 - v * 60 // 255),
        ),
    ).resize((width, horizon), Image.Resampling.BILINEAR)
    sky = sky.crop((0, 0, width, height))  # the rows below the horizon are filled in later
    draw = ImageDraw.Draw(sky)
    sun_r = height // 9
    sun_x, sun_y = int(width * rng.uniform(0.55, 0.75)), int(horizon - height * 0.3)
    draw.ellipse((sun_x - sun_r, sun_y - sun_r, sun_x + sun_r, sun_y + sun_r), fill=(255, 226, 150))
    # Hills: three ridges of random midpoint-displacement lines, darker towards the viewer.
    for layer, colour in enumerate(((120, 80, 110), (70, 60, 90), (30, 40, 50))):
        base = horizon - height * (0.2 - 0.07 * layer)
        points = [(0, height), (0, base)]
        steps = 48
        level = base
        for i in range(1, steps + 1):
            level += rng.uniform(-1, 1) * height * 0.03
            level = min(max(level, base - height * 0.1), horizon - height * 0.01)
            points.append((width * i / steps, level))
        points.append((width, height))
        draw.polygon([(x, min(y, horizon)) for x, y in points], fill=colour)
    # Lake: the scene above the horizon mirrored, darkened and blurred.
    reflection = sky.crop((0, 2 * horizon - height, width, horizon)).transpose(
        Image.Transpose.FLIP_TOP_BOTTOM
    )
    reflection = reflection.filter(ImageFilter.BoxBlur(max(1, width // 400)))
    reflection = ImageChops.multiply(reflection, Image.new("RGB", reflection.size, (190, 200, 225)))
    sky.paste(reflection, (0, horizon))
    # Grain: sensor noise at full resolution, as a camera would leave it.
    grain = Image.effect_noise((width, height), 24).convert("RGB")
    return Image.blend(sky, grain, 0.08)


if __name__ == "__main__":
    import sys

    w, h, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    make_photo(w, h).save(out)
