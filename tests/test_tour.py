"""The guided tour (docs/tour.md, docs/tour.zh-CN.md) stays true to the code it quotes.

* Every excerpt (a code block right after ``<!-- excerpt: PATH -->``) is still in PATH, line
  for line; a line ``# ...`` in an excerpt stands for lines left out.
* The terminal sessions (code blocks after ``<!-- transcript: terminal N -->``) are run, in
  order, in two "terminals", and print what the tour shows, once times, process ids, the user's
  directory and durations are set aside.
* Both languages quote the same excerpts and sessions, name only tests that exist, and link
  only to files that exist; README.zh-CN.md gives the README's set-up commands.

The terminal sessions are POSIX-only: they are a Linux terminal's (``/dev/shm`` paths, Ctrl+C,
``kill -9``). The excerpts, names and links are checked everywhere.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from commands import Running
from platforms import posix_only

ROOT = Path(__file__).resolve().parent.parent
TOURS = [ROOT / "docs" / "tour.md", ROOT / "docs" / "tour.zh-CN.md"]
README = ROOT / "README.md"
README_ZH = ROOT / "README.zh-CN.md"
ELISION = "# ..."
DEADLINE = 30.0

_BLOCK = re.compile(r"<!-- (excerpt|transcript): ([^>]+?) -->\n```[a-z]*\n(.*?)```", re.S)


@dataclass(frozen=True)
class Block:
    kind: str  # "excerpt" or "transcript"
    where: str  # a source path, or "terminal N"
    text: str


def blocks(path: Path, kind: str) -> list[Block]:
    found = [Block(*m.groups()) for m in _BLOCK.finditer(path.read_text(encoding="utf-8"))]
    return [b for b in found if b.kind == kind]


# -- excerpts -------------------------------------------------------------------------------
def _matches_at(source: list[str], start: int, excerpt: list[str], indent: str | None = None) -> bool:
    """Does ``excerpt`` match ``source`` from line ``start``, every line shifted by the same
    indentation, with ``# ...`` standing for any number of lines?"""
    i = start
    for j, line in enumerate(excerpt):
        if line.strip() == ELISION:
            rest = excerpt[j + 1 :]
            return not rest or any(_matches_at(source, k, rest, indent) for k in range(i, len(source)))
        if i >= len(source):
            return False
        if indent is None:  # the first line fixes the shift
            if not line.strip() or not source[i].endswith(line):
                return False
            indent = source[i][: len(source[i]) - len(line)]
            if indent.strip():
                return False
        want = indent + line if line.strip() else ""
        if source[i].rstrip() != want.rstrip():
            return False
        i += 1
    return True


def excerpt_is_in(excerpt: str, source: str) -> bool:
    lines = excerpt.rstrip("\n").split("\n")
    quoted = [line for line in lines if line.strip() and line.strip() != ELISION]
    margin = min(len(line) - len(line.lstrip()) for line in quoted)
    lines = [line if line.strip() == ELISION else line[margin:] for line in lines]
    src = source.split("\n")
    return any(_matches_at(src, k, lines) for k in range(len(src)))


def _tour_ids() -> list[str]:
    return [p.name for p in TOURS]


@pytest.mark.parametrize("tour", TOURS, ids=_tour_ids())
def test_every_excerpt_in_the_tour_is_still_in_the_source(tour: Path) -> None:
    excerpts = blocks(tour, "excerpt")
    assert len(excerpts) >= 15, "the tour quotes the code it explains"
    for block in excerpts:
        source = (ROOT / block.where).read_text(encoding="utf-8")
        assert excerpt_is_in(block.text, source), (
            f"{tour.name}: this excerpt is no longer in {block.where}:\n{block.text}"
        )


def test_excerpt_matching_needs_the_same_lines_in_the_same_order() -> None:
    source = "def f():\n    a = 1\n    b = 2\n    c = 3\n    return a\n"
    assert excerpt_is_in("a = 1\nb = 2\n", source)
    assert excerpt_is_in("def f():\n    a = 1\n# ...\n    return a\n", source)
    assert not excerpt_is_in("a = 1\nc = 3\n", source)
    assert not excerpt_is_in("b = 2\na = 1\n", source)
    assert not excerpt_is_in("a = 2\n", source)


def test_both_languages_quote_the_same_code_and_sessions() -> None:
    english, chinese = TOURS
    for kind in ("excerpt", "transcript"):
        assert blocks(chinese, kind) == blocks(english, kind), f"the {kind}s of the two tours differ"


# -- names and links ------------------------------------------------------------------------
def _test_names() -> dict[str, set[str]]:
    names: dict[str, set[str]] = {}
    for path in (ROOT / "tests").glob("test_*.py"):
        names[path.name] = set(
            re.findall(r"^(?:async )?def (test_\w+)", path.read_text(encoding="utf-8"), re.M)
        )
    return names


@pytest.mark.parametrize("doc", [*TOURS, README, README_ZH], ids=lambda p: p.name)
def test_every_test_the_docs_name_exists(doc: Path) -> None:
    names = _test_names()
    every = set().union(*names.values())
    text = doc.read_text(encoding="utf-8")
    for file, test in re.findall(r"`(test_\w+\.py)::(test_\w+)`", text):
        assert test in names.get(file, set()), f"{doc.name} names {file}::{test}, which does not exist"
    for test in re.findall(r"(?<!\w)(test_\w+)\b(?!\.py)", text):
        assert test in every or f"{test}.py" in names, f"{doc.name} names {test}, which does not exist"


@pytest.mark.parametrize("doc", [*TOURS, README, README_ZH], ids=lambda p: p.name)
def test_every_relative_link_in_the_docs_leads_to_a_file(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target:
            continue
        assert (doc.parent / target).exists(), f"{doc.name} links to {target}, which does not exist"


def slugs(doc: Path) -> set[str]:
    """The anchors a code host (GitHub) makes for the headings of ``doc``."""
    text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.S)
    headings = re.findall(r"^#{1,6} (.+)$", text, re.M)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("doc", [*TOURS, README, README_ZH], ids=lambda p: p.name)
def test_every_anchor_in_the_docs_names_a_heading(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    for target, anchor in re.findall(r"\]\(([^)#\s]*)#([^)\s]+)\)", text):
        where = (doc.parent / target) if target else doc
        assert anchor in slugs(where), f"{doc.name} links to {target}#{anchor}, which names no heading"


def _setup_commands(readme: Path) -> list[str]:
    return re.findall(r"```sh\n(python3 -m venv .*?)\n```", readme.read_text(encoding="utf-8"))


def test_chinese_readme_gives_the_same_setup_commands_and_is_linked_from_the_readme() -> None:
    commands = _setup_commands(README)
    assert len(commands) == 2
    assert _setup_commands(README_ZH) == commands
    assert "](README.zh-CN.md)" in README.read_text(encoding="utf-8").split("\n## ")[0]
    assert "](docs/tour.zh-CN.md)" in README_ZH.read_text(encoding="utf-8")


# -- the terminal sessions ------------------------------------------------------------------
_VARIABLE = [
    (re.compile(r"\b\d\d:\d\d:\d\d\.\d{3}\b"), "<time>"),
    (re.compile(r"\d{4}-\d\d-\d\dT[\d:.]+[+-]\d\d:\d\d"), "<when>"),
    (re.compile(r"tkshm\[\d+\]"), "tkshm[<pid>]"),
    (re.compile(r"(writer pid\s+)\d+"), r"\1<pid>"),
    (re.compile(r"\b\d+(\.\d+)? ms\b"), "<n> ms"),
]
_TOUR_DIRECTORY = "/dev/shm/tkshm-1000"


def normalise(line: str, directory: str) -> str:
    line = line.replace(directory, "<dir>").replace(_TOUR_DIRECTORY, "<dir>")
    for pattern, replacement in _VARIABLE:
        line = pattern.sub(replacement, line)
    return line.rstrip()


@dataclass
class Session:
    cwd: Path
    env: dict[str, str]
    directory: str
    running: dict[str, Running] = field(default_factory=dict)  # by terminal: tkshm put
    last_status: int = 0

    def argv(self, command: str) -> list[str]:
        words = shlex.split(command)
        if words[0] == "tkshm":
            return [sys.executable, "-m", "tkshm", *words[1:]]
        if words[0] == "python":
            return [sys.executable, *words[1:]]
        raise AssertionError(f"the tour runs a command this test does not know: {command}")

    def check(self, command: str, got: list[str], want: list[str]) -> None:
        got = [normalise(line, self.directory) for line in got]
        want = [normalise(line, self.directory) for line in want]
        assert got == want, f"$ {command}\n  printed:  {got}\n  the tour: {want}"

    def run(self, terminal: str, command: str, want: list[str]) -> None:
        if command.startswith("kill -9 $(pgrep -f 'tkshm put')"):
            for program in self.running.values():
                program.kill()
            return
        if command == "echo $?":
            self.check(command, [str(self.last_status)], want)
            return
        argv = self.argv(command)
        if argv[3:4] == ["put"]:  # stays attached until interrupted: leave it running
            assert terminal not in self.running
            program = self.running[terminal] = Running(argv, self.env, self.cwd, merged=True)
            self.check(command, program.lines(len(want)), want)
            return
        done = subprocess.run(
            argv, cwd=self.cwd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, timeout=DEADLINE,
        )  # fmt: skip
        self.last_status = done.returncode
        self.check(command, done.stdout.splitlines(), want)

    def interrupt(self, terminal: str, want: list[str]) -> None:
        program = self.running.pop(terminal)
        assert program.stop(signal.SIGINT)[0] == 0
        self.check("^C", program.lines(len(want)), want)

    def killed(self, terminal: str) -> None:
        assert self.running.pop(terminal).finish()[0] == -signal.SIGKILL

    def play(self, block: Block) -> None:
        lines = block.text.rstrip("\n").split("\n")
        i = 0
        while i < len(lines):
            line = lines[i]
            j = i + 1
            while j < len(lines) and not lines[j].startswith(("$ ", "^C")):
                j += 1
            output = lines[i + 1 : j]
            if line.startswith("$ "):
                self.run(block.where, line[2:], output)
            elif line.startswith("^C"):  # a terminal echoes ^C, and the output goes on from there
                self.interrupt(block.where, [line[2:], *output] if line[2:] else output)
            elif line == "Killed":  # bash's word for a foreground job that got SIGKILL
                self.killed(block.where)
            else:
                raise AssertionError(f"a transcript line this test cannot play: {line!r}")
            i = j

    def stop(self) -> None:
        for program in self.running.values():
            program.close()


@posix_only("the tour's sessions are a Linux terminal's: /dev/shm paths, Ctrl+C and kill -9")
def test_the_tours_terminal_sessions_print_what_the_tour_shows(tmp_path: Path) -> None:
    transcripts = blocks(TOURS[0], "transcript")
    assert len(transcripts) >= 8
    directory = tmp_path / "segments"
    cwd = tmp_path / "clone"
    cwd.mkdir()
    (cwd / "assets").symlink_to(ROOT / "assets")  # the tour runs in the clone
    env = {**os.environ, "TKSHM_DIR": str(directory), "PYTHONUNBUFFERED": "1"}
    session = Session(cwd, env, str(directory))
    try:
        for block in transcripts:
            session.play(block)
    finally:
        session.stop()
    assert not session.running
    assert not directory.exists() or not any(directory.iterdir()), "the tour ends with nothing left behind"
