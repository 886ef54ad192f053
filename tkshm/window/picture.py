"""The picture area: the image fitted to the window, a quick draft first, then a smooth one.

Showing is cheaper than moving only if we scale cleverly: a 3840x2160 image is first shown
as a nearest-neighbour *draft* (well under a millisecond), and the worker then computes a
smooth version (``Image.reduce`` by a whole factor, then a small bilinear resize) that
replaces the draft when it is ready. The full-resolution copy stays in memory so that the
picture can be re-fitted when the window is resized.

The area keeps the size the layout gives it (propagation off) and the picture is centred in
it with ``place()``, which never asks the window to grow: the picture is what shrinks when
the window does, and a big image can never push the window's size around.
"""

from __future__ import annotations

import tkinter as tk
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar

from PIL import Image, ImageTk

from .. import ipc, trace
from ..images import fit_size


class Owner(Protocol):
    """What the picture area needs from the dialog it is part of."""

    def submit(
        self, work: Callable[[], T], done: Callable[[T], None], failed: Callable[[Exception], None]
    ) -> None:
        """Run ``work`` on the worker; ``done`` or ``failed`` then runs on the Tk thread."""

    def picture_shown(self, quality: str, image: Image.Image) -> None:
        """A draft or a fine picture is on screen now."""

    def failed(self, error: Exception) -> None:
        """Say what went wrong, in the dialog's words."""

    def preview_resized(self) -> None:
        """The area changed size while it shows a preview (which only its source can redo)."""


# After a resize, wait until the size has been stable this long before refitting: dragging a
# window edge sends dozens of <Configure> events per second.
REFIT_DELAY_MS: Final = 60
T = TypeVar("T")


@dataclass(frozen=True)
class Picture:
    """An image the window shows, and what the status line says about it."""

    image: Image.Image
    source: str  # "file" or "shm"
    generation: int | None
    stats: ipc.CopyStats | None
    name: str = ""
    frame_count: int = 1
    complete: bool = True  # False for a preview: the full image is still on its way


def draft(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """A quick preview: nearest neighbour samples one pixel per output pixel (< 1 ms at 4K)."""
    if image.size == size:
        return image
    return image.resize(size, Image.Resampling.NEAREST)


def smooth(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """A good-looking fit: average whole blocks of pixels (``reduce``), then a small bilinear
    step to the exact size. About half the cost of one big resampling filter at 4K."""
    if image.size == size:
        return image
    factor = min(image.width // size[0], image.height // size[1])
    if factor >= 2:
        image = image.reduce(factor)
    return image.resize(size, Image.Resampling.BILINEAR)


class PictureArea:
    """The frame the picture lives in. ``show()`` a new picture, ``replace()`` a preview by
    its full image, ``clear()`` it; resizing the frame re-fits what is shown.

    The owner (the dialog) runs the smoothing on its worker and hears when a picture is on
    screen; it is held by a weak reference, so that no cycle keeps a closed dialog's Tk
    objects for the garbage collector to free on some other thread.
    """

    def __init__(self, master: tk.Misc, owner: Owner) -> None:
        self.frame = tk.Frame(master, width=1, height=1)
        self.frame.pack_propagate(False)
        self.label = tk.Label(self.frame, borderwidth=0, highlightthickness=0, padx=0, pady=0)
        self._owner = weakref.ref(owner)
        self.picture: Picture | None = None
        # Tk keeps only a name for an image; ImageTk.PhotoImage frees the pixels when the
        # Python object is garbage-collected. So the current photo is kept here.
        self._photo: ImageTk.PhotoImage | None = None
        self.shown_size = (0, 0)
        self.shown_quality = ""
        self.token = 0  # bumped whenever a new picture or size makes older refinements stale
        self._refit_after: str | None = None
        self.frame.bind("<Configure>", self._resized)

    @property
    def owner(self) -> Owner:
        owner = self._owner()
        assert owner is not None, "the dialog is gone"
        return owner

    def size(self) -> tuple[int, int]:
        return max(1, self.frame.winfo_width()), max(1, self.frame.winfo_height())

    def show(self, picture: Picture) -> None:
        """Show a new image: the draft now, the smooth version when the worker has it."""
        self.picture = picture
        self.token += 1
        self._fit(new_picture=True)

    def show_frame(self, picture: Picture) -> None:
        """Show a frame of a stream as it is: no draft and no smoothing on the way. A frame
        of the size already on screen is pasted into the same ``PhotoImage`` (about 1 ms for
        640x360, where a new photo each frame costs several times that)."""
        self.picture = picture
        self.token += 1
        image = picture.image
        if fit_size(image.size, self.size()) != image.size:
            self._fit(new_picture=True)  # the window shrank since the frame was read
            return
        quality = "fine" if picture.complete else "draft"
        if self._photo is not None and self.shown_size == image.size:
            self._photo.paste(image)
            self.shown_quality = quality
        else:
            self._display(image, quality)

    def replace(self, token: int, picture: Picture) -> bool:
        """The full image of the preview shown under ``token``; False if something newer is
        on screen meanwhile."""
        if token != self.token:
            return False
        self.picture = picture
        self._fit(new_picture=False)
        return True

    def clear(self) -> None:
        """Nothing on screen: the text that replaced the picture says why (as in Qt)."""
        self.picture = None
        self.token += 1
        self._photo = None
        self.shown_size, self.shown_quality = (0, 0), ""
        self.label.configure(image="")
        self.label.place_forget()

    def stop(self) -> None:
        if self._refit_after is not None:
            self.frame.after_cancel(self._refit_after)
            self._refit_after = None
        self._photo = None

    def _fit(self, new_picture: bool) -> None:
        """Show the current picture fitted to the area: a draft at once, then ask the
        worker for the smooth version, which replaces the draft unless something newer has
        been shown meanwhile (the token says)."""
        picture = self.picture
        if picture is None:
            return
        size = fit_size(picture.image.size, self.size())
        if size != self.shown_size or new_picture:
            exact = size == picture.image.size and picture.complete
            self._display(draft(picture.image, size), "fine" if exact else "draft")
        if self.shown_quality == "draft" and picture.complete:
            token, image, owner = self.token, picture.image, self.owner
            owner.submit(
                lambda: smooth(image, size), lambda fine: self._refined(token, size, fine), owner.failed
            )

    def _refined(self, token: int, size: tuple[int, int], image: Image.Image) -> None:
        if token == self.token and size == self.shown_size:
            self._display(image, "fine")

    def _display(self, image: Image.Image, quality: str) -> None:
        photo = ImageTk.PhotoImage(image, master=self.frame)
        self.label.configure(image=photo)
        self._photo = photo  # Tk only holds the image's name: keep the pixels alive
        self.shown_size, self.shown_quality = image.size, quality
        self.label.place(relx=0.5, rely=0.5, anchor="center", width=image.width, height=image.height)
        self.owner.picture_shown(quality, image)

    def _resized(self, event: Any) -> None:
        if self._refit_after is not None:
            self.frame.after_cancel(self._refit_after)
        self._refit_after = self.frame.after(REFIT_DELAY_MS, self._refit)

    def _refit(self) -> None:
        self._refit_after = None
        picture = self.picture
        if picture is None:
            return
        if not picture.complete:  # a preview is re-fitted when its full image arrives
            self.owner.preview_resized()
            return
        if fit_size(picture.image.size, self.size()) != self.shown_size:
            self.token += 1
            self._fit(new_picture=False)


# -- reading a picture out of the segment (worker thread) ------------------------------------
def sample(segment: ipc.Segment, box: tuple[int, int], why: str) -> Picture:
    """A preview fitted to ``box``, sampled straight from the mapping under one shared lock.

    ``why`` starts the trace line that says what this copy is for ("display", "follow"), so
    that a class reads one story: the header, then a preview, then (if the image is larger
    than the window) the full copy.
    """
    with segment.lock(exclusive=False):  # one lock: the header is the one we sample from
        info = segment.info()
        full = (info.width, info.height)
        size = fit_size(full, box)
        if size == full:
            trace.step("%s: the %dx%d image fits the window: one copy", why, *full)
        else:
            trace.step(
                "%s, copy 1 of 2: a %dx%d preview of the %dx%d image, to show at once", why, *size, *full
            )
        preview = segment.read_preview(box)
    return Picture(preview, "shm", info.generation, segment.last_stats, complete=preview.size == full)


def copy_full(segment: ipc.Segment, why: str) -> Picture:
    """The whole image, copied out under the shared lock: kept for re-fitting on resize."""
    trace.step("%s, copy 2 of 2: the full image, kept to re-fit the picture when the window is resized", why)
    image = segment.read_image()
    frame = segment.last_frame  # the image's own generation (the header may have moved on)
    generation = frame.generation if frame is not None else segment.peek_generation()
    return Picture(image, "shm", generation, segment.last_stats)
