"""The window: Qt's *Shared Memory* dialog, rebuilt with Tk.

Two copies of this window share one image. In the first, "Load Image From File..." decodes a
file and *publishes* it into the segment named by the key; in the second, "Display Image From
Shared Memory" attaches, locks, copies the pixels out, unlocks, detaches and shows them. The
window that published stays attached, so the image lives exactly as long as some window (or
other process) holds the segment -- the lesson of the Qt example.

How the window stays responsive -- Tk is single-threaded:

* Only the main thread touches widgets. Anything that may take long (decoding a 4K PNG,
  waiting for another process's lock, attaching) runs on one worker thread, in the order it
  was asked for. The worker puts a finished callback on a ``queue.Queue``, and the main thread
  drains that queue from an ``after()`` callback. Nothing here ever blocks the main loop.
* Follow mode is an ``after()`` callback every ~20 ms that reads the header's generation
  counter without locking (a few microseconds) and asks the worker for a locked read only
  when the counter changed.
* Showing is cheaper than moving only if we scale cleverly: a 3840x2160 image is first
  shown as a nearest-neighbour *draft* (well under a millisecond), and the worker then
  computes a smooth version (``Image.reduce`` by a whole factor, then a small bilinear
  resize) that replaces the draft when it is ready. The full-resolution copy stays in memory
  so the picture can be re-fitted when the window is resized.
* Tk keeps only a name for an image; ``ImageTk.PhotoImage`` frees the pixels when the Python
  object is garbage-collected. So the current photo is kept on ``self``, or the label goes blank.

The trace pane (F6) shows each IPC step this process takes: the window listens on the
``tkshm.trace`` logger through a ``logging.handlers.QueueHandler``, because the steps happen
on the worker thread, and the Tk thread moves them into a ``Text`` widget every 50 ms.

Strings go through ``self.tr()`` -- named after Qt's ``tr()`` -- which is ``gettext`` on the
``tkshm`` catalogue in ``tkshm/locale`` (English and Simplified Chinese).

For end-to-end tests, ``TKSHM_TEST_EVENTS=1`` makes the window print what it does to
stdout, one line per event: ``READY``, ``GEOM <widget> X Y [W H]``, ``LABEL <text>``,
``SHOWN source=file|shm gen=N quality=draft|fine ms=T``.
"""

from __future__ import annotations

import functools
import gettext
import logging.handlers
import os
import queue
import signal
import threading
import time
import tkinter as tk
from collections.abc import Callable
from dataclasses import dataclass
from tkinter import filedialog, ttk
from typing import Any, Final, TypeVar

from PIL import Image, ImageTk

from . import asset, ipc, trace
from .errors import (
    ImageError,
    ImageTooLargeError,
    IncompleteImageError,
    LockTimeoutError,
    SegmentNotFoundError,
    TkshmError,
)
from .header import BYTES_PER_PIXEL
from .images import fit_size, load_image

T = TypeVar("T")

DOMAIN: Final = "tkshm"
LOCALE_DIR: Final = os.path.join(os.path.dirname(os.path.abspath(__file__)), "locale")
# While a worker job is outstanding, look for its result this often: short enough to add at
# most a few milliseconds to what the user waits for, long enough to cost nothing.
RESULT_POLL_MS: Final = 2
# Follow mode reads the generation counter this often (the target: a small image on
# screen within 50 ms of being published).
FOLLOW_POLL_MS: Final = 20
# Attaching is retried this often while following a key nobody has published yet.
FOLLOW_ATTACH_RETRY_MS: Final = 500
# After a resize, wait until the size has been stable this long before refitting: dragging a
# window edge sends dozens of <Configure> events per second.
REFIT_DELAY_MS: Final = 60
TOOLTIP_DELAY_MS: Final = 600
# New trace lines reach the pane this often; the pane keeps the last TRACE_LINES of them.
# The timer also wakes Python: it runs signal handlers only between bytecodes, and Tk's main
# loop sleeps in C until an event arrives, so without it Ctrl+C would wait for a mouse move.
TRACE_POLL_MS: Final = 50
TRACE_LINES: Final = 2000
INITIAL_IMAGE_AREA: Final = (480, 320)
# The smallest window in which both buttons, the label and a picture still fit.
MIN_WINDOW: Final = (320, 360)


def translation(lang: str | None = None) -> gettext.NullTranslations:
    """The catalogue for ``lang`` ("en", "zh_CN", also "zh" or "zh-CN"), or for the system
    locale (``LANGUAGE``, ``LC_ALL``, ``LC_MESSAGES``, ``LANG``) when ``lang`` is None.

    English is the source language, so it needs no catalogue: an unknown language falls
    back to the English strings rather than failing.
    """
    languages = None
    if lang:
        normal = lang.replace("-", "_")
        languages = ["zh_CN"] if normal.lower() in ("zh", "zh_cn", "zh_hans") else [normal]
    return gettext.translation(DOMAIN, LOCALE_DIR, languages=languages, fallback=True)


def icon_path() -> str:
    """The application icon, shipped as package data in ``tkshm.assets``."""
    return asset("tkshm.png")


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


@dataclass(frozen=True)
class Picture:
    """An image the window shows, and what the status line says about it."""

    image: Image.Image
    source: str  # "file" or "shm"
    info: ipc.SegmentInfo | None
    stats: ipc.CopyStats | None
    name: str = ""
    frame_count: int = 1
    complete: bool = True  # False for a preview: the full image is still on its way


class Worker:
    """One background thread that runs jobs in order and hands results to the Tk thread.

    ``submit(work, done, failed)`` runs ``work()`` on the worker; ``done(result)`` or
    ``failed(error)`` then runs on the *main* thread, called from :meth:`deliver`, which
    the window polls with ``after()``. Jobs touching a segment are serialised this way, so
    one ``Segment`` is never used by two threads at once.
    """

    def __init__(self) -> None:
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._results: queue.Queue[Callable[[], None]] = queue.Queue()
        self.pending = 0
        self._thread = threading.Thread(target=self._run, name="tkshm-worker", daemon=True)
        self._thread.start()

    def submit(
        self, work: Callable[[], T], done: Callable[[T], None], failed: Callable[[Exception], None]
    ) -> None:
        self.pending += 1

        def job() -> None:
            try:
                result = work()
            except Exception as exc:  # handed to the main thread, which turns it into a sentence
                self._results.put(functools.partial(failed, exc))
            else:
                self._results.put(functools.partial(done, result))

        self._jobs.put(job)

    def deliver(self) -> None:
        """Run the callbacks of finished jobs (main thread only)."""
        while True:
            try:
                callback = self._results.get_nowait()
            except queue.Empty:
                return
            self.pending -= 1
            callback()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()

    def stop(self, timeout: float) -> bool:
        """Finish the queued jobs and end the thread; return whether it ended in time."""
        self._jobs.put(None)
        self._thread.join(timeout)
        return not self._thread.is_alive()


class Tooltip:
    """A small yellow note under a widget while the pointer rests on it."""

    def __init__(self, widget: tk.Widget, text: str) -> None:
        self.widget, self.text = widget, text
        self._after: str | None = None
        self._tip: tk.Toplevel | None = None
        widget.bind("<Enter>", self._schedule, add="+")
        widget.bind("<Leave>", self._hide, add="+")
        widget.bind("<ButtonPress>", self._hide, add="+")

    def _schedule(self, event: object = None) -> None:
        self._hide()
        self._after = self.widget.after(TOOLTIP_DELAY_MS, self._show)

    def _show(self) -> None:
        self._after = None
        tip = self._tip = tk.Toplevel(self.widget)
        tip.wm_overrideredirect(True)
        x = self.widget.winfo_rootx() + 12
        y = self.widget.winfo_rooty() + self.widget.winfo_height() + 4
        tip.wm_geometry(f"+{x}+{y}")
        tk.Label(tip, text=self.text, background="#ffffe0", relief="solid", borderwidth=1).pack()

    def _hide(self, event: object = None) -> None:
        if self._after is not None:
            self.widget.after_cancel(self._after)
            self._after = None
        if self._tip is not None:
            self._tip.destroy()
            self._tip = None


class App:
    """The dialog. One slot per button, as in Qt: :meth:`load_from_file` and
    :meth:`display_from_shared_memory`; plus :meth:`toggle_follow` for follow mode."""

    def __init__(
        self,
        root: tk.Tk,
        key: str = ipc.DEFAULT_KEY,
        lang: str | None = None,
        events: bool | None = None,
        show_trace: bool = False,
        suggest: str | None = None,
    ) -> None:
        self.root = root
        self.key = key
        self.suggest = suggest
        self.tr = translation(lang).gettext
        self.events = os.environ.get("TKSHM_TEST_EVENTS") == "1" if events is None else events
        self.worker = Worker()
        self.closed = False
        # Segments are used only inside worker jobs (and by close() once the worker is gone).
        self._published: ipc.Segment | None = None  # ours, while we hold the image we loaded
        self._follow: ipc.Segment | None = None  # attached while follow mode is on
        self._follow_busy = False  # a worker job is using self._follow: do not peek
        self._follow_seen = -1  # the generation follow mode last asked for
        self._follow_next_attach = 0.0
        self._picture: Picture | None = None
        self._photo: ImageTk.PhotoImage | None = None
        self._shown_size = (0, 0)
        self._shown_quality = ""
        self._token = 0  # bumped whenever a new picture or size makes older refinements stale
        self._started = 0.0  # when the user asked for what is about to be shown
        self._poll_after: str | None = None
        self._follow_after: str | None = None
        self._refit_after: str | None = None
        self._icon: tk.PhotoImage | None = None
        # The IPC trace arrives from whichever thread did the step; a QueueHandler hands it
        # to the Tk thread, which moves it into the pane every TRACE_POLL_MS.
        self._trace_lines: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        self._trace_handler = logging.handlers.QueueHandler(self._trace_lines)
        self._trace_after: str | None = None
        self._build(show_trace)
        trace.start(self._trace_handler)
        self._trace_after = self.root.after(TRACE_POLL_MS, self._drain_trace)
        self.set_message(
            self.tr(
                "Launch two of these dialogs. In the first, press the top button and load an "
                "image from a file. In the second, press the bottom button and display the "
                "loaded image from shared memory."
            )
        )
        self.set_status(self.tr("Key: {key}").format(key=self.key))

    # -- widgets ---------------------------------------------------------------------------
    def _build(self, show_trace: bool) -> None:
        root, tr = self.root, self.tr
        title = tr("SharedMemory Example")
        # Traced windows are named as their trace lines name them, so a class can tell which
        # window printed what.
        root.title(f"{title} \u00b7 tkshm[{os.getpid()}]" if show_trace else title)
        root.minsize(*MIN_WINDOW)
        try:
            self._icon = tk.PhotoImage(master=root, file=icon_path())
            root.iconphoto(True, self._icon)
        except (tk.TclError, OSError, ModuleNotFoundError):
            self._icon = None  # a missing icon must not keep the window from opening
        root.protocol("WM_DELETE_WINDOW", self.close)
        style = ttk.Style(root)
        if "clam" in style.theme_names():  # flatter and clearer than Tk's 1990s "default" theme
            style.theme_use("clam")
        outer = ttk.Frame(root, padding=8)
        outer.pack(fill="both", expand=True)

        self.load_button = ttk.Button(outer, text=tr("Load Image From File..."), command=self.load_from_file)
        self.load_button.pack(fill="x")
        Tooltip(self.load_button, tr("Load an image from a file and publish it (Ctrl+O)"))

        self.label = ttk.Label(outer, anchor="w", justify="left")
        self.label.pack(fill="x", pady=(8, 4))
        # Word wrap: Tk wraps at a fixed width, so follow the label's actual width.
        self.label.bind("<Configure>", lambda e: self.label.configure(wraplength=max(50, e.width - 4)))

        # The image area keeps the size the layout gives it (propagation off), and the picture
        # is centred in it with place(), which never asks the window to grow: a big image
        # cannot push the window off the screen, and resizing re-fits the picture instead.
        self.image_area = tk.Frame(outer, width=INITIAL_IMAGE_AREA[0], height=INITIAL_IMAGE_AREA[1])
        self.image_area.pack_propagate(False)
        self.image_area.pack(fill="both", expand=True)
        self.image_label = tk.Label(self.image_area, borderwidth=0, highlightthickness=0, padx=0, pady=0)
        self.image_area.bind("<Configure>", self._area_resized)

        self.display_button = ttk.Button(
            outer, text=tr("Display Image From Shared Memory"), command=self.display_from_shared_memory
        )
        self.display_button.pack(fill="x", pady=(4, 0))
        Tooltip(self.display_button, tr("Copy the image out of shared memory and show it (Ctrl+D)"))

        bottom = ttk.Frame(outer)
        bottom.pack(fill="x", pady=(4, 0))
        self.follow_var = tk.BooleanVar(master=root, value=False)
        self.follow_check = ttk.Checkbutton(
            bottom, text=tr("Follow changes (F5)"), variable=self.follow_var, command=self._follow_toggled
        )
        self.follow_check.pack(side="left")
        self.trace_var = tk.BooleanVar(master=root, value=show_trace)
        self.trace_check = ttk.Checkbutton(
            bottom, text=tr("Show IPC trace (F6)"), variable=self.trace_var, command=self._trace_toggled
        )
        self.trace_check.pack(side="right")
        Tooltip(self.trace_check, tr("Each step of the shared memory protocol, as it happens (F6)"))
        # Two lines, always: a status that wraps differently would make the buttons jump.
        self.status = tk.Label(outer, anchor="nw", justify="left", foreground="#444", height=2)
        self.status.pack(fill="x", pady=(2, 0))
        self.status.bind("<Configure>", lambda e: self.status.configure(wraplength=max(50, e.width - 4)))

        # The trace pane is packed at the bottom *first* in packing order, so that opening it in
        # a window of fixed size takes room from the picture, not from the pane.
        self.trace_pane = ttk.Frame(outer)
        self.trace_text = tk.Text(
            self.trace_pane, height=10, width=60, wrap="word", font="TkFixedFont", state="disabled",
            background="#fbfbf8", relief="flat", borderwidth=1, highlightthickness=0,
        )  # fmt: skip
        self.trace_text.tag_configure("line", lmargin2=24)  # wrapped lines hang under the first
        scroll = ttk.Scrollbar(self.trace_pane, command=self.trace_text.yview)
        self.trace_text.configure(yscrollcommand=scroll.set)
        scroll.pack(side="right", fill="y")
        self.trace_text.pack(side="left", fill="both", expand=True)
        self._trace_toggled()

        for letter in "oO":  # with or without Caps Lock
            root.bind(f"<Control-{letter}>", lambda e: self.load_from_file())
        for letter in "dD":
            root.bind(f"<Control-{letter}>", lambda e: self.display_from_shared_memory())
        root.bind("<F5>", lambda e: self.toggle_follow())
        root.bind("<F6>", lambda e: self.toggle_trace())
        root.bind("<Control-q>", lambda e: self.close())

    # -- the trace pane --------------------------------------------------------------------
    def toggle_trace(self) -> None:
        """F6: show or hide the trace pane, as a click on its checkbox would."""
        self.trace_var.set(not self.trace_var.get())
        self._trace_toggled()

    def _trace_toggled(self) -> None:
        if self.trace_var.get():
            self.trace_pane.pack(side="bottom", fill="both", pady=(6, 0), before=self.load_button)
            self.trace_text.see("end")
        else:
            self.trace_pane.pack_forget()

    def _drain_trace(self) -> None:
        """Move the trace lines the IPC layer reported since last time into the pane."""
        self._trace_after = None
        lines = []
        while True:
            try:
                lines.append(self._trace_lines.get_nowait().getMessage())
            except queue.Empty:
                break
        if lines:
            text = self.trace_text
            text.configure(state="normal")
            text.insert("end", "".join(line + "\n" for line in lines), "line")
            excess = int(text.index("end-1c").split(".")[0]) - 1 - TRACE_LINES
            if excess > 0:
                text.delete("1.0", f"{excess + 1}.0")
            text.configure(state="disabled")
            text.see("end")
        if not self.closed:
            self._trace_after = self.root.after(TRACE_POLL_MS, self._drain_trace)

    def trace_text_content(self) -> str:
        """What the trace pane shows (for tests)."""
        return str(self.trace_text.get("1.0", "end-1c"))

    # -- what the user sees ----------------------------------------------------------------
    def set_message(self, text: str) -> None:
        self.label.configure(text=text)
        self._event("LABEL " + text.replace("\n", "\\n"))

    def set_status(self, text: str) -> None:
        self.status.configure(text=text)

    def _event(self, line: str) -> None:
        if self.events:
            print(line, flush=True)

    def announce_geometry(self) -> None:
        """Print where the buttons are on screen (for tests that click with xdotool)."""
        self.root.update_idletasks()
        for name, widget in (("load_button", self.load_button), ("display_button", self.display_button)):
            x = widget.winfo_rootx() + widget.winfo_width() // 2
            y = widget.winfo_rooty() + widget.winfo_height() // 2
            self._event(f"GEOM {name} {x} {y}")

    def error_sentence(self, error: Exception) -> str:
        """Turn any failure into a sentence for the label, in the window's language."""
        tr = self.tr
        if isinstance(error, SegmentNotFoundError):
            return tr("Unable to attach to shared memory segment.\nLoad an image first.")
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

    def _failed(self, error: Exception) -> None:
        self.set_message(self.error_sentence(error))

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
        self._started = time.perf_counter()
        self.set_message(self.tr("Loading {name}...").format(name=os.path.basename(path)))
        self._submit(lambda: self._load_and_publish(path), self._show_picture, self._failed)

    def _load_and_publish(self, path: str) -> Picture:  # worker thread
        loaded = load_image(path)
        if self._published is None or not self._published.is_attached:
            width, height = loaded.image.size
            self._published = ipc.Segment.create(self.key, width * height * BYTES_PER_PIXEL)
        info = self._published.write_image(loaded.image)
        return Picture(
            loaded.image, "file", info, self._published.last_stats, os.path.basename(path),
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
        self._started = time.perf_counter()
        box = self._area_size()
        self._submit(lambda: self._read_preview(box), self._preview_ready, self._failed)

    def _read_preview(self, box: tuple[int, int]) -> tuple[ipc.Segment, Picture]:  # worker thread
        segment = ipc.Segment.attach(self.key)
        try:
            return segment, self._sample(segment, box)
        except BaseException:
            segment.detach()
            raise

    @staticmethod
    def _sample(segment: ipc.Segment, box: tuple[int, int]) -> Picture:  # worker thread
        with segment.lock(exclusive=False):  # one lock: the header is the one we sampled
            preview = segment.read_preview(box)
            info = segment.info()
        complete = preview.size == (info.width, info.height)
        return Picture(preview, "shm", info, segment.last_stats, complete=complete)

    def _preview_ready(self, result: tuple[ipc.Segment, Picture]) -> None:
        segment, picture = result
        self._show_picture(picture)
        if picture.complete:  # a small image: the preview is the image
            self._submit(segment.detach, lambda removed: None, self._failed)
            return
        token = self._token
        self._submit(
            lambda: self._read_full(segment, detach=True),
            lambda full: self._full_ready(token, full),
            self._failed,
        )

    @staticmethod
    def _read_full(segment: ipc.Segment, detach: bool) -> Picture:  # worker thread
        try:
            with segment.lock(exclusive=False):
                image = segment.read_image()
                info = segment.info()
        finally:
            if detach:
                segment.detach()
        return Picture(image, "shm", info, segment.last_stats)

    def _full_ready(self, token: int, picture: Picture) -> None:
        if token != self._token or self.closed:
            return  # something newer is on screen
        self._picture = picture
        self.set_status(self._describe(picture))
        self._fit(new_picture=False)

    def _file_types(self) -> list[tuple[str, str | tuple[str, ...]]]:
        Image.init()
        readable = sorted(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)
        return [(self.tr("Images"), tuple(f"*{ext}" for ext in readable)), (self.tr("All files"), "*")]

    # -- follow mode -----------------------------------------------------------------------
    def toggle_follow(self) -> None:
        """F5: flip the checkbox, as a click would."""
        self.follow_var.set(not self.follow_var.get())
        self._follow_toggled()

    def _follow_toggled(self) -> None:
        if self.closed:
            return
        if self.follow_var.get():
            self._follow_seen = -1
            self._follow_next_attach = 0.0
            self._follow_tick()
        else:
            if self._follow_after is not None:
                self.root.after_cancel(self._follow_after)
                self._follow_after = None
            segment, self._follow = self._follow, None
            if segment is not None:
                # Detach on the worker, after any read it is doing with this segment.
                self._submit(segment.detach, lambda removed: None, self._failed)

    def _follow_tick(self) -> None:
        """Every ~20 ms: has the generation changed? A few microseconds when it has not."""
        self._follow_after = None
        if self.closed or not self.follow_var.get():
            return
        if not self._follow_busy:
            if self._follow is None:
                if time.monotonic() >= self._follow_next_attach:
                    self._follow_busy = True
                    self._submit(
                        lambda: ipc.Segment.attach(self.key), self._follow_attached, self._follow_failed
                    )
            else:
                try:
                    generation = self._follow.peek_generation()
                except TkshmError as exc:
                    self._follow_failed(exc)
                else:
                    if generation != self._follow_seen:
                        self._follow_seen = generation
                        self._follow_busy = True
                        self._started = time.perf_counter()
                        segment, box = self._follow, self._area_size()
                        self._submit(
                            lambda: self._sample(segment, box), self._follow_sampled, self._follow_failed
                        )
        self._follow_after = self.root.after(FOLLOW_POLL_MS, self._follow_tick)

    def _follow_attached(self, segment: ipc.Segment) -> None:
        self._follow_busy = False
        if self.closed or not self.follow_var.get():
            self._submit(segment.detach, lambda removed: None, self._failed)
            return
        self._follow = segment

    def _follow_sampled(self, picture: Picture) -> None:
        """The same two steps as the display button, on the segment we stay attached to."""
        segment = self._follow
        if segment is None or not self.follow_var.get():
            self._follow_busy = False
            return
        self._show_picture(picture)
        if picture.complete:
            self._follow_busy = False
            return
        token = self._token
        self._submit(
            lambda: self._read_full(segment, detach=False),
            lambda full: self._follow_full(token, full),
            self._follow_failed,
        )

    def _follow_full(self, token: int, picture: Picture) -> None:
        self._follow_busy = False
        if self.follow_var.get():
            self._full_ready(token, picture)

    def _follow_failed(self, error: Exception) -> None:
        self._follow_busy = False
        if isinstance(error, SegmentNotFoundError):
            # Nothing published yet (or an empty segment): keep trying, quietly, but say so.
            self._follow_next_attach = time.monotonic() + FOLLOW_ATTACH_RETRY_MS / 1000
            self.set_message(
                self.tr("Following key {key}: waiting for an image to be published.").format(key=self.key)
            )
            return
        self._failed(error)

    # -- showing pictures ------------------------------------------------------------------
    def _show_picture(self, picture: Picture) -> None:
        """Show a new image: the draft now, the smooth version when the worker has it."""
        if self.closed:
            return
        self._picture = picture
        self._token += 1
        tr = self.tr
        info = picture.info
        if picture.source == "file":
            message = tr("Showing {name}, published to shared memory under key {key}.").format(
                name=picture.name, key=self.key
            )
            if picture.frame_count > 1:
                message += " " + tr("It is animated: only its first of {count} frames is shown.").format(
                    count=picture.frame_count
                )
            self.set_message(message)
        else:
            self.set_message(
                tr("Showing the image from shared memory (key {key}, generation {generation}).").format(
                    key=self.key, generation=info.generation if info else "?"
                )
            )
        self.set_status(self._describe(picture))
        # Fit to the area as laid out *with* the new message (its height may have changed).
        self.root.update_idletasks()
        self._fit(new_picture=True)

    def _describe(self, picture: Picture) -> str:
        tr = self.tr
        parts = [tr("Key: {key}").format(key=self.key)]
        parts.append(
            tr("{width}\u00d7{height} pixels").format(width=picture.image.width, height=picture.image.height)
        )
        if picture.info is not None:
            parts.append(tr("generation {generation}").format(generation=picture.info.generation))
        stats = picture.stats
        if stats is not None:
            verb = (
                tr("Published {mb:.1f} MB in {ms:.0f} ms")
                if picture.source == "file"
                else tr("Copied {mb:.1f} MB in {ms:.0f} ms")
            )
            parts.append(verb.format(mb=stats.nbytes / 1e6, ms=stats.copy_s * 1000))
            parts.append(tr("lock wait {ms:.1f} ms").format(ms=stats.lock_wait_s * 1000))
        return " \u00b7 ".join(parts)

    def _area_size(self) -> tuple[int, int]:
        return max(1, self.image_area.winfo_width()), max(1, self.image_area.winfo_height())

    def _fit(self, new_picture: bool) -> None:
        """Show the current picture fitted to the image area: a draft at once, then ask the
        worker for the smooth version, which replaces the draft unless something newer has
        been shown meanwhile (the token says)."""
        picture = self._picture
        if picture is None:
            return
        size = fit_size(picture.image.size, self._area_size())
        if size != self._shown_size or new_picture:
            exact = size == picture.image.size and picture.complete
            self._display(draft(picture.image, size), "fine" if exact else "draft")
        if self._shown_quality == "draft" and picture.complete:
            token, image = self._token, picture.image
            self._submit(
                lambda: smooth(image, size), lambda fine: self._refined(token, size, fine), self._failed
            )

    def _refined(self, token: int, size: tuple[int, int], image: Image.Image) -> None:
        if token == self._token and size == self._shown_size and not self.closed:
            self._display(image, "fine")

    def _display(self, image: Image.Image, quality: str) -> None:
        photo = ImageTk.PhotoImage(image, master=self.root)
        self.image_label.configure(image=photo)
        self._photo = photo  # Tk only holds the image's name: keep the pixels alive
        self._shown_size, self._shown_quality = image.size, quality
        self.image_label.place(relx=0.5, rely=0.5, anchor="center", width=image.width, height=image.height)
        if self.events:
            self.root.update_idletasks()  # draw now, so the timing below ends with pixels on screen
            picture = self._picture
            assert picture is not None
            gen = picture.info.generation if picture.info else 0
            ms = (time.perf_counter() - self._started) * 1000
            self._event(f"SHOWN source={picture.source} gen={gen} quality={quality} ms={ms:.1f}")
            if quality == "fine":
                x, y = self.image_label.winfo_rootx(), self.image_label.winfo_rooty()
                self._event(f"GEOM image {x} {y} {image.width} {image.height}")
                self.announce_geometry()  # the buttons may have moved

    def _area_resized(self, event: Any) -> None:
        if self._refit_after is not None:
            self.root.after_cancel(self._refit_after)
        self._refit_after = self.root.after(REFIT_DELAY_MS, self._refit)

    def _refit(self) -> None:
        self._refit_after = None
        picture = self._picture
        if picture is None or not picture.complete or self.closed:
            return  # a preview is re-fitted when its full image arrives
        if fit_size(picture.image.size, self._area_size()) != self._shown_size:
            self._token += 1
            self._fit(new_picture=False)

    # -- plumbing --------------------------------------------------------------------------
    def _submit(
        self, work: Callable[[], T], done: Callable[[T], None], failed: Callable[[Exception], None]
    ) -> None:
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
        for after_id in (self._poll_after, self._follow_after, self._refit_after, self._trace_after):
            if after_id is not None:
                self.root.after_cancel(after_id)
        # Let the worker finish what it is doing with a segment, then detach on this thread.
        if self.worker.stop(timeout=ipc.DEFAULT_TIMEOUT + 1):
            for segment in (self._follow, self._published):
                if segment is not None:
                    segment.detach()
            self._follow = self._published = None
        trace.stop(self._trace_handler)
        self._photo = None
        self.root.destroy()


def run(
    key: str = ipc.DEFAULT_KEY,
    lang: str | None = None,
    geometry: str | None = None,
    show_trace: bool = False,
    suggest: str | None = None,
) -> int:
    """Open the window and run Tk's main loop until it is closed; return the exit status.

    Ctrl+C in the terminal and SIGTERM close the window as its close button does: it detaches,
    and the last process to detach removes the segment.
    """
    blocks = Image.core  # type: ignore[attr-defined]  # documented as PILLOW_BLOCKS_MAX
    if blocks.get_blocks_max() == 0:  # the user's PILLOW_BLOCKS_MAX wins
        # Keep a few freed image blocks (16 MB each) for the next copy out of shared memory:
        # recycled memory is already paged in, and first-touch page faults cost more than
        # the copy itself. Twelve blocks cover two 4K images.
        blocks.set_blocks_max(12)
    root = tk.Tk(className="tkshm")
    if geometry:
        root.geometry(geometry)
    app = App(root, key=key, lang=lang, show_trace=show_trace, suggest=suggest)

    def request_close(signum: int, frame: object) -> None:
        # Once is enough: a second Ctrl+C (the demo passes one on, and the terminal sends
        # its own) must not interrupt the close that detaches us. SIGTERM still ends us.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        root.after_idle(app.close)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, request_close)
    if app.events:
        root.update()
        app.announce_geometry()
        app._event("READY")
    root.mainloop()
    return 0
