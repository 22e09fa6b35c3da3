"""The package is type-checked (``mypy --strict``) and lint-clean (``ruff``), in CI like every test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False)


@pytest.mark.timeout(600)
def test_mypy_strict_is_clean_on_the_package() -> None:
    done = _run("mypy", "--strict", "spec_graph")
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_is_clean() -> None:
    for args in (("ruff", "check", "."), ("ruff", "format", "--check", ".")):
        done = _run(*args)
        assert done.returncode == 0, done.stdout + done.stderr


def test_no_type_ignore_in_the_graph() -> None:
    found = [f"{p.name}:{i}" for p in (ROOT / "spec_graph" / "graph").glob("*.py")
             for i, line in enumerate(p.read_text().splitlines(), 1) if "type: ignore" in line]  # fmt: skip
    assert not found


def test_modules_have_one_job_and_stay_small() -> None:
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in (ROOT / "spec_graph").rglob("*.py")}
    assert not {p: n for p, n in sizes.items() if n > 400}
    assert sizes["spec_graph/graph/algorithm.py"] <= 300  # the algorithm reads in one sitting
