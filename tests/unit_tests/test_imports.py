"""Every module of ``spec_graph`` imports alone, and the package's public names stay.

"Alone" here: in a fresh interpreter, each module is imported with every ``spec_graph`` module
removed from ``sys.modules`` first, so it runs its own imports from scratch (the package's
``__init__`` included) and cannot lean on a sibling that an earlier import left behind: a module
that reads ``spec_graph.x.NAME`` without importing ``spec_graph.x``, or a cycle that only
resolves when the other side is imported first, fails. Third-party modules (torch, transformers,
langchain) stay loaded between the imports: they cannot be imported twice in one process, and
reloading them is not what this checks. One interpreter for all the modules keeps this to
seconds; a subprocess per module would take minutes (each one imports torch).

``__main__`` modules are left out: importing them runs the command line
(``tests/unit_tests/test_viz.py`` runs ``python -m spec_graph.viz``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import spec_graph

ROOT = Path(__file__).resolve().parents[2]

CHECK = """
import importlib, json, sys
package, names = sys.argv[1], sys.argv[2:]
failures = {}
for name in names:
    for key in [k for k in sys.modules if k == package or k.startswith(package + ".")]:
        del sys.modules[key]
    try:
        importlib.import_module(name)
    except BaseException as exc:  # an import may raise anything, SystemExit included
        failures[name] = f"{type(exc).__name__}: {exc}"
print(json.dumps(failures))
"""


def modules(root: Path, package: str) -> list[str]:
    """The dotted names of the modules of ``package`` (a folder under ``root``), ``__main__`` left out."""
    names = []
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__main__":
            continue
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return names


def import_each_alone(root: Path, package: str, names: list[str]) -> dict[str, str]:
    """``{module: error}`` for the modules of ``names`` that fail to import alone (see the module docstring)."""
    proc = subprocess.run(
        [sys.executable, "-c", CHECK, package, *names],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    failures: dict[str, str] = json.loads(proc.stdout.strip().splitlines()[-1])
    return failures


def test_every_module_imports_alone() -> None:
    names = modules(ROOT, "spec_graph")
    assert len(names) > 40 and "spec_graph.chat_model" in names and "spec_graph.viz.cli" in names
    assert import_each_alone(ROOT, "spec_graph", names) == {}


def test_a_module_that_needs_another_imported_first_fails(tmp_path: Path) -> None:
    pkg = tmp_path / "orderpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "base.py").write_text("VALUE = 1\n")
    # Reads a sibling it never imports: works only after something else imported orderpkg.base.
    (pkg / "leans.py").write_text("import orderpkg\n\nVALUE = orderpkg.base.VALUE\n")
    # A cycle that resolves only when b is imported first.
    (pkg / "a.py").write_text("import orderpkg.b\n\nA = 1\n")
    (pkg / "b.py").write_text("from orderpkg.a import A\n\nB = A + 1\n")
    names = ["orderpkg.base", "orderpkg.leans", "orderpkg.b", "orderpkg.a"]
    # In this order, in one interpreter without clearing, every import succeeds ...
    proc = subprocess.run(
        [sys.executable, "-c", "import importlib, sys\nfor n in sys.argv[1:]: importlib.import_module(n)", *names],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    # ... but alone, the two that lean on an earlier import fail.
    failures = import_each_alone(tmp_path, "orderpkg", names)
    assert sorted(failures) == ["orderpkg.a", "orderpkg.leans"]
    assert "base" in failures["orderpkg.leans"]


def test_public_names() -> None:
    """``from spec_graph import *`` works and gives every name of ``__all__``."""
    namespace: dict[str, object] = {}
    exec("from spec_graph import *", namespace)
    assert set(spec_graph.__all__) <= set(namespace)
    for name in ("SpeculativeThinkingChatModel", "SpeculativeThinker", "build_graph", "render_trace", "save_trace"):
        assert name in spec_graph.__all__
