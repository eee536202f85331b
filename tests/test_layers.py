"""The import graph: arrows point one way, and no module imports itself back.

Read from the source (every import statement, inside functions too), not by importing, so a
lazy import that runs back up the stack is caught as well as a top-level one.
cli -> {train, calib, export, engines, bench, serve} -> densedepth; between stages only
downward: bench -> engines -> export -> calib, serve -> engines. Nothing imports cli or demo
(cli runs the demo).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("densedepth", "calib", "export", "engines", "bench", "train", "serve")
TOP = ("cli", "demo")
# What each stage may import besides itself and densedepth.
BELOW = {
    "densedepth": set(),
    "calib": set(),
    "export": {"calib"},
    "engines": {"export", "calib"},
    "bench": {"engines", "export", "calib"},
    "train": set(),
    "serve": {"engines", "export", "calib"},
    "demo": {"bench", "engines", "export", "calib", "train"},
    "cli": {"bench", "engines", "export", "calib", "train", "demo", "serve"},
}


def module_files() -> dict[str, Path]:
    """Every module of the product: dotted name -> file."""
    files = {name: ROOT / f"{name}.py" for name in TOP}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            files[".".join(parts).removesuffix(".__init__")] = path
    return files


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The product modules ``path`` imports (``from pkg import mod`` counts as ``pkg.mod``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n for n in names if n in known}
    return found


def graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: imports_of(path, set(files)) for name, path in files.items()}


def stage(module: str) -> str:
    return module.split(".")[0]


def test_the_graph_is_read() -> None:
    edges = graph()
    assert len(edges) > 60 and "densedepth.util.errors" in edges["export.formats"]
    assert "densedepth.data.readers" in edges["densedepth.data"]


def test_arrows_point_down() -> None:
    upward = sorted(
        f"{a} -> {b}"
        for a, targets in graph().items()
        for b in targets
        if stage(b) not in {stage(a), "densedepth"} | BELOW[stage(a)]
    )
    assert upward == [], "imports that run against the layers: " + ", ".join(upward)


def test_no_import_circle() -> None:
    edges = graph()
    circles = strongly_connected(edges)
    assert circles == [], f"import circles: {circles}"


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components of more than one module (or a module importing itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges.get(v, ()):
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_checks_catch_a_circle_and_an_upward_arrow() -> None:
    """The checkers themselves: a made-up graph with both defects is flagged."""
    edges = {"export.a": {"export.b"}, "export.b": {"export.a"}, "calib.c": {"export.a"}}
    assert strongly_connected(edges) == [["export.a", "export.b"]]
    assert stage("export.a") not in {stage("calib.c"), "densedepth"} | BELOW["calib"]
