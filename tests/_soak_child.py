"""One process of the soak test (tests/test_soak.py): a writer or a reader on one key.

    python tests/_soak_child.py writer KEY INDEX        (then the end time on stdin)
    python tests/_soak_child.py reader KEY INDEX END

The end is a ``time.monotonic()`` value (the clock is system-wide on Linux and on Windows, so
parent and children agree). A writer publishes its first image, prints ``ready``, reads the end time
from stdin, writes until then, prints its figures, then stays attached until it reads
another line (so that no reader ever finds the segment gone). A reader reads until the end -- alternately
through one kept handle and with attach/read/detach -- checks every image, and prints its
figures. Figures are one JSON line: ``{"ops", "torn", "errors": {kind: count}}``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from typing import Final

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from patterns import pattern, seed_of

from tkshm import ipc

# Different sizes, so the segment grows while readers hold it mapped (and they must re-map).
SIZES: Final = ((64, 48), (320, 240), (160, 120), (32, 400))
IMAGES_PER_WRITER: Final = 6


def seed_for(writer: int, image: int) -> int:
    return writer * 100 + image


def size_of_seed(seed: int) -> tuple[int, int]:
    return SIZES[(seed % 100) % len(SIZES)]


def say(**figures: object) -> None:
    sys.stdout.write(json.dumps(figures) + "\n")
    sys.stdout.flush()


def writer(key: str, index: int) -> None:
    images = [pattern(*size_of_seed(s), s) for s in (seed_for(index, i) for i in range(IMAGES_PER_WRITER))]
    errors: Counter[str] = Counter()
    ops = 0
    with ipc.Segment.create(key) as segment:
        segment.write_image(images[0])
        say(ready=True)
        end = float(sys.stdin.readline())
        while time.monotonic() < end:
            try:
                segment.write_image(images[ops % len(images)])
                ops += 1
            except ipc.TkshmError as exc:
                errors[type(exc).__name__] += 1
        say(ops=ops, torn=0, errors=errors)
        sys.stdin.readline()  # stay attached until every reader has finished


def reader(key: str, index: int, end: float) -> None:
    errors: Counter[str] = Counter()
    ops = torn = 0
    kept = ipc.Segment.attach(key)
    try:
        while time.monotonic() < end:
            try:
                image = kept.read_image() if ops % 2 else ipc.read_image(key=key)
            except ipc.TkshmError as exc:
                errors[type(exc).__name__] += 1
                continue
            ops += 1
            try:
                seed = seed_of(image)
                assert image.size == size_of_seed(seed), f"seed {seed} with size {image.size}"
            except AssertionError:
                torn += 1
    finally:
        kept.detach()
    say(ops=ops, torn=torn, errors=errors)


def main(argv: list[str]) -> None:
    role, key, index = argv[0], argv[1], int(argv[2])
    try:
        if role == "writer":
            writer(key, index)
        else:
            reader(key, index, float(argv[3]))
    except Exception as exc:  # an undocumented error: report it, the parent fails the test
        say(crash=f"{type(exc).__name__}: {exc}")
        raise


if __name__ == "__main__":
    main(sys.argv[1:])
