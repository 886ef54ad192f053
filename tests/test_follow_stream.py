"""Follow mode playing a stream, on a real Tk root (pytest-xvfb), from a real publisher process
(``tests/stream_source.py``): the window shows ever newer frames at the stream's rate, its
status line says frames per second, frames skipped and latency, and its trace sums the stream
up instead of tracing every frame. When the publisher is killed the window says so within a
second and keeps the last frame; a new publisher on the same key is followed at once.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections.abc import Callable, Iterator

import pytest
from commands import Running
from patterns import seed_of
from tk_fixtures import App, AppFactory, pump

from tkshm import figures, trace, watching
from tkshm.cli import build_parser
from tkshm.figures import Figures, Second
from tkshm.i18n import translation
from tkshm.window.picture import Picture
from tkshm.window.status import NBSP, stream_glossary

HERE = os.path.dirname(os.path.abspath(__file__))
DEADLINE = 30.0  # generous: a busy two-core machine runs other tests alongside
NUMBER = r"(\d+(?:\.\d+)?)"
STREAM = re.compile(
    rf"Key: .+ · 160\u00d7120{NBSP}pixels · generation (\d+) · {NUMBER}{NBSP}frames/s"
    rf" · {NUMBER}{NBSP}skipped/s · latency{NBSP}p50{NBSP}{NUMBER}{NBSP}ms"
)


class Source:
    """``stream_source.py`` publishing pattern frames under ``key`` at ``fps``."""

    def __init__(self, key: str, fps: float, size: tuple[int, int] = (160, 120), seed: int = 1) -> None:
        script = os.path.join(HERE, "stream_source.py")
        self.running = Running([sys.executable, script, key, *map(str, size), str(fps), str(seed)])
        line = self.running.line().split()
        assert line[0] == "PUBLISHING", line
        self.pid = int(line[1])


@pytest.fixture
def sources() -> Iterator[list[Source]]:
    started: list[Source] = []
    yield started
    for source in started:
        source.running.close()


StreamFollower = Callable[..., tuple[App, Source]]


@pytest.fixture
def follow_stream(make_app: AppFactory, key: str, sources: list[Source]) -> StreamFollower:
    """``follow_stream(fps, **window_options)``: a source publishing under the test's key at
    ``fps``, and a window following it, with the stream's first frame already on screen."""

    def start(fps: float, **options: object) -> tuple[App, Source]:
        source = Source(key, fps)
        sources.append(source)
        app = make_app(**options)
        app.toggle_follow()
        pump(app.root, lambda: generation(app) > 0, DEADLINE, "the first frame")
        return app, source

    return start


def text(widget: object) -> str:
    return str(widget.cget("text"))  # type: ignore[attr-defined]


def generation(app: App) -> int:
    picture = app.picture_area.picture
    return -1 if picture is None or picture.generation is None else picture.generation


def shown_seed(app: App) -> int:
    picture = app.picture_area.picture
    return -1 if picture is None else seed_of(picture.image)


def stream_figures(app: App) -> re.Match[str] | None:
    return STREAM.fullmatch(text(app.status))


@contextlib.contextmanager
def each_frame(app: App, seen: Callable[[int], object]) -> Iterator[None]:
    """Call ``seen(generation)`` after each frame follow mode shows, while the block runs.
    (The window is given back its own method after: a window holding a closure over itself
    would be freed by the garbage collector, on whichever thread, not when it closes.)"""
    show_frame = app.show_frame

    def showing(picture: Picture, figures: Figures | None) -> None:
        show_frame(picture, figures)
        seen(picture.generation or 0)

    app.show_frame = showing  # type: ignore[method-assign]
    try:
        yield
    finally:
        del app.show_frame


def pane(app: App) -> list[str]:
    return [line.split("] ", 1)[-1] for line in app.trace_pane.content().splitlines()]


# -- the figures, without a window -----------------------------------------------------------
def test_the_last_second_counts_frames_and_skipped_per_second_and_latency_and_forgets_a_pause() -> None:
    second = Second(start=0.0)
    assert second.figures(0.0) is None
    second.begin_at(0)  # the frame already there is not counted
    for step in range(1, 61):  # 30 frames a second for 2 s, every other generation shown
        second.taken(2 * step, 0.004 if step % 2 else 0.006, step / 30)
    said = second.figures(2.0)
    assert said is not None
    # Only the last second counts: 30 frames shown, 30 passed over, so 60 published a second.
    assert said.frames_per_second == pytest.approx(30)
    assert said.skipped_per_second == pytest.approx(30)
    assert (said.latency_p50_s, said.latency_p99_s) == (0.004, 0.006)
    assert second.figures(2.5) is None  # half a second without a frame: no longer a stream
    second.taken(200, 0.004, 3.6)  # a stream again, after generations 121 to 199 went unseen
    second.taken(201, 0.004, 3.63)
    later = second.figures(3.65)
    assert later is not None and later.skipped_per_second == pytest.approx(79)  # not a total since 0


def test_the_window_and_watch_explain_their_figures_in_the_same_words() -> None:
    """Each figure's word is defined once (tkshm.figures): in the status line's tooltip and in
    ``tkshm watch --help``, each saying what it measures."""
    glossary = stream_glossary(translation("en").gettext)
    help_text = " ".join(build_parser().commands["watch"].format_help().split())
    for word, _ in figures.GLOSSARY:
        assert word.split(",")[0] in glossary and word in help_text, word
    assert "publish to on screen" in glossary and "publish to copied out" in help_text
    assert watching.REPORT_EVERY_S == figures.WINDOW_S  # the same second


# -- a stream in the window ------------------------------------------------------------------
def test_following_a_stream_shows_ever_newer_frames_and_says_rate_skipped_and_latency(
    follow_stream: StreamFollower, key: str
) -> None:
    app, _ = follow_stream(fps=30)
    first = generation(app)
    pump(app.root, lambda: generation(app) >= first + 20, DEADLINE, "twenty newer frames")
    pump(app.root, lambda: stream_figures(app) is not None, DEADLINE, "the stream's figures")
    match = stream_figures(app)
    assert match is not None
    rate, latency = float(match.group(2)), float(match.group(4))
    assert 5 <= rate <= 40, text(app.status)  # about 30; less on a busy machine, never more
    assert 0 <= latency < 1000, text(app.status)
    picture = app.picture_area.picture
    assert picture is not None and picture.complete
    seed_of(picture.image)  # an intact frame, never two torn together
    assert text(app.label) == f"Following key {key}: showing generation {match.group(1)} from shared memory."
    assert app.tooltips["status"].text == stream_glossary(app.tr)  # what each figure measures


def test_the_label_and_status_line_name_the_generation_of_the_frame_on_screen_frame_by_frame(
    follow_stream: StreamFollower, key: str
) -> None:
    app, _ = follow_stream(fps=60)
    said: list[tuple[int, str, str]] = []  # (generation shown, label, status line) per frame
    with each_frame(app, lambda shown: said.append((shown, text(app.label), text(app.status)))):
        pump(app.root, lambda: len(said) >= 40, DEADLINE, "forty frames")
    for shown, label, status in said:
        assert label == f"Following key {key}: showing generation {shown} from shared memory."
        assert f" · generation {shown} · " in status, (shown, status)


def test_a_window_that_cannot_keep_up_skips_to_the_newest_frame_and_counts_what_it_skipped(
    follow_stream: StreamFollower,
) -> None:
    app, _ = follow_stream(fps=60)
    before = generation(app)
    shown: list[int] = []  # the generation of every frame shown from now on
    with each_frame(app, shown.append):
        skips_while_busy(app, before, shown)


def skips_while_busy(app: App, before: int, shown: list[int]) -> None:
    segment = app.follower.segment
    assert segment is not None
    end = time.monotonic() + DEADLINE
    # Tk kept busy (no event is handled) until the source has published 15 more frames.
    while segment.peek_generation() < before + 15 and time.monotonic() < end:
        pass
    published = segment.peek_generation()
    pump(app.root, lambda: generation(app) >= published, DEADLINE, "the newest frame after the busy spell")
    # At most the read that was on its way, then the newest: never the frames in between.
    assert len([g for g in shown if before < g <= published]) <= 3, shown

    def skipped_shown() -> float:
        match = stream_figures(app)
        return -1 if match is None else float(match.group(3))

    # Those frames were skipped within a second: the status line says so per second.
    pump(app.root, lambda: skipped_shown() >= 10, DEADLINE, "the skipped frames in the status line")


def test_a_killed_publisher_is_reported_within_a_second_and_a_new_one_is_followed(
    follow_stream: StreamFollower, key: str, sources: list[Source]
) -> None:
    app, first = follow_stream(fps=30, show_trace=True)
    pump(app.root, lambda: stream_figures(app) is not None, DEADLINE, "the stream's figures")
    first.running.kill()
    killed = time.monotonic()
    last = generation(app)
    stopped = re.compile(
        rf"Following key {re.escape(key)}: process {first.pid}, which published generation (\d+), "
        r"has stopped\. Its last frame stays on screen until a new one is published\."
    )
    pump(app.root, lambda: stopped.fullmatch(text(app.label)) is not None, DEADLINE, "the stopped sentence")
    said = time.monotonic() - killed
    assert said < 1.5, f"said {said:.2f} s after the kill"  # within 1 s, plus a busy machine's slack
    match = stopped.fullmatch(text(app.label))
    assert match is not None and int(match.group(1)) == generation(app) >= last
    picture = app.picture_area.picture
    assert picture is not None and app.picture_area.label.winfo_ismapped()  # the last frame stays
    seed_of(picture.image)
    assert text(app.status).endswith("publisher stopped")

    second = Source(key, fps=30, seed=1000)
    sources.append(second)
    pump(app.root, lambda: text(app.label).startswith(f"Following key {key}: showing"), DEADLINE, "again")
    pump(app.root, lambda: shown_seed(app) >= 1000, DEADLINE, "the new publisher's frames")
    pump(app.root, lambda: stream_figures(app) is not None, DEADLINE, "the new stream's figures")
    again = f"from process {second.pid}: following again"
    pump(app.root, lambda: any(again in line for line in pane(app)), DEADLINE, "the trace of the new stream")
    assert any(f"process {first.pid}, which published generation" in line for line in pane(app))


def test_a_stream_is_summed_up_in_the_trace_once_a_second_not_traced_frame_by_frame(
    follow_stream: StreamFollower,
) -> None:
    app, _ = follow_stream(fps=30, show_trace=True)
    summary = re.compile(
        r"follow: (\d+) frames shown in the last \d\.\d s \(generations \d+ to \d+, \d+ skipped\);"
        r" latency p50 \d+\.\d ms \(publish to on screen\)"
    )
    pump(app.root, lambda: sum(bool(summary.fullmatch(m)) for m in pane(app)) >= 2, DEADLINE, "two summaries")
    lines = pane(app)
    shown = generation(app)
    assert shown > 30
    copies = [line for line in lines if line.startswith("copied ")]
    assert len(copies) < 5, f"{len(copies)} copies traced for {shown} frames:\n" + "\n".join(lines)
    assert "follow: waiting on the segment's wake-up socket (a datagram after each publish)" in lines or (
        "follow: checking the generation every 20 ms (no wake-up socket here)" in lines
    )
    assert trace.on()  # the window still listens: only the frames of the stream are quiet
