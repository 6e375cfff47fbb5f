"""The house rules the code keeps as it grows: no import circles between fexport's modules, no
module over 400 lines, and no module named like a standard or third-party module."""

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 400
# Packages fexport uses or sits beside: a module of ours named like one reads as that package.
THIRD_PARTY = {"numpy", "PIL", "onnx", "onnxruntime", "openvino", "tensorflow", "keras",
               "tf_keras", "tf2onnx", "ray", "sklearn", "skimage", "pyarrow", "typer",
               "matplotlib", "pytest", "hypothesis", "sympy", "pandas", "tensorrt",
               "tensorrt_libs", "nvidia"}


def _modules() -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package's __init__), from pyproject's package-dir mapping."""
    # The one-line `package-dir = { "fexport.x" = "x", ... }` table (no tomllib on Python 3.10).
    line = next(text for text in (ROOT / "pyproject.toml").read_text().splitlines()
                if text.startswith("package-dir"))
    found = {}
    for package, folder in re.findall(r'"([\w.]+)" = "([\w/]+)"', line):
        for path in (ROOT / folder).glob("*.py"):
            init = path.stem == "__init__"
            found[package if init else f"{package}.{path.stem}"] = (path, init)
    return found


MODULES = _modules()


def _imported(name, path, init) -> set[str]:
    """fexport modules `name` imports, anywhere in the file (function bodies too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(name, init, node)
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    # A package's __init__ importing its own submodules is how packages work, not a circle.
    return {n for n in names if n in MODULES and n != name
            and not (init and n.startswith(name + "."))}


def _absolute(name, init, node) -> str:
    if not node.level:
        return node.module
    base = name if init else name.rpartition(".")[0]
    for _ in range(node.level - 1):
        base = base.rpartition(".")[0]
    return f"{base}.{node.module}" if node.module else base


def _circle_from(start, edges) -> list[str] | None:
    """A path start -> ... -> start, if there is one (depth-first)."""
    stack, seen = [(start, [start])], set()
    while stack:
        node, path = stack.pop()
        for nxt in edges[node]:
            if nxt == start:
                return path + [start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, path + [nxt]))
    return None


def test_the_rules_see_every_room():
    rooms = {name.rsplit(".", 1)[0] for name in MODULES}
    assert {"fexport.runtime.files", "fexport.runtime.engines", "fexport.runtime.backends",
            "fexport.exporter", "fexport.precision", "fexport.bench"} <= rooms
    assert len(MODULES) > 60


def test_no_import_circles():
    edges = {name: _imported(name, *MODULES[name]) for name in MODULES}
    circles = [c for c in (_circle_from(name, edges) for name in MODULES) if c]
    assert circles == [], " ; ".join(" -> ".join(c) for c in circles[:3])


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_over_400_lines(name):
    lines = len(MODULES[name][0].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name}: {lines} lines; split it into smaller modules"


def test_no_module_is_named_like_another_package():
    stems = {path.stem for path, init in MODULES.values() if not init}
    clashes = stems & (set(sys.stdlib_module_names) | THIRD_PARTY)
    assert clashes == set()


# The rooms (docs/architecture.md) and the rooms each may import. The base is the package
# root's standard-library-only modules; the front (the API and the CLI) is the only room that
# sees every other; bench/ uses the library as a user would and nothing imports it.
BASE = {"fexport", "fexport.errors", "fexport.extras", "fexport.reports",
        "fexport.export_options", "fexport.comparison"}
FRONT = {"fexport.api", "fexport.__main__"}
ALLOWED = {
    "base": set(),
    "models": {"base"},
    "runtime": {"base", "models"},
    "precision": {"base", "models", "runtime"},
    "exporter": {"base", "models", "runtime"},
    "serve": {"base", "runtime"},
    "front": {"base", "models", "runtime", "precision", "exporter", "serve"},
    "bench": {"base", "models", "runtime", "precision", "exporter"},
}


def room_of(name: str) -> str:
    if name in BASE:
        return "base"
    if name in FRONT or name.startswith("fexport.cli"):
        return "front"
    return name.split(".")[1]


def room_graph() -> dict[str, dict[str, list[str]]]:
    """{room: {room it imports: [one 'module -> module' line per import]}}."""
    graph = {}
    for name in sorted(MODULES):
        for other in sorted(_imported(name, *MODULES[name])):
            here, there = room_of(name), room_of(other)
            if here != there:
                graph.setdefault(here, {}).setdefault(there, []).append(f"{name} -> {other}")
    return graph


def test_rooms_import_only_in_their_allowed_directions():
    graph = room_graph()
    print("\n".join(f"{room} -> {', '.join(sorted(targets))}" for room, targets in graph.items()))
    assert set(graph) <= set(ALLOWED), f"modules in no known room: {set(graph) - set(ALLOWED)}"
    wrong = [line for room, targets in graph.items() for target, lines in targets.items()
             if target not in ALLOWED[room] for line in lines]
    assert wrong == [], "imports against the architecture: " + "; ".join(wrong)
