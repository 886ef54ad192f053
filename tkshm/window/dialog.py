"""The dialog: Qt's ``Dialog`` class, one slot per button.

Two copies of this window share one image. In the first, "Load Image From File..." decodes a
file and *publishes* it into the segment named by the key; in the second, "Display Image From
Shared Memory" attaches, locks, copies the pixels out, unlocks, detaches and shows them. The
window that published stays attached, so the image lives exactly as long as some window (or
other process) holds the segment -- the lesson of the Qt example.

The layout is a grid: the buttons, the checkboxes and the two lines of text have rows of
their own, and only the row of the picture (which shares a draggable divider with the trace
pane) grows and shrinks with the window. The window opens at ``DEFAULT_SIZE`` and never
changes its own size afterwards; only the user resizes it.

Strings go through ``self.tr()`` -- named after Qt's ``tr()`` -- which is ``gettext`` on the
``tkshm`` catalogue (see :mod:`tkshm.i18n`).
"""

from __future__ import annotations

import functools
import os
import sys
import time
import tkinter as tk
from collections.abc import Callable
from tkinter import filedialog, ttk
from typing import Any, Final, TypeVar

from PIL import Image

from .. import asset, ipc
from ..errors import (
    ImageError,
    ImageTooLargeError,
    IncompleteImageError,
    LockTimeoutError,
    SegmentInUseError,
    SegmentNotFoundError,
    TkshmError,
)
from ..figures import Figures
from ..header import BYTES_PER_PIXEL
from ..i18n import translation
from ..images import load_image
from ..qt.keys import Version
from .follow import Follower
from .picture import Picture, PictureArea, copy_full, sample
from .qtpeer import QtPeer
from .status import SEPARATOR, describe, describe_qt, describe_stream, stream_glossary
from .tracepane import TracePane
from .widgets import Tooltip, Zoom, screen_rect
from .worker import Worker

T = TypeVar("T")

# While a worker job is outstanding, look for its result this often: short enough to add at
# most a few milliseconds to what the user waits for, long enough to cost nothing.
RESULT_POLL_MS: Final = 2
# The size a window opens at, unless told otherwise; and the smallest one in which every
# control (both buttons, both checkboxes, the message and the status line) still shows.
DEFAULT_SIZE: Final = (560, 620)
MIN_WINDOW: Final = (320, 360)
# What a window of ``tkshm demo`` is for: the left one publishes, the right one displays.
ROLES: Final = ("publish", "display")


class Dialog:
    """The window. One slot per button, as in Qt: :meth:`load_from_file` and
    :meth:`display_from_shared_memory`; plus :meth:`toggle_follow` and :meth:`toggle_trace`.

    Follow mode itself is a :class:`~.follow.Follower`, which sees this window only as a
    :class:`~.follow.FollowView`: the methods under "follow mode's view" are there for it."""

    def __init__(
        self,
        root: tk.Tk,
        key: str = ipc.DEFAULT_KEY,
        lang: str | None = None,
        events: bool | None = None,
        show_trace: bool = False,
        suggest: str | None = None,
        geometry: str | None = None,
        zoom: float = 1.0,
        role: str | None = None,
        follow: bool = False,
        stream: bool = False,
        qt: Version | None = None,
    ) -> None:
        self.root = root
        self.key = key
        # ``tkshm gui --qt 5|6``: Load and Display speak Qt's own protocol, with Qt's example.
        self.qt_peer = QtPeer(key, qt) if qt is not None else None
        self.suggest = suggest
        self.role = role
        self.stream = stream  # tkshm play publishes under the key (the demo's --play/--pattern)
        self.tr = translation(lang).gettext
        self.events = os.environ.get("TKSHM_TEST_EVENTS") == "1" if events is None else events
        self.worker = Worker()
        self.closed = False
        self._figures_said: Figures | None = None  # the stream figures last said (FRAME events)
        # Segments are used only inside worker jobs (and by close() once the worker is gone).
        self._published: ipc.Segment | None = None  # ours, while we hold the image we loaded
        self.started = 0.0  # when the user asked for what is about to be shown
        self._poll_after: str | None = None
        self._icon: tk.PhotoImage | None = None
        self.follower = Follower(self)  # (where mypy checks that this is a FollowView)
        self.zoom = Zoom(root)
        self._build(show_trace)
        # A size of its own from the start: Tk would otherwise size the window to what it
        # shows, and resize it whenever that changes.
        root.geometry("{}x{}".format(*DEFAULT_SIZE))
        if geometry:
            root.geometry(geometry)
        if zoom != 1.0:
            self.set_zoom(zoom)
        self.set_message(self._first_message())
        self.set_status(self._idle_status())
        # ``tkshm gui --follow`` (the demo's right window, following the stream it plays).
        if follow:
            self.toggle_follow()

    # -- the two buttons -------------------------------------------------------------------
    def load_from_file(self) -> None:
        """Ask for a file, decode it on the worker, publish it, and show it.

        Publishing overwrites whatever is in the segment (growing it if needed), so any
        window may load an image; this window then stays attached, which keeps the image
        alive after the dialog that loaded it is the only holder left.
        """
        if self.closed:
            return
        previous = self.label.cget("text")
        self.set_message(self.tr("Select an image file"))
        where = {}
        if self.suggest:  # tkshm demo: the sample image is ready to load
            where = {
                "initialdir": os.path.dirname(self.suggest),
                "initialfile": os.path.basename(self.suggest),
            }
        path = filedialog.askopenfilename(
            parent=self.root, title=self.tr("Open Image"), filetypes=self._file_types(), **where
        )
        if not path:  # cancelled: Tk returns "" or () -- nothing changes, no error
            self.set_message(str(previous))
            return
        self.started = time.perf_counter()
        self.set_message(self.tr("Loading {name}...").format(name=os.path.basename(path)))
        peer = self.qt_peer
        work = (lambda: peer.load(path)) if peer is not None else (lambda: self._load_and_publish(path))
        self.submit(work, self.show_picture, self.failed)

    def _load_and_publish(self, path: str) -> Picture:  # worker thread
        loaded = load_image(path)
        if self._published is None or not self._published.is_attached:
            width, height = loaded.image.size
            self._published = ipc.Segment.create(self.key, width * height * BYTES_PER_PIXEL)
        info = self._published.write_image(loaded.image)
        return Picture(
            loaded.image, "file", info.generation, self._published.last_stats, os.path.basename(path),
            loaded.frame_count,
        )  # fmt: skip

    def display_from_shared_memory(self) -> None:
        """Attach, lock, copy out, unlock, detach -- on the worker -- then show the copy.

        In two steps, so the picture appears at once: a preview sampled straight from the
        mapping (well under a millisecond for 4K) is shown first; then the full copy, kept
        for re-fitting when the window is resized, replaces it with a smooth picture.
        """
        if self.closed:
            return
        self.started = time.perf_counter()
        if self.qt_peer is not None:  # Qt's payload is a PNG: decoded whole, no preview
            self.submit(self.qt_peer.display, self.show_picture, self.failed)
            return
        box = self.picture_area.size()
        self.submit(lambda: self._read_preview(box), self._preview_ready, self.failed)

    def _read_preview(self, box: tuple[int, int]) -> tuple[ipc.Segment, Picture]:  # worker thread
        segment = ipc.Segment.attach(self.key)
        try:
            return segment, sample(segment, box, "display")
        except BaseException:
            segment.detach()
            raise

    def _preview_ready(self, result: tuple[ipc.Segment, Picture]) -> None:
        segment, picture = result
        self.show_picture(picture)
        if picture.complete:  # a small image: the preview is the image
            self.submit(segment.detach, lambda removed: None, self.failed)
            return
        token = self.picture_area.token
        self.submit(lambda: self._read_full(segment), lambda full: self.full_ready(token, full), self.failed)

    @staticmethod
    def _read_full(segment: ipc.Segment) -> Picture:  # worker thread
        try:
            return copy_full(segment, "display")
        finally:
            segment.detach()

    def _file_types(self) -> list[tuple[str, str | tuple[str, ...]]]:
        Image.init()
        readable = sorted(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)
        return [(self.tr("Images"), tuple(f"*{ext}" for ext in readable)), (self.tr("All files"), "*")]

    # -- widgets ---------------------------------------------------------------------------
    def _build(self, show_trace: bool) -> None:
        root, tr = self.root, self.tr
        root.title(self._title(show_trace))
        root.minsize(*MIN_WINDOW)
        try:
            self._icon = tk.PhotoImage(master=root, file=asset("tkshm.png"))
            root.iconphoto(True, self._icon)
        except (tk.TclError, OSError, ModuleNotFoundError):
            self._icon = None  # a missing icon must not keep the window from opening
        root.protocol("WM_DELETE_WINDOW", self.close)
        style = ttk.Style(root)
        if "clam" in style.theme_names():  # flatter and clearer than Tk's 1990s "default" theme
            style.theme_use("clam")
        outer = ttk.Frame(root, padding=8)
        outer.pack(fill="both", expand=True)
        outer.columnconfigure(0, weight=1)

        self.load_button = ttk.Button(outer, text=tr("Load Image From File..."), command=self.load_from_file)
        self.load_button.grid(row=0, column=0, sticky="ew")

        self.label = ttk.Label(outer, anchor="w", justify="left", wraplength=MIN_WINDOW[0] - 20)
        self.label.grid(row=1, column=0, sticky="new", pady=(8, 4))

        # The picture and the trace pane share this row through a draggable divider; it is
        # the only row with weight, so it is the only one that shrinks.
        self.paned = ttk.Panedwindow(outer, orient="vertical")
        self.paned.grid(row=2, column=0, sticky="nsew")
        outer.rowconfigure(2, weight=1)
        self.picture_area = PictureArea(self.paned, self)
        self.paned.add(self.picture_area.frame, weight=1)
        self.trace_pane = TracePane(self.paned)

        self.display_button = ttk.Button(
            outer, text=tr("Display Image From Shared Memory"), command=self.display_from_shared_memory
        )
        self.display_button.grid(row=3, column=0, sticky="ew", pady=(4, 0))

        self.checks = ttk.Frame(outer)
        self.checks.grid(row=4, column=0, sticky="ew", pady=(4, 0))
        self.checks.columnconfigure(1, weight=1)
        self.follow_var = tk.BooleanVar(master=root, value=False)
        self.follow_check = ttk.Checkbutton(
            self.checks,
            text=tr("Follow changes (F5)"),
            variable=self.follow_var,
            command=self._follow_toggled,
        )
        self.follow_check.grid(row=0, column=0, sticky="w")
        if self.qt_peer is not None:  # Qt's segment has no generation to watch
            self.follow_check.state(["disabled"])
        self.trace_var = tk.BooleanVar(master=root, value=show_trace)
        self.trace_check = ttk.Checkbutton(
            self.checks, text=tr("Show IPC trace (F6)"), variable=self.trace_var, command=self._trace_toggled
        )
        self.trace_check.grid(row=0, column=1, sticky="e")
        self.checks.bind("<Configure>", self._place_checks)

        self.status = tk.Label(outer, anchor="nw", justify="left", foreground="#444")
        self.status.grid(row=5, column=0, sticky="new", pady=(2, 0))
        self._outer = outer
        self._reserve_text_rows()

        # Tk wraps text at a fixed width: follow the widgets' actual width.
        for text in (self.label, self.status):
            text.bind("<Configure>", lambda e: e.widget.configure(wraplength=max(50, e.width - 4)))
        texts: list[tk.Misc] = [self.label, self.status, self.trace_pane.text, self.follow_check]
        texts += [self.trace_check, self.load_button, self.display_button]  # their words too
        self.tooltips = {
            "load_button": Tooltip(
                self.load_button, tr("Load an image from a file and publish it (Ctrl+O)"), texts
            ),
            "display_button": Tooltip(
                self.display_button, tr("Copy the image out of shared memory and show it (Ctrl+D)"), texts
            ),
            "trace_check": Tooltip(
                self.trace_check, tr("Each step of the shared memory protocol, as it happens (F6)"), texts
            ),
            "status": Tooltip(self.status, "", texts),  # what a stream's figures measure, while following one
        }
        self._trace_toggled()

        for letter in "oO":  # with or without Caps Lock
            root.bind(f"<Control-{letter}>", lambda e: self.load_from_file())
        for letter in "dD":
            root.bind(f"<Control-{letter}>", lambda e: self.display_from_shared_memory())
        root.bind("<F5>", lambda e: self.toggle_follow())
        root.bind("<F6>", lambda e: self.toggle_trace())
        root.bind("<Control-q>", lambda e: self.close())
        for keys, step in ((("plus", "equal", "KP_Add"), 1), (("minus", "KP_Subtract"), -1), (("0",), 0)):
            for name in keys:
                root.bind(f"<Control-{name}>", functools.partial(self._zoom_key, step))

    def _title(self, traced: bool) -> str:
        parts = [self.tr("SharedMemory Example")]
        if self.qt_peer is not None:
            parts.append(self.tr("Qt {version} protocol").format(version=self.qt_peer.version))
        if self.role == "publish":
            parts.append(self.tr("publishes"))
        elif self.role == "display":
            parts.append(self.tr("displays"))
        if traced:  # named as its trace lines name it, so that a class can tell who printed what
            parts.append(f"tkshm[{os.getpid()}]")
        return " \u00b7 ".join(parts)

    def _first_message(self) -> str:
        tr = self.tr
        if self.stream:
            # The demo plays a stream: an image loaded here would be overwritten within a
            # frame, so neither window asks for a Load.
            if self.role == "display":
                return tr(
                    "This window follows the stream that tkshm play publishes under this key "
                    "(Follow changes is on): each new frame is shown as it comes, with the "
                    "frame rate and latency below."
                )
            return tr(
                "tkshm play publishes a stream under this key, and the other window follows "
                "it. Press Display Image From Shared Memory to copy out the frame of the "
                "moment; an image loaded here would be overwritten by the next frame."
            )
        if self.role == "publish":
            return tr(
                "This window publishes: press Load Image From File... and open the image the "
                "dialog offers. The other window then displays it from shared memory."
            )
        if self.role == "display":
            return tr(
                "This window displays: once the other window has loaded an image, press "
                "Display Image From Shared Memory to copy it out of shared memory."
            )
        return tr(
            "Launch two of these dialogs. In the first, press the top button and load an "
            "image from a file. In the second, press the bottom button and display the "
            "loaded image from shared memory."
        )

    def _reserve_text_rows(self) -> None:
        """Two lines at least for the message and the status line: a one-line message after
        a two-line one must not make the picture jump."""
        for row, widget, padding in ((1, ttk.Label, 12), (5, tk.Label, 2)):
            probe = widget(self._outer, text="1\n2")
            self._outer.rowconfigure(row, minsize=probe.winfo_reqheight() + padding)
            probe.destroy()

    def _place_checks(self, event: Any = None) -> None:
        """Side by side when they fit, one under the other when the window is narrow."""
        fits = self.follow_check.winfo_reqwidth() + self.trace_check.winfo_reqwidth() + 12
        fits = fits <= self.checks.winfo_width()
        where = {"row": 0, "column": 1, "sticky": "e"} if fits else {"row": 1, "column": 0, "sticky": "w"}
        info = self.trace_check.grid_info()
        if (int(info["row"]), int(info["column"])) != (where["row"], where["column"]):
            self.trace_check.grid(**where)  # type: ignore[arg-type]

    # -- zoom ------------------------------------------------------------------------------
    def set_zoom(self, factor: float) -> None:
        """Scale every font (Ctrl+plus, Ctrl+minus, Ctrl+0; ``--zoom``)."""
        self.zoom.set(factor)
        self._reserve_text_rows()
        self.root.update_idletasks()
        widest = max(w.winfo_reqwidth() for w in (self.load_button, self.display_button, self.trace_check))
        self.root.minsize(
            max(MIN_WINDOW[0], widest + 24), max(MIN_WINDOW[1], round(MIN_WINDOW[1] * self.zoom.factor))
        )
        self._place_checks()

    def _zoom_key(self, direction: int, event: object) -> None:
        self.step_zoom(direction)

    def step_zoom(self, direction: int) -> None:
        self.zoom.step(direction)
        self.set_zoom(self.zoom.factor)

    # -- the trace pane and follow mode ----------------------------------------------------
    def toggle_trace(self) -> None:
        """F6: show or hide the trace pane, as a click on its checkbox would."""
        self.trace_var.set(not self.trace_var.get())
        self._trace_toggled()

    def _trace_toggled(self) -> None:
        frame = self.trace_pane.frame
        shown = str(frame) in (str(pane) for pane in self.paned.panes())  # type: ignore[no-untyped-call]
        if self.trace_var.get() and not shown:
            self.paned.add(frame, weight=1)
            self.root.update_idletasks()
            self._split_evenly()
            self.trace_pane.text.see("end")
        elif not self.trace_var.get() and shown:
            self.paned.forget(frame)

    def _split_evenly(self, event: object = None) -> None:
        """Half the room each for the picture and the trace; the divider moves it. A window
        still opening has no height yet (Tk on Windows maps it later): split once it has."""
        height = self.paned.winfo_height()
        if height > 1:
            self.paned.unbind("<Configure>")
            self.paned.sashpos(0, height // 2)  # type: ignore[no-untyped-call]
        elif event is None:
            self.paned.bind("<Configure>", self._split_evenly)

    def toggle_follow(self) -> None:
        """F5: flip the checkbox, as a click would."""
        self.follow_var.set(not self.follow_var.get())
        self._follow_toggled()

    def _follow_toggled(self) -> None:
        if self.closed:
            return
        if self.follow_var.get():
            self.follower.start()
        else:
            self.follower.stop()

    # -- follow mode's view: what its Follower calls (see follow.FollowView) ---------------
    # (It also calls submit, failed and full_ready, which the two slots use too.)
    def follow_detached(self, removed: bool) -> None:
        """Follow mode is off and detached; if this window was the last holder, say so."""
        if removed and not self.closed:
            self.failed_text(
                self.tr(
                    "Follow changes is off. This window was the last one attached to key {key}, "
                    "so the segment was removed."
                ).format(key=self.key)
            )

    def show_frame(self, picture: Picture, figures: Figures | None) -> None:
        """A frame in follow mode: on screen at once, with its generation. (The stream's
        ``figures`` are the ones worked out last, a few times a second.)"""
        if self.closed:
            return
        self.stream_words(picture, figures)
        self.picture_area.show_frame(picture)

    def stream_words(self, picture: Picture, figures: Figures | None) -> None:
        """The message and status line of follow mode: a stream's figures, or (for a still
        image) what its copy cost."""
        message = self.tr("Following key {key}: showing generation {generation} from shared memory.").format(
            key=self.key, generation=picture.generation if picture.generation is not None else "?"
        )
        size = self._frame_size(picture)
        if figures is None:
            status = describe(self.tr, self.key, size, picture.generation, picture.stats, False)
        else:
            status = describe_stream(self.tr, self.key, size, picture.generation, figures)
            if figures is not self._figures_said:  # (new figures come a few times a second)
                self._event(
                    f"FRAME gen={picture.generation} fps={figures.frames_per_second:.1f} "
                    f"skipped_per_s={figures.skipped_per_second:.1f} "
                    f"latency_p50_ms={figures.latency_p50_s * 1000:.1f}"
                )
        self._figures_said = figures
        self.tooltips["status"].text = "" if figures is None else stream_glossary(self.tr)
        if str(self.label.cget("text")) != message:
            self.set_message(message)
        self.set_status(status)

    def publisher_stopped(self, pid: int | None, generation: int) -> None:
        """Follow mode: no new frame, and the process that published the last one is gone."""
        if pid is None:
            text = self.tr(
                "Following key {key}: the publisher stopped half-way through a frame. The last "
                "complete one, generation {generation}, stays on screen until a new one is published."
            ).format(key=self.key, generation=generation)
        else:
            text = self.tr(
                "Following key {key}: process {pid}, which published generation {generation}, has "
                "stopped. Its last frame stays on screen until a new one is published."
            ).format(key=self.key, pid=pid, generation=generation)
        self.set_message(text)
        picture = self.picture_area.picture
        if picture is not None:
            still = describe(self.tr, self.key, self._frame_size(picture), generation, None, False)
            self.set_status(still + SEPARATOR + self.tr("publisher stopped"))

    def _frame_size(self, picture: Picture) -> tuple[int, int]:
        """The size of the frame itself (a preview is the window's size)."""
        shown = self.follower.shown_size
        return shown if shown is not None else picture.image.size

    # -- what the user sees ----------------------------------------------------------------
    def set_message(self, text: str) -> None:
        self.label.configure(text=text)
        self._event("LABEL " + text.replace("\n", "\\n"))

    def set_status(self, text: str) -> None:
        self.status.configure(text=text)

    def _event(self, line: str) -> None:
        if self.events and sys.stdout is not None:  # (None in a windowed program on Windows)
            # One write for the line and its newline: both demo windows share the demo's
            # standard output, and under PYTHONUNBUFFERED print() writes them apart.
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def controls(self) -> dict[str, tk.Misc]:
        """Every control a user needs to see, by name."""
        return {
            "load_button": self.load_button, "label": self.label, "display_button": self.display_button,
            "follow_check": self.follow_check, "trace_check": self.trace_check, "status": self.status,
        }  # fmt: skip

    def announce_geometry(self) -> None:
        """Print where the buttons are on screen (for tests that click with xdotool), and the
        rectangle of every control (``CONTROL PID NAME X Y W H``, for tests that check that
        they all show)."""
        self.root.update_idletasks()
        for name, widget in (("load_button", self.load_button), ("display_button", self.display_button)):
            x = widget.winfo_rootx() + widget.winfo_width() // 2
            y = widget.winfo_rooty() + widget.winfo_height() // 2
            self._event(f"GEOM {name} {x} {y}")
        rects = {"window": screen_rect(self.root)} | {n: screen_rect(w) for n, w in self.controls().items()}
        for name, rect in rects.items():
            self._event("CONTROL {} {} {} {} {} {}".format(os.getpid(), name, *rect))

    def error_sentence(self, error: Exception) -> str:
        """Turn any failure into a sentence for the label, in the window's language."""
        tr = self.tr
        if isinstance(error, SegmentNotFoundError):
            return tr("Unable to attach to shared memory segment.\nLoad an image first.")
        if isinstance(error, SegmentInUseError):  # Qt's words, where Qt's example says them
            return tr("Unable to create shared memory segment.")
        if isinstance(error, ImageTooLargeError):
            return tr("The selected image has too many pixels to decode safely, please select another.")
        if isinstance(error, ImageError):
            if isinstance(error.__cause__, (FileNotFoundError, PermissionError)):
                return str(error)
            return tr("Selected file is not an image, please select another.")
        if isinstance(error, LockTimeoutError):
            return tr(
                "Shared memory segment is busy: another process has held its lock for more "
                "than {seconds:g} s. Try again."
            ).format(seconds=error.timeout)
        if isinstance(error, IncompleteImageError):
            return tr(
                "The image in shared memory is incomplete: the process writing it stopped "
                "half-way. Load the image again."
            )
        if isinstance(error, TkshmError):
            return str(error)
        if isinstance(error, MemoryError):
            return tr("There is not enough memory for this image.")
        return tr("Something went wrong: {error}").format(error=error)

    def failed(self, error: Exception, waiting: bool = False) -> None:
        if waiting:  # follow mode, nothing published yet
            text = self.tr("Following key {key}: waiting for an image to be published.").format(key=self.key)
        else:
            text = self.error_sentence(error)
        self.failed_text(text)

    def failed_text(self, text: str) -> None:
        """As in Qt, where the label's text replaces its picture: the old picture goes, so
        that nobody takes it for what is in shared memory now."""
        if self.closed:
            return
        if self.picture_area.picture is not None:
            self.picture_area.clear()
            self._event("CLEARED")
        self.set_message(text)
        self.set_status(self._idle_status())

    # -- showing pictures ------------------------------------------------------------------
    def show_picture(self, picture: Picture) -> None:
        """A new picture: say what it is, then show it (a draft now, smooth soon)."""
        if self.closed:
            return
        tr = self.tr
        generation = picture.generation if picture.generation is not None else "?"
        if picture.source == "file":
            message = tr("Showing {name}, published to shared memory under key {key}.").format(
                name=picture.name, key=self.key
            )
            if picture.frame_count > 1:
                message += " " + tr("It is animated: only its first of {count} frames is shown.").format(
                    count=picture.frame_count
                )
        elif self.qt_peer is not None:  # Qt's segment has no generation
            message = tr("Showing the image from shared memory (Qt's key {key}).").format(key=self.key)
        else:
            message = tr("Showing the image from shared memory (key {key}, generation {generation}).").format(
                key=self.key, generation=generation
            )
        self.set_message(message)
        self.set_status(self._describe(picture))
        # Fit to the area as laid out *with* the new message (its height may have changed).
        self.root.update_idletasks()
        self.picture_area.show(picture)

    def preview_resized(self) -> None:
        """Follow mode shows a preview and the window changed size (or opened only now):
        read the frame again for the new size; a display's full copy is on its way anyway."""
        if self.follower.on:
            self.follower.reread()

    def full_ready(self, token: int, picture: Picture) -> None:
        """The full copy of the preview on screen has arrived (unless something newer has)."""
        if not self.closed and self.picture_area.replace(token, picture):
            self.set_status(self._describe(picture))

    def _idle_status(self) -> str:
        """The status line before any picture: the key, and in Qt's protocol its objects."""
        words = self.tr("Key: {key}").format(key=self.key)
        return words if self.qt_peer is None else words + SEPARATOR + self._protocol()

    def _protocol(self) -> str:
        assert self.qt_peer is not None
        return self.tr("Qt {version} protocol: {objects}").format(
            version=self.qt_peer.version, objects=self.qt_peer.objects
        )

    def _describe(self, picture: Picture) -> str:
        published = picture.source == "file"
        if self.qt_peer is not None:
            stats, size = picture.stats, picture.image.size
            return describe_qt(self.tr, self.key, size, stats, published, self._protocol())
        return describe(self.tr, self.key, picture.image.size, picture.generation, picture.stats, published)

    def picture_shown(self, quality: str, image: Image.Image) -> None:
        if not self.events:
            return
        self.root.update_idletasks()  # draw now, so the timing below ends with pixels on screen
        picture = self.picture_area.picture
        assert picture is not None
        gen = picture.generation or 0
        ms = (time.perf_counter() - self.started) * 1000
        self._event(f"SHOWN source={picture.source} gen={gen} quality={quality} ms={ms:.1f}")
        if quality == "fine":
            label = self.picture_area.label
            self._event(
                f"GEOM image {label.winfo_rootx()} {label.winfo_rooty()} {image.width} {image.height}"
            )
            self.announce_geometry()  # the buttons may have moved

    # -- plumbing --------------------------------------------------------------------------
    def submit(
        self, work: Callable[[], T], done: Callable[[T], None], failed: Callable[[Exception], None]
    ) -> None:
        """Run ``work`` on the worker; ``done`` or ``failed`` then runs on the Tk thread."""
        self.worker.submit(work, done, failed)
        if self._poll_after is None:
            self._poll_after = self.root.after(RESULT_POLL_MS, self._poll)

    def _poll(self) -> None:
        self._poll_after = None
        if self.closed:
            return
        self.worker.deliver()
        if self.worker.pending and not self.closed:
            self._poll_after = self.root.after(RESULT_POLL_MS, self._poll)

    def close(self) -> None:
        """Detach and close the window. If we were the last holder, the segment is removed
        (the operating system would release it too if we were killed instead)."""
        if self.closed:
            return
        self.closed = True
        if self._poll_after is not None:
            self.root.after_cancel(self._poll_after)
        self.follower.close()
        self.picture_area.stop()
        # Let the worker finish what it is doing with a segment, then detach on this thread.
        if self.worker.stop(timeout=ipc.DEFAULT_TIMEOUT + 1):
            for segment in (self.follower.segment, self._published):
                if segment is not None:
                    segment.detach()
            self.follower.segment = self._published = None
            if self.qt_peer is not None:
                self.qt_peer.unpublish()
        self.trace_pane.stop()
        self.root.destroy()
