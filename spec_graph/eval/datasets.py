"""Evaluation sets: the six packaged math sets, or any JSON Lines file with ``problem``/``answer``.

The packaged files live in :mod:`spec_graph.data` (attribution in its ``SOURCES.md``). Each line
is an object with ``problem`` and ``answer`` (the gold final answer); ``id`` is optional.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

__all__ = ["DATASETS", "Problem", "dataset_path", "load_dataset"]

DATASETS: dict[str, str] = {
    "math500": "MATH500 (500 competition problems, LaTeX answers)",
    "aime24": "AIME 2024 (30 problems, integer answers)",
    "amc23": "AMC 2023 (40 problems)",
    "gsm8k": "GSM8K test (1319 grade-school word problems, numeric answers)",
    "multiarith": "MultiArith (600 one- or two-step arithmetic word problems)",
    "svamp": "SVAMP (1000 arithmetic word problems)",
}
"""Packaged sets: name -> one-line description."""


@dataclass(frozen=True)
class Problem:
    """One evaluation item."""

    id: str
    problem: str
    answer: str
    index: int
    """Row number in the file (0-based), before ``offset``/``limit``."""


def dataset_path(name_or_path: str | Path) -> Path:
    """The file of a packaged set (by name) or an existing JSONL path.

    Raises:
        FileNotFoundError: neither a packaged name nor an existing file.
    """
    key = str(name_or_path).lower()
    if key in DATASETS:
        return Path(str(resources.files("spec_graph.data").joinpath(f"{key}.jsonl")))
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    msg = (
        f"dataset {str(name_or_path)!r} is neither a packaged set ({', '.join(DATASETS)}) nor an existing "
        "JSONL file; give one of those names or a path to a file with one {'problem', 'answer'} object per line"
    )
    raise FileNotFoundError(msg)


def load_dataset(name_or_path: str | Path, *, limit: int | None = None, offset: int = 0) -> list[Problem]:
    """Load a set by name or path, keeping rows ``offset .. offset + limit`` (file order).

    Args:
        name_or_path: a key of :data:`DATASETS` or a JSONL path.
        limit: most problems to keep (``None``: all after ``offset``).
        offset: problems to skip from the start.

    Raises:
        FileNotFoundError: unknown set.
        ValueError: a bad ``limit``/``offset``, a line that is not a JSON object with ``problem`` and
            ``answer``, or a repeated ``id``.
    """
    if offset < 0:
        msg = f"offset must be >= 0, got {offset}"
        raise ValueError(msg)
    if limit is not None and limit < 1:
        msg = f"limit must be >= 1 (or None for all), got {limit}"
        raise ValueError(msg)
    path = dataset_path(name_or_path)
    stem = path.stem
    problems: list[Problem] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as fh:
        lines = [line for line in fh if line.strip()]
    for index, line in enumerate(lines):
        problem = _parse_line(path, index, line, stem)
        if problem.id in seen:
            msg = f"{path}: id {problem.id!r} appears twice (line {index + 1}); ids must be unique"
            raise ValueError(msg)
        seen.add(problem.id)
        problems.append(problem)
    end = None if limit is None else offset + limit
    return problems[offset:end]


def _parse_line(path: Path, index: int, line: str, stem: str) -> Problem:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        msg = f"{path}: line {index + 1} is not valid JSON ({e.msg})"
        raise ValueError(msg) from e
    if not isinstance(row, dict):
        msg = f"{path}: line {index + 1} is a JSON {type(row).__name__}; expected an object"
        raise ValueError(msg)
    missing = [k for k in ("problem", "answer") if k not in row]
    if missing:
        msg = f"{path}: line {index + 1} lacks {', '.join(missing)}; each line needs 'problem' and 'answer'"
        raise ValueError(msg)
    item_id = row.get("id")
    return Problem(
        id=str(item_id) if item_id is not None else f"{stem}-{index:04d}",
        problem=str(row["problem"]),
        answer=str(row["answer"]),
        index=index,
    )
