"""The window on a real Tk root (pytest-xvfb): buttons, sentences, follow mode, fitting,
languages, shortcuts, status line, and detaching on close. File dialogs are replaced by
monkeypatching ``filedialog.askopenfilename``: a unit test never opens a modal dialog."""

from __future__ import annotations

import time
import tkinter as tk
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from patterns import pattern, seed_of
from peer import Peer
from PIL import Image
from tk_fixtures import App, make_photo, pump

from tkshm import ipc
from tkshm.errors import (
    ImageError,
    ImageTooLargeError,
    IncompleteImageError,
    LockTimeoutError,
    SegmentNotFoundError,
)
from tkshm.images import fit_size
from tkshm.window.picture import Picture, smooth

INSTRUCTIONS = (
    "Launch two of these dialogs. In the first, press the top button and load an image from a file. "
    "In the second, press the bottom button and display the loaded image from shared memory."
)
NOT_ATTACHED = "Unable to attach to shared memory segment.\nLoad an image first."
NOT_AN_IMAGE = "Selected file is not an image, please select another."
NBSP = "\u00a0"  # between a number and its unit: Tk never wraps there
TIMES = "\u00d7"

AppFactory = Callable[..., App]


@pytest.fixture
def make_app(key: str, tk_root: tk.Tk) -> Iterator[AppFactory]:
    # Depends on `key`, so that the windows are closed (detached) before `key` checks for
    # leftover files.
    made: list[App] = []

    def make(key: str, lang: str = "en") -> App:
        app = App(tk_root, key=key, lang=lang, events=False)
        tk_root.update()
        made.append(app)
        return app

    yield make
    for app in made:
        app.close()  # detaches: the `key` fixture then checks that no files remain


def choose(monkeypatch: pytest.MonkeyPatch, result: object, seen: list[str] | None = None) -> None:
    """Make the file dialog return ``result`` at once (and record the label meanwhile)."""

    def fake_dialog(**options: object) -> object:
        if seen is not None:
            seen.append(str(options["parent"].nametowidget(".").children))  # type: ignore[attr-defined]
        return result

    monkeypatch.setattr(tk.filedialog, "askopenfilename", fake_dialog)


def shown(app: App, source: str, quality: str = "fine") -> Callable[[], bool]:
    return lambda: (
        (picture := showing(app)) is not None
        and picture.source == source
        and app.picture_area.shown_quality == quality
    )


def showing(app: App) -> Picture | None:
    return app.picture_area.picture


def showing_seed(app: App, seed: int) -> bool:
    picture = showing(app)
    return picture is not None and seed_of(picture.image) == seed


def text(widget: tk.Misc) -> str:
    return str(widget.cget("text"))


@pytest.fixture
def photo_file(tmp_path: Path) -> Path:
    path = tmp_path / "lake photo.png"
    make_photo(320, 200, seed=3).save(path)
    return path


# -- faithful to the original ----------------------------------------------------------------
def test_window_has_qt_title_buttons_and_instructions(make_app: AppFactory, key: str) -> None:
    app = make_app(key)
    assert app.root.title() == "SharedMemory Example"
    assert text(app.load_button) == "Load Image From File..."
    assert text(app.display_button) == "Display Image From Shared Memory"
    assert text(app.label) == INSTRUCTIONS
    assert int(app.label.cget("wraplength")) > 0  # word-wrapped to the window's width
    assert app.follow_var.get() is False
    assert text(app.status) == f"Key: {key}"
    assert app._icon is not None and app._icon.width() == 256  # iconphoto from the package


def test_load_button_shows_the_file_and_publishes_it(
    make_app: AppFactory, key: str, photo_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(key)
    labels: list[str] = []
    monkeypatch.setattr(
        tk.filedialog, "askopenfilename", lambda **kw: labels.append(text(app.label)) or str(photo_file)
    )
    app.load_button.invoke()
    assert labels == ["Select an image file"]  # what the label says while the dialog is open
    pump(app.root, shown(app, "file"), what="the loaded image")
    assert text(app.label) == f"Showing lake photo.png, published to shared memory under key {key}."
    expected = Image.open(photo_file).convert("RGBA")
    assert ipc.read_image(key=key).tobytes() == expected.tobytes()  # another reader sees it
    assert app.picture_area.shown_size == (320, 200)  # small enough: shown at its own size
    status = text(app.status)
    size = f"320{TIMES}200{NBSP}pixels"
    assert status.startswith(f"Key: {key} · {size} · generation 1 · Published 256{NBSP}kB in ")
    assert "lock wait" in status


def test_loading_again_overwrites_the_image_in_place(
    make_app: AppFactory, key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(key)
    for seed in (1, 2):
        path = tmp_path / f"{seed}.png"
        pattern(64, 48, seed).save(path)
        choose(monkeypatch, str(path))
        app.load_from_file()
        pump(app.root, lambda s=seed: showing(app) is not None and showing(app).generation == s)  # type: ignore[union-attr]
    assert seed_of(ipc.read_image(key=key)) == 2


def test_animated_gif_shows_its_first_frame_and_says_so(
    make_app: AppFactory, key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames = [Image.new("RGB", (40, 30), colour) for colour in ("red", "lime", "blue")]
    path = tmp_path / "spin.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    app = make_app(key)
    choose(monkeypatch, str(path))
    app.load_button.invoke()
    pump(app.root, shown(app, "file"), what="the first frame")
    assert text(app.label) == (
        f"Showing spin.gif, published to shared memory under key {key}. "
        "It is animated: only its first of 3 frames is shown."
    )
    assert ipc.read_image(key=key).getpixel((0, 0)) == (255, 0, 0, 255)


def test_not_an_image_says_select_another(
    make_app: AppFactory, key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(key)
    notes = tmp_path / "notes.txt"
    notes.write_text("not pixels\n")
    choose(monkeypatch, str(notes))
    app.load_button.invoke()
    pump(app.root, lambda: text(app.label) == NOT_AN_IMAGE, what="the not-an-image sentence")
    with pytest.raises(SegmentNotFoundError):
        ipc.read_image(key=key)  # nothing was published


@pytest.mark.parametrize("cancelled", ["", ()], ids=["empty-string", "empty-tuple"])
def test_cancelling_the_dialog_changes_nothing(
    make_app: AppFactory, key: str, monkeypatch: pytest.MonkeyPatch, cancelled: object
) -> None:
    app = make_app(key)
    choose(monkeypatch, cancelled)
    app.load_button.invoke()
    app.root.update()
    assert text(app.label) == INSTRUCTIONS
    assert app.picture_area.picture is None and app.worker.pending == 0
    with pytest.raises(SegmentNotFoundError):
        ipc.info(key=key)


def test_display_with_nothing_published_says_load_an_image_first(make_app: AppFactory, key: str) -> None:
    app = make_app(key)
    app.display_button.invoke()
    pump(app.root, lambda: text(app.label) == NOT_ATTACHED, what="Qt's two-line sentence")


def test_display_button_shows_the_image_another_process_published(
    make_app: AppFactory, key: str, peer: Peer
) -> None:
    peer.call("publish", key=key, width=96, height=64, seed=777)
    app = make_app(key)
    app.display_button.invoke()
    pump(app.root, shown(app, "shm"), what="the image from shared memory")
    assert showing_seed(app, 777)
    assert text(app.label) == f"Showing the image from shared memory (key {key}, generation 1)."
    status = text(app.status)
    assert status.startswith(f"Key: {key} · 96{TIMES}64{NBSP}pixels · generation 1 · Copied 25{NBSP}kB in ")
    assert app.picture_area.picture.stats is not None and app.picture_area.picture.stats.nbytes == 96 * 64 * 4
    peer.call("detach", key=key)


def test_reading_does_not_keep_the_segment_alive(make_app: AppFactory, key: str, peer: Peer) -> None:
    peer.call("publish", key=key, width=32, height=32, seed=5)
    app = make_app(key)
    app.display_from_shared_memory()
    pump(app.root, shown(app, "shm"))
    pump(app.root, lambda: app.worker.pending == 0)  # the worker detaches once it has shown it
    # Display detaches after copying (as Qt's does): the publisher is the last holder.
    assert peer.call("detach", key=key)["removed"] is True


# -- follow mode -----------------------------------------------------------------------------
def test_follow_mode_shows_each_image_another_process_publishes(
    make_app: AppFactory, key: str, peer: Peer
) -> None:
    peer.call("publish", key=key, width=64, height=64, seed=1)
    app = make_app(key)
    app.follow_check.invoke()
    assert app.follow_var.get() is True
    pump(app.root, lambda: showing_seed(app, 1))
    for seed in range(2, 9):  # how fast is measured by scripts/measure_display.py, not here
        peer.send("write", key=key, width=64, height=64, seed=seed)
        pump(app.root, lambda s=seed: showing_seed(app, s))  # type: ignore[misc]
        peer.reply()
    app.follow_check.invoke()  # off: detaches on the worker
    pump(app.root, lambda: app.worker.pending == 0)
    assert app.follower.segment is None
    peer.call("detach", key=key)


def test_follow_mode_waits_for_a_key_nobody_has_published_yet(
    make_app: AppFactory, key: str, peer: Peer
) -> None:
    app = make_app(key)
    app.toggle_follow()  # what F5 does
    waiting = f"Following key {key}: waiting for an image to be published."
    pump(app.root, lambda: text(app.label) == waiting, what="the waiting sentence")
    peer.call("publish", key=key, width=40, height=30, seed=42)
    pump(app.root, lambda: showing_seed(app, 42), deadline=20)
    app.toggle_follow()
    pump(app.root, lambda: app.worker.pending == 0)
    peer.call("detach", key=key)


def test_follow_mode_keeps_the_image_alive_after_the_publisher_detaches(
    make_app: AppFactory, key: str, peer: Peer
) -> None:
    peer.call("publish", key=key, width=16, height=16, seed=9)
    app = make_app(key)
    app.toggle_follow()
    pump(app.root, shown(app, "shm"))
    assert peer.call("detach", key=key)["removed"] is False  # the follower still holds it
    assert seed_of(ipc.read_image(key=key)) == 9
    # closing the window (make_app's teardown) detaches the last holder: the key fixture
    # then finds no files left.


# -- big images fit --------------------------------------------------------------------------
def test_big_image_is_fitted_to_the_window_and_refitted_on_resize(
    make_app: AppFactory, key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "big.png"
    make_photo(1600, 1000).save(path)
    app = make_app(key)
    choose(monkeypatch, str(path))
    app.load_from_file()
    pump(app.root, shown(app, "file"), what="the smooth fit")
    area_w, area_h = app.picture_area.size()
    width, height = app.picture_area.shown_size
    assert width <= area_w and height <= area_h
    assert width == area_w or height == area_h  # as large as fits
    assert abs(width / height - 1.6) < 0.01  # aspect kept
    assert (app.picture_area.label.winfo_width(), app.picture_area.label.winfo_height()) == (width, height)
    assert ipc.info(key=key).width == 1600  # the full resolution stays in the segment

    app.root.geometry("420x560")
    area = app.picture_area
    pump(app.root, lambda: area.shown_size[0] < width and area.shown_quality == "fine", what="a re-fit")
    new_w, new_h = app.picture_area.shown_size
    assert new_w <= app.picture_area.size()[0] and new_h <= app.picture_area.size()[1]
    assert abs(new_w / new_h - 1.6) < 0.02


def test_fit_size_keeps_aspect_and_never_enlarges() -> None:
    assert fit_size((3840, 2160), (640, 480)) == (640, 360)
    assert fit_size((2160, 3840), (640, 480)) == (270, 480)
    assert fit_size((100, 50), (640, 480)) == (100, 50)
    assert fit_size((5000, 1), (10, 10)) == (10, 1)


def test_smooth_fit_averages_rather_than_samples() -> None:
    stripes = Image.new("L", (400, 4))
    stripes.putdata([255 * (x % 2) for _ in range(4) for x in range(400)])
    small = smooth(stripes.convert("RGBA"), (100, 1))
    low, high = small.convert("L").getextrema()
    assert 100 < low <= high < 155  # grey, not black or white: every pixel contributed


# -- languages, keys, errors -----------------------------------------------------------------
def test_chinese_window_has_translated_words_and_sentences(make_app: AppFactory, key: str) -> None:
    app = make_app(key, lang="zh_CN")
    assert app.root.title() == "共享内存示例"
    assert text(app.load_button) == "从文件加载图片..."
    assert text(app.display_button) == "从共享内存显示图片"
    assert text(app.label).startswith("启动两个这样的对话框。")
    app.display_button.invoke()
    pump(app.root, lambda: text(app.label) == "无法附加到共享内存段。\n请先加载一张图片。")


@pytest.mark.parametrize("lang", ["en", "fr", "xx_YY"])
def test_english_and_unknown_languages_show_the_english_strings(
    make_app: AppFactory, key: str, lang: str
) -> None:
    assert text(make_app(key, lang=lang).load_button) == "Load Image From File..."


def test_keyboard_shortcuts(
    make_app: AppFactory, key: str, photo_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(key)
    app.root.focus_force()
    pump(app.root, lambda: app.root.focus_get() is not None, what="keyboard focus")
    app.root.event_generate("<Control-d>")
    pump(app.root, lambda: text(app.label) == NOT_ATTACHED, what="Ctrl+D")
    choose(monkeypatch, str(photo_file))
    app.root.event_generate("<Control-o>")
    pump(app.root, shown(app, "file"), what="Ctrl+O")
    app.root.event_generate("<F5>")
    assert app.follow_var.get() is True
    app.root.event_generate("<F5>")
    assert app.follow_var.get() is False
    pump(app.root, lambda: app.worker.pending == 0)


def test_every_failure_becomes_a_sentence(make_app: AppFactory, key: str) -> None:
    app = make_app(key)
    missing = ImageError("x.png does not exist.", "x.png")
    missing.__cause__ = FileNotFoundError()
    cases = {
        SegmentNotFoundError(key): NOT_ATTACHED,
        ImageError("notes.txt is not an image that tkshm can read.", "notes.txt"): NOT_AN_IMAGE,
        missing: "x.png does not exist.",
        ImageTooLargeError("bomb", "b.png"): (
            "The selected image has too many pixels to decode safely, please select another."
        ),
        LockTimeoutError(key, 5.0): (
            "Shared memory segment is busy: another process has held its lock for more than 5 s. Try again."
        ),
        IncompleteImageError(key): (
            "The image in shared memory is incomplete: the process writing it stopped half-way. "
            "Load the image again."
        ),
        RuntimeError("boom"): "Something went wrong: boom",
    }
    for error, sentence in cases.items():
        assert app.error_sentence(error) == sentence


def test_window_stays_responsive_while_another_process_holds_the_lock(
    make_app: AppFactory, key: str, peers: list[Peer]
) -> None:
    owner, locker = Peer(), Peer()
    peers += [owner, locker]
    owner.call("publish", key=key, width=8, height=8, seed=1)
    locker.call("hold_lock", key=key, exclusive=True)
    app = make_app(key)
    app.display_from_shared_memory()
    # The worker waits for the lock; the main loop keeps running meanwhile.
    ticks = 0
    end = time.monotonic() + 0.3
    while time.monotonic() < end:
        app.root.update()
        ticks += 1
    assert ticks > 20 and app.worker.pending == 1
    locker.kill()  # the kernel drops its lock: the read goes through
    pump(app.root, shown(app, "shm"))
    owner.call("detach", key=key)


# -- lifetime --------------------------------------------------------------------------------
def test_closing_the_window_detaches_and_removes_the_last_copy(
    tk_root: tk.Tk, key: str, photo_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = App(tk_root, key=key, lang="en", events=False)
    choose(monkeypatch, str(photo_file))
    app.load_from_file()
    pump(tk_root, shown(app, "file"))
    assert ipc.info(key=key).width == 320
    app.close()  # what the window manager's close button calls
    assert app.closed
    with pytest.raises(SegmentNotFoundError):
        ipc.read_image(key=key)
