"""The package's shape: every module imports, the ``qamrec`` imports form no circle, modules stay short.

The import graph is read statically from every ``import qamrec...`` / ``from qamrec... import`` line, those
inside functions included (a function-level import is how a circle hides): an edge goes to the module
named, or to ``package.name`` when that is a module itself.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "qamrec"
MAX_LINES = 500
#: modules someone else owns and splits; the length limit does not apply to them here
LONG_ALLOWED = {"qamrec.serve.engine"}


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name, for its ``__init__``)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """``module -> the qamrec modules it imports`` (anywhere in the file)."""
    mods = modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("qamrec"):
                names = [f"{node.module}.{a.name}" for a in node.names]
                targets = [resolve(n) if n in mods else resolve(node.module) for n in names]
            elif isinstance(node, ast.Import):
                targets = [resolve(a.name) for a in node.names if a.name.startswith("qamrec")]
            else:
                continue
            graph[mod] |= {t for t in targets if t is not None and t != mod}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_scan_sees_a_circle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle() -> None:
    graph = import_graph()
    assert "qamrec.data.steps" in graph["qamrec.data.prepare"]  # the scan reads the graph at all
    assert "qamrec.data.prepare" not in graph["qamrec.data.steps"]
    assert cycles(graph) == []


def test_modules_are_short() -> None:
    long = {m: n for m, p in modules().items() if m not in LONG_ALLOWED
            and (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


@pytest.mark.parametrize("name", [m for m in modules() if not m.endswith("__main__")])
def test_module_imports(name: str) -> None:
    importlib.import_module(name)
