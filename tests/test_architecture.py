"""docs/architecture.md stays true: its diagram has a box for every module of the package,
each arrow is an import the code makes, and each import between rooms is an arrow.

The imports are read from the source with :mod:`ast` (nothing is imported), so the test runs
the same on every platform; both backends are seen, whichever this is.
"""

from __future__ import annotations

import ast
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "tkshm")
DOC = os.path.join(ROOT, "docs", "architecture.md")
# Rooms in this subgraph are drawn without arrows: nearly every room uses them.
SHARED = "shared"

_NODE = re.compile(r'^\s*(\w+)\["([^"]+)"\]\s*$')
_SUBGRAPH = re.compile(r'^\s*subgraph (\w+)\["[^"]*"\]\s*$')
_EDGE = re.compile(r"^\s*(\w+) --> (\w+(?: & \w+)*)\s*$")


def _modules() -> dict[str, str]:
    """Each module's label (its path below tkshm/) -> its dotted name."""
    found = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                label = os.path.relpath(os.path.join(folder, name), PACKAGE).replace(os.sep, "/")
                dotted = "tkshm." + label[:-3].replace("/", ".")
                found[label] = dotted.removesuffix(".__init__")
    return found


def _imports(modules: dict[str, str]) -> set[tuple[str, str]]:
    """(importer, imported) label pairs, for every import of one tkshm module by another."""
    by_name = {dotted: label for label, dotted in modules.items()}
    pairs = set()
    for label, dotted in modules.items():
        is_package = label.endswith("__init__.py")
        package = dotted if is_package else dotted.rpartition(".")[0]
        with open(os.path.join(PACKAGE, label), encoding="utf-8") as source:
            tree = ast.parse(source.read())
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1])
                    module = f"{base}.{node.module}" if node.module else base
                else:
                    module = node.module or ""
                # ``from . import ipc`` imports a module; ``from .errors import X`` (or
                # ``from . import asset``) takes a name out of the module (or package) itself.
                for alias in node.names:
                    submodule = f"{module}.{alias.name}"
                    targets.append(submodule if submodule in by_name else module)
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            pairs.update((label, by_name[t]) for t in targets if t in by_name and t != dotted)
    return pairs


def _diagram() -> tuple[dict[str, str], dict[str, str], set[tuple[str, str]]]:
    """The diagram's boxes (id -> label), each box's subgraph, and its arrows (as labels)."""
    with open(DOC, encoding="utf-8") as doc:
        text = doc.read()
    blocks = re.findall(r"```mermaid\n(.*?)```", text, re.S)
    assert len(blocks) == 1, "docs/architecture.md should hold one mermaid diagram"
    boxes: dict[str, str] = {}
    rooms: dict[str, str] = {}
    arrows: set[tuple[str, str]] = set()
    subgraph = ""
    for line in blocks[0].splitlines():
        if match := _SUBGRAPH.match(line):
            subgraph = match.group(1)
        elif line.strip() == "end":
            subgraph = ""
        elif match := _NODE.match(line):
            boxes[match.group(1)] = match.group(2)
            rooms[match.group(2)] = subgraph
        elif match := _EDGE.match(line):
            for target in match.group(2).split(" & "):
                arrows.add((match.group(1), target))
        elif line.strip() and line.strip() != "flowchart TD":
            pytest.fail(f"a diagram line this test cannot read: {line.strip()!r}")
    unknown = {end for arrow in arrows for end in arrow} - set(boxes)
    assert not unknown, f"arrows to or from no box: {sorted(unknown)}"
    return boxes, rooms, {(boxes[a], boxes[b]) for a, b in arrows}


def test_every_module_of_the_package_is_a_box_of_the_diagram() -> None:
    boxes, _, _ = _diagram()
    labels = sorted(boxes.values())
    assert len(labels) == len(set(labels)), "a module drawn twice"
    assert set(labels) == set(_modules()), (
        f"missing from the diagram: {sorted(set(_modules()) - set(labels))}; "
        f"drawn but not in the package: {sorted(set(labels) - set(_modules()))}"
    )


def test_every_arrow_is_an_import_the_code_makes() -> None:
    _, _, arrows = _diagram()
    wrong = sorted(arrows - _imports(_modules()))
    assert not wrong, f"arrows with no import behind them: {wrong}"


def test_every_import_between_rooms_is_an_arrow() -> None:
    _, rooms, arrows = _diagram()
    between = {(a, b) for a, b in _imports(_modules()) if rooms.get(b) != SHARED}
    missing = sorted(between - arrows)
    assert not missing, f"imports the diagram does not draw: {missing}"


def test_the_rooms_used_everywhere_use_no_other_room() -> None:
    _, rooms, _ = _diagram()
    imports = _imports(_modules())
    upward = sorted((a, b) for a, b in imports if rooms.get(a) == SHARED and rooms.get(b) != SHARED)
    assert not upward, f"a room used everywhere imports one above it: {upward}"
