"""``tkshm.testing``, the pytest plugin tkshm offers its users, and the package they install.

The plugin's promises are tested as a user meets them: inner test files run by ``pytester``
in a pytest of their own (a separate process, so that a handle an inner test leaks is
released when it exits), with ``pytest_plugins = ["tkshm.testing"]`` and nothing else.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from patterns import pattern, seed_of
from PIL import Image

from tkshm import ipc

if TYPE_CHECKING:  # imported by pytest_plugins below, before this module could be rewritten
    from tkshm.testing import Publish

pytest_plugins = ["pytester", "tkshm.testing"]

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 120.0


@pytest.fixture(autouse=True)
def private_segments(isolated_dir: str) -> str:
    return isolated_dir


def run_inner(pytester: pytest.Pytester, source: str) -> pytest.RunResult:
    pytester.makepyfile(test_inner='pytest_plugins = ["tkshm.testing"]\n' + source)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=DEADLINE)


# ---------------------------------------------------------------------------- tkshm_key
def test_a_test_that_detaches_passes(pytester: pytest.Pytester) -> None:
    result = run_inner(
        pytester,
        """
from PIL import Image
from tkshm import ipc

def test_publish_and_detach(tkshm_key):
    with ipc.publish(Image.new("RGB", (4, 4)), key=tkshm_key):
        assert ipc.read_image(key=tkshm_key).size == (4, 4)
""",
    )
    result.assert_outcomes(passed=1)


def test_a_test_that_leaves_its_segment_attached_fails(pytester: pytest.Pytester) -> None:
    result = run_inner(
        pytester,
        """
from PIL import Image
from tkshm import ipc

kept = []

def test_forgets_to_detach(tkshm_key):
    kept.append(ipc.publish(Image.new("RGB", (4, 4)), key=tkshm_key))
""",
    )
    result.assert_outcomes(passed=1, errors=1)  # the test body passed; its teardown failed it
    result.stdout.fnmatch_lines(["*the segment for key 'test-test_forgets_to_detach-*' was left behind: *"])
    assert ipc.list_segments() == []  # released when the inner pytest exited


def test_a_test_whose_publisher_was_killed_fails_unless_it_cleans(pytester: pytest.Pytester) -> None:
    result = run_inner(
        pytester,
        """
from PIL import Image
from tkshm import ipc

def test_kills_and_leaves_the_orphan(tkshm_key, tkshm_publisher):
    tkshm_publisher(Image.new("RGB", (4, 4))).kill()

def test_kills_and_cleans(tkshm_key, tkshm_publisher):
    tkshm_publisher(Image.new("RGB", (4, 4))).kill()
    ipc.clean()
""",
    )
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_kills_and_leaves_the_orphan*"])
    ipc.clean()  # the inner run's deliberate orphan
    assert ipc.list_segments() == []


def test_the_plugin_is_not_registered_unless_a_suite_opts_in(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner="def test_uses_it(tkshm_key):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=DEADLINE)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'tkshm_key' not found*"])


# ---------------------------------------------------------------------------- publisher
def test_viewer_shows_what_another_process_published(tkshm_key: str, tkshm_publisher: Publish) -> None:
    """The README's example, as written there."""
    tkshm_publisher(Image.new("RGB", (640, 480), "teal"))  # another process; returns once published
    assert ipc.read_image(key=tkshm_key).size == (640, 480)


def test_publisher_shares_an_image_from_another_process_exactly(
    tkshm_key: str, tkshm_publisher: Publish
) -> None:
    image = pattern(123, 45, 678)
    publisher = tkshm_publisher(image)
    assert publisher.pid != os.getpid()
    info = ipc.info(key=tkshm_key)
    assert (info.writer_pid, info.generation, info.in_use) == (publisher.pid, publisher.generation, True)
    copy = ipc.read_image(key=tkshm_key)
    assert seed_of(copy) == 678 and copy.tobytes() == image.convert("RGBA").tobytes()


def test_publisher_decodes_a_file_in_the_other_process(
    tkshm_key: str, tkshm_publisher: Publish, tmp_path: Path
) -> None:
    path = tmp_path / "p.png"
    pattern(20, 10, 9).save(path)
    tkshm_publisher(path)
    assert seed_of(ipc.read_image(key=tkshm_key)) == 9


def test_closing_the_publisher_detaches_and_removes_the_segment(
    tkshm_key: str, tkshm_publisher: Publish
) -> None:
    publisher = tkshm_publisher(Image.new("RGB", (3, 3)))
    assert ipc.remains(tkshm_key) != []
    publisher.close()
    publisher.close()  # idempotent
    assert ipc.remains(tkshm_key) == []


def test_a_publisher_that_cannot_publish_says_why(tkshm_key: str, tmp_path: Path) -> None:
    from tkshm.testing import Publisher, PublisherError

    missing = tmp_path / "missing.png"
    with pytest.raises(
        PublisherError, match=r"failed: tkshm\.errors\.ImageError: .*missing\.png does not exist"
    ):
        Publisher(missing, tkshm_key)


# ---------------------------------------------------------------------------- the package
def test_the_built_wheel_ships_the_py_typed_marker(tmp_path: Path) -> None:
    """PEP 561: without tkshm/py.typed, mypy --strict on a user's code says tkshm is untyped."""
    source = tmp_path / "source"
    for name in ("tkshm", "assets"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    wheels = tmp_path / "wheels"
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q"]
    build = subprocess.run(
        [*pip_wheel, "-w", str(wheels), str(source)], capture_output=True, text=True, timeout=DEADLINE
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = wheels.glob("tkshm-*.whl")
    with zipfile.ZipFile(wheel) as contents:
        names = contents.namelist()
    assert "tkshm/py.typed" in names
    assert "tkshm/testing.py" in names
