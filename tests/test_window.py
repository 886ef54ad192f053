"""The window's layout and what it shows, on a real Tk root (pytest-xvfb): every control stays
visible at every size, the window keeps its size, nothing stale stays on screen, tooltips
never cover its text, the status line keeps numbers with their units, the zoom scales every
font, and a demo window says its role."""

from __future__ import annotations

import gc
import os
import signal
import tkinter as tk
import tkinter.font as tkfont
import weakref
from collections.abc import Callable
from pathlib import Path

import pytest
from patterns import seed_of
from peer import Peer
from platforms import posix_only
from tk_fixtures import App, AppFactory, make_photo, pump

from tkshm import ipc
from tkshm.window.dialog import DEFAULT_SIZE, MIN_WINDOW
from tkshm.window.main import close_on_signal
from tkshm.window.status import describe, milliseconds, number, size, stream_glossary
from tkshm.window.tracepane import unbreakable
from tkshm.window.widgets import Rect, overlap, screen_rect

NOT_ATTACHED = "Unable to attach to shared memory segment.\nLoad an image first."
NBSP = "\u00a0"


@pytest.fixture
def big_photo(tmp_path: Path) -> Path:
    path = tmp_path / "big.png"
    make_photo(1600, 1000, seed=5).save(path)
    return path


def text(widget: tk.Misc) -> str:
    return str(widget.cget("text"))


def showing(app: App, source: str) -> Callable[[], bool]:
    def done() -> bool:
        picture = app.picture_area.picture
        return picture is not None and picture.source == source and app.picture_area.shown_quality == "fine"

    return done


def settle(app: App) -> None:
    """Let Tk lay out and draw what is pending (a few passes: wrapping changes heights)."""
    for _ in range(5):
        app.root.update()


def layout_problems(app: App) -> list[str]:
    """What keeps a control from being seen: unmapped, outside the window, cut, overlapped."""
    root = app.root
    window = screen_rect(root)
    problems, rects = [], {}
    for name, widget in app.controls().items():
        rect = screen_rect(widget)
        rects[name] = rect
        if not widget.winfo_ismapped():
            problems.append(f"{name} is not mapped")
        x, y = rect[0] - window[0], rect[1] - window[1]
        if x < 0 or y < 0 or x + rect[2] > window[2] or y + rect[3] > window[3]:
            problems.append(f"{name} {rect} is not inside the window {window}")
        if rect[2] < widget.winfo_reqwidth() or rect[3] < widget.winfo_reqheight():
            problems.append(
                f"{name} is cut: {rect[2:]} of {widget.winfo_reqwidth(), widget.winfo_reqheight()}"
            )
    names = list(rects)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            if overlap(rects[first], rects[second]):
                problems.append(f"{first} {rects[first]} overlaps {second} {rects[second]}")
    return problems


# -- 1. every control stays visible at every size -------------------------------------------
@pytest.mark.parametrize(
    ("width", "height", "traced", "zoom"),
    [(*MIN_WINDOW, False, 1.0), (600, 380, False, 1.0), (560, 520, True, 1.0), (*MIN_WINDOW, True, 1.0),
     (760, 620, True, 1.5)],
    ids=["minimum", "600x380", "560x520-trace", "minimum-trace", "760x620-trace-zoom-1.5"],
)  # fmt: skip
def test_every_control_shows_whole_and_apart_at_every_size(
    make_app: AppFactory,
    key: str,
    peer: Peer,
    width: int,
    height: int,
    traced: bool,
    zoom: float,
) -> None:
    app = make_app(show_trace=traced, geometry=f"{width}x{height}", zoom=zoom)
    settle(app)
    assert (app.root.winfo_width(), app.root.winfo_height()) == (width, height)
    assert layout_problems(app) == [], "with the introduction"
    peer.call("publish", key=key, width=1600, height=1000, seed=2)
    app.display_button.invoke()
    pump(app.root, showing(app, "shm"), what="the displayed image")
    settle(app)
    assert layout_problems(app) == [], "with a picture and its status line"
    area = app.picture_area

    def fits() -> bool:  # re-fitted once the layout has settled (the status line may grow)
        (w, h), (room_w, room_h) = area.shown_size, area.size()
        return 0 < w <= room_w and 0 < h <= room_h and area.shown_quality == "fine"

    pump(app.root, fits, what="the picture shrunk to its room")
    peer.call("detach", key=key)
    app.display_button.invoke()
    pump(app.root, lambda: text(app.label) == NOT_ATTACHED, what="the failed display")
    settle(app)
    assert layout_problems(app) == [], "with the error sentence"


def test_the_trace_pane_and_the_picture_share_the_space_through_a_divider(make_app: AppFactory) -> None:
    app = make_app(show_trace=True, geometry="560x620")
    settle(app)
    paned = app.paned
    assert len(paned.panes()) == 2  # type: ignore[no-untyped-call]
    before = app.trace_pane.text.winfo_height()
    paned.sashpos(0, 60)  # type: ignore[no-untyped-call]  # what dragging the divider up does
    settle(app)
    assert app.trace_pane.text.winfo_height() > before + 100  # a teacher can make the trace tall
    assert layout_problems(app) == []


# -- 2. a sensible size that stays put ------------------------------------------------------
def test_window_opens_at_its_default_size_and_never_resizes_itself(
    make_app: AppFactory, key: str, peer: Peer, big_photo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app()  # no geometry: the window's own default
    settle(app)
    opened = (app.root.winfo_width(), app.root.winfo_height())
    assert opened == DEFAULT_SIZE and opened[0] < 900
    assert int(app.label.cget("wraplength")) <= opened[0]  # the introduction wraps to the window

    def unchanged(what: str) -> None:
        settle(app)
        assert (app.root.winfo_width(), app.root.winfo_height()) == opened, what

    shown: list[object] = []

    def dialog(**options: object) -> str:
        unchanged("while the file dialog is open")
        shown.append(options)
        return str(big_photo)

    monkeypatch.setattr(tk.filedialog, "askopenfilename", dialog)
    app.load_button.invoke()
    pump(app.root, showing(app, "file"), what="the loaded image")
    assert shown
    unchanged("after loading")
    app.display_button.invoke()
    pump(app.root, showing(app, "shm"), what="the displayed image")
    unchanged("after displaying")
    app.toggle_follow()
    peer.call("publish", key=key, width=3000, height=400, seed=4)  # a new generation, another shape
    pump(app.root, lambda: (p := app.picture_area.picture) is not None and p.generation == 2, what="follow")
    pump(app.root, showing(app, "shm"), what="the smooth picture of generation 2")
    unchanged("after a follow update")
    app.toggle_follow()
    pump(app.root, lambda: app.worker.pending == 0)
    app.root.geometry("700x500")  # only the user resizes it
    settle(app)
    assert (app.root.winfo_width(), app.root.winfo_height()) == (700, 500)
    peer.call("detach", key=key)


# -- 3. nothing stale on screen -------------------------------------------------------------
def test_a_failed_display_removes_the_old_picture_and_its_status_line(
    make_app: AppFactory, key: str, peer: Peer
) -> None:
    peer.call("publish", key=key, width=96, height=64, seed=7)
    app = make_app()
    app.display_button.invoke()
    pump(app.root, showing(app, "shm"), what="the displayed image")
    assert "generation 1" in text(app.status)
    pump(app.root, lambda: app.worker.pending == 0)  # the worker detaches once it has shown it
    assert peer.call("detach", key=key)["removed"] is True  # nothing in shared memory now
    app.display_button.invoke()
    pump(app.root, lambda: text(app.label) == NOT_ATTACHED, what="Qt's sentence")
    assert app.picture_area.picture is None  # as in Qt: the text replaced the picture
    assert str(app.picture_area.label.cget("image")) == ""
    assert not app.picture_area.label.winfo_ismapped()
    assert text(app.status) == f"Key: {key}"


def test_a_follow_update_changes_the_message_and_the_generation(
    make_app: AppFactory, key: str, peer: Peer
) -> None:
    peer.call("publish", key=key, width=64, height=48, seed=1)
    app = make_app()
    app.toggle_follow()
    following = f"Following key {key}: showing generation {{}} from shared memory."
    pump(app.root, lambda: text(app.label) == following.format(1), what="generation 1 in the label")
    assert " · generation 1 · " in text(app.status)
    peer.call("write", key=key, width=64, height=48, seed=2)
    pump(app.root, lambda: text(app.label) == following.format(2), what="generation 2 in the label")
    assert " · generation 2 · " in text(app.status)
    assert app.picture_area.picture is not None and seed_of(app.picture_area.picture.image) == 2
    app.toggle_follow()
    pump(app.root, lambda: app.worker.pending == 0)
    assert peer.call("detach", key=key)["removed"] is True


def test_turning_follow_off_as_the_last_holder_says_the_segment_was_removed(
    make_app: AppFactory, key: str, peer: Peer
) -> None:
    peer.call("publish", key=key, width=32, height=32, seed=3)
    app = make_app()
    app.toggle_follow()
    pump(app.root, showing(app, "shm"), what="the followed image")
    assert peer.call("detach", key=key)["removed"] is False  # the follower holds it now
    app.toggle_follow()
    removed = (
        f"Follow changes is off. This window was the last one attached to key {key}, "
        "so the segment was removed."
    )
    pump(app.root, lambda: text(app.label) == removed, what="the sentence about the removed segment")
    assert app.picture_area.picture is None
    with pytest.raises(ipc.SegmentNotFoundError):
        ipc.info(key=key)


# -- 4. tooltips and the status line --------------------------------------------------------
@pytest.mark.parametrize(
    ("traced", "place"), [(False, "+0+100"), (True, "+0+100"), (False, "+0+0")],
    ids=["plain", "trace-pane", "at-the-top-of-the-screen"],
)  # fmt: skip
def test_tooltips_never_cover_the_windows_text(
    make_app: AppFactory, big_photo: Path, monkeypatch: pytest.MonkeyPatch, traced: bool, place: str
) -> None:
    app = make_app(show_trace=traced, geometry=f"560x620{place}")
    monkeypatch.setattr(tk.filedialog, "askopenfilename", lambda **options: str(big_photo))
    app.load_button.invoke()
    pump(app.root, showing(app, "file"), what="the loaded image and its message")
    settle(app)
    texts: dict[str, Rect] = {
        name: screen_rect(widget)
        for name, widget in [*app.controls().items(), ("trace", app.trace_pane.text)]
        if widget.winfo_ismapped()
    }
    assert app.tooltips["status"].text == ""  # it explains a stream's figures, and there is none
    app.tooltips["status"].text = stream_glossary(app.tr)  # as while following a stream
    for name, tooltip in app.tooltips.items():
        tooltip.show()
        settle(app)
        assert tooltip.tip is not None
        tip = screen_rect(tooltip.tip)
        assert tip[2] > 20 and tip[3] > 10, tip
        on_screen = tip[1] >= 0 and tip[1] + tip[3] <= app.root.winfo_screenheight()
        assert on_screen, f"the tooltip of {name} {tip} is off the screen"
        covered = [other for other, rect in texts.items() if other != name and overlap(tip, rect)]
        assert covered == [], f"the tooltip of {name} {tip} covers {covered}"
        tooltip.hide()


def test_status_numbers_keep_their_units_and_meaningful_digits() -> None:
    assert [number(v) for v in (0, 0.042, 0.4, 0.44, 2.83, 9.96, 33.2, 1234.5)] == [
        "0", "0.042", "0.4", "0.44", "2.8", "10", "33", "1234",
    ]  # fmt: skip
    assert milliseconds(0.0004) == f"0.4{NBSP}ms"  # not "0 ms"
    assert [size(n) for n in (900, 24_576, 256_000, 4_096_000, 33_177_600)] == [
        f"900{NBSP}bytes", f"25{NBSP}kB", f"256{NBSP}kB", f"4.1{NBSP}MB", f"33.2{NBSP}MB",
    ]  # fmt: skip
    stats = ipc.CopyStats(lock_wait_s=0.00004, copy_s=0.0004, nbytes=4_096_000)
    line = describe(lambda s: s, "k", (1280, 800), 3, stats, published=False)
    assert line == (
        f"Key: k · 1280\u00d7800{NBSP}pixels · generation 3 · Copied 4.1{NBSP}MB in 0.4{NBSP}ms"
        f" · lock wait 0.04{NBSP}ms"
    )


@posix_only(
    "the premise, that at this width a plain space splits the quantity, holds for Tk on X11; "
    "Tk on Windows measures label text and wraps it differently"
)
def test_status_line_never_wraps_between_a_number_and_its_unit(tk_root: tk.Tk) -> None:
    font = tkfont.nametofont("TkDefaultFont", root=tk_root)
    head = "lock wait 0.04"  # a line just wide enough for this would break before "ms"
    label = tk.Label(tk_root, text=f"{head}{NBSP}ms", wraplength=font.measure(head) + 2, padx=0, bd=0)
    label.pack()
    tk_root.update()
    # Tk wrapped before the number instead: no line is as wide as "lock wait 0.04".
    assert label.winfo_reqwidth() < font.measure(head)
    assert label.winfo_reqheight() > font.metrics("linespace") * 1.5  # two lines
    label.configure(text=f"{head} ms")  # with a plain space it would have split the quantity
    tk_root.update()
    assert label.winfo_reqwidth() >= font.measure(head)


# -- 6. zoom ---------------------------------------------------------------------------------
def sizes(app: App) -> tuple[int, int]:
    return (
        abs(int(tkfont.nametofont("TkDefaultFont", root=app.root).cget("size"))),
        abs(int(tkfont.nametofont("TkFixedFont", root=app.root).cget("size"))),
    )


def test_ctrl_plus_minus_and_zero_scale_every_font_the_trace_pane_included(make_app: AppFactory) -> None:
    app = make_app(show_trace=True)
    normal = sizes(app)
    app.root.focus_force()
    pump(app.root, lambda: app.root.focus_get() is not None, what="keyboard focus")
    app.root.event_generate("<Control-plus>")
    app.root.event_generate("<Control-plus>")
    settle(app)
    bigger = sizes(app)
    assert bigger[0] > normal[0] and bigger[1] > normal[1]
    assert app.zoom.factor == 1.5
    app.root.event_generate("<Control-minus>")
    settle(app)
    assert app.zoom.factor == 1.25
    app.root.event_generate("<Control-0>")
    settle(app)
    assert sizes(app) == normal and app.zoom.factor == 1.0


def test_zoom_option_scales_the_fonts_at_start(make_app: AppFactory) -> None:
    app = make_app(zoom=2.0, geometry="900x700")
    assert app.zoom.factor == 2.0
    # Twice the platform's own sizes (9 points here on Linux, 8 under Windows).
    base = {font.name: abs(size) for font, size in zip(app.zoom._fonts, app.zoom._base, strict=True)}
    assert sizes(app) == (2 * base["TkDefaultFont"], 2 * base["TkFixedFont"])
    settle(app)
    assert layout_problems(app) == []


# -- 5. the demo's windows say their role ---------------------------------------------------
@pytest.mark.parametrize(
    ("role", "title", "first"),
    [("publish", "SharedMemory Example · publishes", "This window publishes: press Load Image From File..."),
     ("display", "SharedMemory Example · displays", "This window displays: once the other window")],
)  # fmt: skip
def test_a_demo_window_says_its_role_in_its_title_and_first_message(
    make_app: AppFactory, role: str, title: str, first: str
) -> None:
    app = make_app(role=role)
    assert app.root.title() == title
    assert text(app.label).startswith(first)


@pytest.mark.parametrize("lang", ["en", "zh_CN"])
@pytest.mark.parametrize("role", [None, "display"])
def test_beside_the_demos_stream_no_window_asks_for_a_load(
    make_app: AppFactory, role: str | None, lang: str
) -> None:
    """The player would overwrite a loaded image within a frame: the windows say what the
    stream demo shows instead (tkshm demo --pattern / --play)."""
    app = make_app(role=role, lang=lang, stream=True)
    words = text(app.label)
    assert "Load Image From File" not in words and "从文件加载图片" not in words
    if lang == "en":
        assert ("This window follows the stream" if role else "tkshm play publishes a stream") in words
    else:
        assert "tkshm play" in words and ("跟随" in words)


def test_a_demo_window_says_its_role_in_chinese(make_app: AppFactory) -> None:
    app = make_app(role="publish", lang="zh_CN")
    assert app.root.title() == "共享内存示例 · 发布"
    assert "从文件加载图片..." in text(app.label)


# -- structure ------------------------------------------------------------------------------
def test_a_closed_window_is_freed_without_the_garbage_collector(tk_root: tk.Tk, key: str, peer: Peer) -> None:
    """No reference cycle keeps a closed dialog: the cyclic collector may run on any thread,
    and Tk objects must only be finalised on the Tk thread."""
    peer.call("publish", key=key, width=200, height=100, seed=1)

    def use_and_close() -> weakref.ref[App]:
        app = App(tk_root, key=key, lang="en", events=False)
        app.display_button.invoke()
        pump(tk_root, showing(app, "shm"), what="the displayed image")
        app.toggle_follow()
        pump(tk_root, lambda: app.follower.segment is not None, what="follow mode attached")
        app.close()
        return weakref.ref(app)

    gc.collect()
    gc.disable()
    try:
        assert use_and_close()() is None
    finally:
        gc.enable()
    peer.call("detach", key=key)


def test_the_trace_pane_keeps_numbers_with_their_units() -> None:
    line = "copied 4,096,000 bytes (1280x800, generation 1) out of the segment in 14.1 ms"
    assert unbreakable(line) == (
        f"copied 4,096,000{NBSP}bytes (1280x800, generation 1) out of the segment in 14.1{NBSP}ms"
    )
    assert unbreakable("lock not granted after 5 s: another process holds it") == (
        f"lock not granted after 5{NBSP}s: another process holds it"
    )


@posix_only("a signal sent to oneself: Windows has no os.kill for SIGINT to the own process")
def test_ctrl_c_closes_the_window_soon_but_not_inside_a_callbacks_layout(
    make_app: AppFactory, tk_root: tk.Tk
) -> None:
    # The signal handler runs between two Python instructions, maybe inside a callback that
    # then calls update_idletasks() and measures a widget: closing there destroyed the window
    # under that callback ("application has been destroyed").
    app = make_app()
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        close_on_signal(tk_root, app)
        os.kill(os.getpid(), signal.SIGINT)
        tk_root.update_idletasks()
        assert not app.closed
        assert tk_root.winfo_width() > 0  # still there to measure
        pump(tk_root, lambda: app.closed, 10.0, "the window closed by Ctrl+C")
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
