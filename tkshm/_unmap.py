"""Letting go of a mapping that an array may still point into.

``mmap.close()`` unmaps the pages at once, so Python refuses it (``BufferError``) while any
buffer exported from the mapping is alive: a NumPy array from :meth:`tkshm.ipc.Segment.array`
that its caller kept after the block, or a slice of one. Unmapping under such an array would
crash the process at its next read. Both backends let go of their mappings through
:func:`unmap`, which closes the mapping if it can and otherwise drops it: the pages then stay
mapped until the last array over them is freed (the mapping's own destructor unmaps them),
and detaching, growing and following a grown segment go on as usual.
"""

from __future__ import annotations

import mmap

from . import trace


def unmap(mapping: mmap.mmap) -> None:
    """Close ``mapping``, or leave it to the arrays that still point into it."""
    try:
        mapping.close()
    except BufferError:
        trace.step(
            "unmap: an array still points into the old mapping; it is unmapped when that array is freed"
        )
