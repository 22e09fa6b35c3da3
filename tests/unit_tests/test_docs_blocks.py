"""Every code block of README.md and docs/ marked runnable actually runs.

Mark a block by putting ``<!-- runnable -->`` (or ``<!-- runnable: slow -->`` for one that needs
the real models) on the line right before its ```` ```python ```` fence. The runnable blocks of
one file run in order in one namespace, like a notebook (the fast ones and the slow ones each
in their own), in a temporary working folder; a block fails the test by raising (use
``assert`` to check what it shows).

Every Python block of README.md is marked: runnable, or skipped with
``<!-- skip: needs-gpu: <why> -->`` or ``<!-- skip: needs-server: <why> -->`` (the only reasons a
README example may go untested); a skipped block is still compiled.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"^<!--\s*runnable(?::\s*(?P<kind>\w+))?\s*-->\s*$")
FENCE = re.compile(r"^```(?P<lang>\S*)\s*$")
SKIP = re.compile(r"^<!--\s*skip:\s*(?P<need>needs-gpu|needs-server):\s*(?P<why>\S.*?)\s*-->\s*$")
PYTHON = ("python", "py")


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the first code line
    code: str
    slow: bool


def doc_files() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return [p for p in files if "results" not in p.relative_to(ROOT).parts]


def runnable_blocks(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks = []
    for i, line in enumerate(lines):
        m = MARKER.match(line.strip())
        if not m:
            continue
        kind = m.group("kind")
        if kind not in (None, "slow"):
            raise AssertionError(f"{path}:{i + 1}: unknown marker {line.strip()!r} (runnable or runnable: slow)")
        fence = FENCE.match(lines[i + 1]) if i + 1 < len(lines) else None
        if fence is None or fence.group("lang") not in PYTHON:
            raise AssertionError(f"{path}:{i + 1}: a runnable marker must be followed by a ```python fence")
        end = next((j for j in range(i + 2, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            raise AssertionError(f"{path}:{i + 2}: unclosed code block")
        blocks.append(Block(path, i + 3, "\n".join(lines[i + 2 : end]) + "\n", kind == "slow"))
    return blocks


def run_blocks(blocks: list[Block], workdir: Path) -> None:
    namespace: dict[str, object] = {"__name__": "__docs__"}
    old = Path.cwd()
    os.chdir(workdir)
    try:
        for block in blocks:
            # Pad so that tracebacks show the line numbers of the Markdown file.
            code = compile("\n" * (block.line - 1) + block.code, str(block.path), "exec")
            exec(code, namespace)
    finally:
        os.chdir(old)
        if "matplotlib.pyplot" in sys.modules:
            sys.modules["matplotlib.pyplot"].close("all")


def python_blocks(path: Path) -> list[tuple[int, str, str]]:
    """Every Python block of ``path``: (line of its fence, the line above it, its code)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), len(lines))
        if fence.group("lang") in PYTHON:
            blocks.append((i + 1, lines[i - 1].strip() if i else "", "\n".join(lines[i + 1 : end]) + "\n"))
        i = end + 1
    return blocks


def unmarked_blocks(path: Path) -> list[str]:
    """``path:line`` of each Python block that is neither runnable nor skipped with a reason."""
    return [
        f"{path.name}:{line}"
        for line, above, _ in python_blocks(path)
        if not (MARKER.match(above) or SKIP.match(above))
    ]


FAST = [(p, b) for p in doc_files() if (b := [x for x in runnable_blocks(p) if not x.slow])]
SLOW = [(p, b) for p in doc_files() if (b := [x for x in runnable_blocks(p) if x.slow])]


def _id(item: tuple[Path, list[Block]]) -> str:
    return str(item[0].relative_to(ROOT))


def test_markers_are_well_formed() -> None:
    total = sum(len(runnable_blocks(p)) for p in doc_files())
    assert total >= 8, "the docs should keep their runnable examples"


def test_every_readme_python_block_is_run_or_skipped_with_a_reason() -> None:
    assert unmarked_blocks(ROOT / "README.md") == [], (
        "put <!-- runnable -->, <!-- runnable: slow --> or "
        "<!-- skip: needs-gpu|needs-server: why --> above these blocks"
    )


def test_skipped_readme_blocks_compile() -> None:
    for line, above, code in python_blocks(ROOT / "README.md"):
        if SKIP.match(above):
            compile("\n" * line + code, f"README.md:{line}", "exec")


def test_an_unmarked_block_is_caught(tmp_path: Path) -> None:
    page = tmp_path / "README.md"
    page.write_text(
        "<!-- runnable -->\n```python\nx = 1\n```\n\n"
        "<!-- skip: needs-gpu: loads a 14B model -->\n```python\ny = 2\n```\n\n"
        "<!-- skip: too slow -->\n```python\nz = 3\n```\n\n"
        "```python\nw = 4\n```\n\n```bash\necho not python\n```\n",
        encoding="utf-8",
    )
    assert unmarked_blocks(page) == ["README.md:12", "README.md:16"]


@pytest.mark.parametrize("item", FAST, ids=[_id(x) for x in FAST])
def test_runnable_blocks(item: tuple[Path, list[Block]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPLBACKEND", "Agg")
    run_blocks(item[1], tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("item", SLOW, ids=[_id(x) for x in SLOW])
def test_runnable_blocks_real_models(
    item: tuple[Path, list[Block]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MPLBACKEND", "Agg")
    run_blocks(item[1], tmp_path)
