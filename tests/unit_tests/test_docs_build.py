"""The docs site builds with warnings as errors (``mkdocs build --strict``).

Marked slow: a cold build (importing every module for the API reference, the Material theme)
takes more than 10 s on 2 CPU cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    for page in ("index.html", "how-it-works/index.html", "api/thinker/index.html", "images/graph.png"):
        assert (site / page).exists(), page
    how = (site / "how-it-works" / "index.html").read_text(encoding="utf-8")
    assert '<pre class="mermaid">' in how  # the generated Mermaid block renders as a diagram
    api = (site / "api" / "thinker" / "index.html").read_text(encoding="utf-8")
    assert "SpeculativeThinker" in api and ":class:" not in api
