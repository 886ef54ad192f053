"""Two small helpers of the window: tooltips that never cover its text, and the zoom."""

from __future__ import annotations

import tkinter as tk
import tkinter.font as tkfont
from collections.abc import Sequence
from typing import Final

TOOLTIP_DELAY_MS: Final = 600
# Ctrl+plus and Ctrl+minus step through these; Ctrl+0 goes back to 1.
ZOOM_STEPS: Final = (0.75, 0.9, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0)
# Tk's named fonts: every widget (ttk or not, the trace pane's TkFixedFont too) uses one.
TK_FONTS: Final = (
    "TkDefaultFont", "TkTextFont", "TkFixedFont", "TkMenuFont", "TkHeadingFont",
    "TkCaptionFont", "TkSmallCaptionFont", "TkIconFont", "TkTooltipFont",
)  # fmt: skip

Rect = tuple[int, int, int, int]  # x, y, width, height on the screen


def screen_rect(widget: tk.Misc) -> Rect:
    return widget.winfo_rootx(), widget.winfo_rooty(), widget.winfo_width(), widget.winfo_height()


def overlap(a: Rect, b: Rect) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


class Tooltip:
    """A small yellow note near a widget while the pointer rests on it.

    It goes below the widget, or above it, or else outside the window: wherever it covers
    none of the ``protected`` widgets -- the window's own text.
    """

    def __init__(self, widget: tk.Widget, text: str, protected: Sequence[tk.Misc]) -> None:
        self.widget, self.text, self._protected = widget, text, protected
        self._after: str | None = None
        self.tip: tk.Toplevel | None = None
        widget.bind("<Enter>", self._schedule, add="+")
        widget.bind("<Leave>", self.hide, add="+")
        widget.bind("<ButtonPress>", self.hide, add="+")

    def _schedule(self, event: object = None) -> None:
        self.hide()
        self._after = self.widget.after(TOOLTIP_DELAY_MS, self.show)

    def show(self) -> None:
        self._after = None
        self.hide()
        if not self.text:  # (a widget whose note is there only at times)
            return
        tip = self.tip = tk.Toplevel(self.widget)
        tip.wm_overrideredirect(True)
        tip.withdraw()
        note = tk.Label(tip, text=self.text, background="#ffffe0", relief="solid", borderwidth=1)
        note.configure(justify="left", wraplength=min(480, self.widget.winfo_screenwidth() - 40))
        note.pack()
        tip.update_idletasks()
        x, y = self.place(tip.winfo_reqwidth(), tip.winfo_reqheight())
        tip.wm_geometry(f"+{x}+{y}")
        tip.deiconify()

    def place(self, width: int, height: int) -> tuple[int, int]:
        """Where a note of this size goes: the first spot that covers no protected text."""
        w = self.widget
        top = w.winfo_toplevel()
        x = w.winfo_rootx() + 12
        below, above = w.winfo_rooty() + w.winfo_height() + 4, w.winfo_rooty() - height - 4
        outside_below = top.winfo_rooty() + top.winfo_height() + 4
        outside_above = top.winfo_rooty() - height - 4
        guarded = [screen_rect(p) for p in self._protected if p is not w and p.winfo_ismapped()]
        screen = w.winfo_screenheight()
        for y in (below, above, outside_below, outside_above):
            on_screen = y >= 0 and y + height <= screen
            if on_screen and not any(overlap((x, y, width, height), rect) for rect in guarded):
                return x, y
        return x, below  # no free spot on this screen: at least it is seen

    def hide(self, event: object = None) -> None:
        if self._after is not None:
            self.widget.after_cancel(self._after)
            self._after = None
        if self.tip is not None:
            self.tip.destroy()
            self.tip = None


class Zoom:
    """Scales every Tk named font, so that the whole window grows for the back of the room."""

    def __init__(self, root: tk.Misc) -> None:
        self._fonts = [tkfont.nametofont(name, root=root) for name in TK_FONTS if name in tkfont.names(root)]
        self._base = [int(font.cget("size")) for font in self._fonts]  # negative sizes are pixels
        self.factor = 1.0

    def set(self, factor: float) -> None:
        self.factor = min(max(factor, ZOOM_STEPS[0]), ZOOM_STEPS[-1])
        for font, base in zip(self._fonts, self._base, strict=True):
            size = round(abs(base) * self.factor) or 1
            font.configure(size=size if base > 0 else -size)

    def step(self, direction: int) -> None:
        """One step larger (+1) or smaller (-1); 0 goes back to the normal size."""
        if direction == 0:
            self.set(1.0)
            return
        larger = [s for s in ZOOM_STEPS if s > self.factor + 1e-9]
        smaller = [s for s in ZOOM_STEPS if s < self.factor - 1e-9]
        if direction > 0 and larger:
            self.set(larger[0])
        elif direction < 0 and smaller:
            self.set(smaller[-1])
