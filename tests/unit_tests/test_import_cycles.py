"""No import cycles in the package (type-level ones included): a cycle shows a dependency pointing the wrong way.

The import graph is read from the source (module-level imports, ``TYPE_CHECKING`` blocks included;
imports inside functions are deferred on purpose and left out).
"""

from __future__ import annotations

import ast
from pathlib import Path

import spec_graph

ROOT = Path(spec_graph.__file__).parent
CHECKED = ("spec_graph",)
"""The whole package."""


def _modules() -> dict[str, Path]:
    mods = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return mods


def _deferred(tree: ast.Module) -> set[int]:
    """Ids of the import nodes inside functions."""
    return {
        id(node)
        for fn in ast.walk(tree)
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
        for node in ast.walk(fn)
        if isinstance(node, ast.Import | ast.ImportFrom)
    }


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports at module level (``TYPE_CHECKING`` included)."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        tree = ast.parse(path.read_text())
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        deferred = _deferred(tree)
        for node in ast.walk(tree):
            if id(node) in deferred or not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for name in names:
                while name and name not in mods:
                    name = name.rpartition(".")[0]
                if name and name != mod:
                    graph[mod].add(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read() -> None:
    graph = import_graph()
    assert "spec_graph.generators.remote_call" in graph["spec_graph.generators.remote"]
    assert "spec_graph.generators.base" in graph["spec_graph.generators.drafting"]


def test_no_import_cycle_in_the_package() -> None:
    bad = [c for c in cycles(import_graph()) if any(m.startswith(CHECKED) for m in c)]
    assert bad == [], f"import cycles: {bad}"


def test_a_cycle_is_found() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
