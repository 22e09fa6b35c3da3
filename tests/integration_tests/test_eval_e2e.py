"""A tiny real evaluation: 3 MultiArith problems, 12 new tokens, every kind of system, the default pair.

About two minutes on two CPU cores (token-level speculative decoding across two tokenizers is
the slow part). Checks the files, the table, and that greedy systems agree where they must.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spec_graph.eval import EvalConfig, evaluate

pytestmark = pytest.mark.slow

SYSTEMS = ("small", "target", "spec:reasoning", "specdec", "generate:small")


def test_tiny_eval_all_kinds_of_systems(tmp_path: Path) -> None:
    cfg = EvalConfig(
        dataset="multiarith", limit=3, max_new_tokens=12, systems=SYSTEMS, out=str(tmp_path), progress=False
    )
    results = evaluate(cfg)

    for name in ("records.jsonl", "run.json", "results.json", "results.md"):
        assert (tmp_path / name).is_file(), name
    for stem in ("accuracy_vs_speed", "output_length", "accuracy_vs_target_share"):
        assert (tmp_path / f"{stem}.png").stat().st_size > 1000
        assert (tmp_path / f"{stem}.svg").stat().st_size > 1000
    table = (tmp_path / "results.md").read_text()
    assert all(f"| `{name}` |" in table for name in SYSTEMS)

    rows = {r["system"]: r for r in results["systems"]}
    assert list(rows) == list(SYSTEMS)
    for row in rows.values():
        assert row["answers"] == 3
        assert 0 < row["avg_output_tokens"] <= 12
        assert row["tokens_per_second"] > 0
        assert row["wall_seconds"] > 0
    assert rows["small"]["target_share"] == 0
    assert rows["target"]["target_share"] == 1
    assert rows["specdec"]["target_share"] == 1

    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert len(records) == 3 * len(SYSTEMS)
    text = {(r["system"], r["id"]): r["text"] for r in records}
    for pid in {r["id"] for r in records}:
        # Greedy speculative decoding is lossless: it writes what the target alone writes.
        assert text[("specdec", pid)] == text[("target", pid)]
        # The session loop used by "small" equals transformers' own greedy generate.
        assert text[("small", pid)] == text[("generate:small", pid)]
