"""Every code block of README.md and docs/ marked runnable actually runs.

Mark a block by putting ``<!-- runnable -->`` (or ``<!-- runnable: slow -->`` for one that needs
the real models) on the line right before its ```` ```python ```` fence. The runnable blocks of
one file run in order in one namespace, like a notebook (the fast ones and the slow ones each
in their own), in a temporary working folder; a block fails the test by raising (use
``assert`` to check what it shows).
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
        if fence is None or fence.group("lang") not in ("python", "py"):
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


FAST = [(p, b) for p in doc_files() if (b := [x for x in runnable_blocks(p) if not x.slow])]
SLOW = [(p, b) for p in doc_files() if (b := [x for x in runnable_blocks(p) if x.slow])]


def _id(item: tuple[Path, list[Block]]) -> str:
    return str(item[0].relative_to(ROOT))


def test_markers_are_well_formed() -> None:
    total = sum(len(runnable_blocks(p)) for p in doc_files())
    assert total >= 8, "the docs should keep their runnable examples"


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
