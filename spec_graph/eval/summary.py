"""Summaries of evaluation records: one row of figures per system, the Pareto front, the gap closed.

Columns (one row per system), all over the selected records:

- ``accuracy``: share of answers graded correct (with several samples: mean over samples);
- ``avg output tokens``: tokens of an answer, both models' tokens added (each in its own tokenizer);
- ``tokens/s``: all output tokens divided by all wall time (so long answers weigh more);
- ``median tokens/s``: the median of the answers' own rates (robust to a few answers slowed by
  other work on the machine);
- ``wall time``: total seconds spent answering (model loading excluded);
- ``s / problem`` and ``problems / h``: average wall seconds per answer, and answers per hour:
  what a user pays for one answer;
- ``target share``: share of all output tokens written by the target;
- ``interventions / problem``: target stretches per answer (speculative thinking only);
- ``truncated``: share of answers cut by the token budget (finish ``length``).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["gap_closed", "pareto_front", "summarize"]


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def summarize(records: Sequence[Mapping[str, Any]], systems: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One summary dict per system (in ``systems`` order, default: order of appearance)."""
    names = list(systems) if systems is not None else list(dict.fromkeys(r["system"] for r in records))
    by_system = {name: [r for r in records if r["system"] == name] for name in names}
    baseline = {(r["id"], r["sample"]): bool(r["correct"]) for r in by_system.get("small", [])}
    out = []
    for name, recs in by_system.items():
        if not recs:
            continue
        tokens = sum(int(r["output_tokens"]) for r in recs)
        wall = sum(float(r["wall_seconds"]) for r in recs)
        by_model: Counter[str] = Counter()
        for r in recs:
            by_model.update(r.get("output_tokens_by_model", {}))
        per_problem: dict[str, list[bool]] = {}
        for r in recs:
            per_problem.setdefault(str(r["id"]), []).append(bool(r["correct"]))
        row: dict[str, Any] = {
            "system": name,
            "answers": len(recs),
            "problems": len(per_problem),
            "correct": sum(bool(r["correct"]) for r in recs),
            "accuracy": _mean([float(bool(r["correct"])) for r in recs]),
            "pass_at_samples": _mean([float(any(v)) for v in per_problem.values()]),
            "avg_output_tokens": tokens / len(recs),
            "avg_output_tokens_by_model": {k: v / len(recs) for k, v in sorted(by_model.items())},
            "tokens_per_second": tokens / wall if wall > 0 else 0.0,
            "median_tokens_per_second": statistics.median(float(r.get("tokens_per_second", 0.0)) for r in recs),
            "wall_seconds": wall,
            "avg_wall_seconds": wall / len(recs),
            "problems_per_hour": 3600 * len(recs) / wall if wall > 0 else 0.0,
            "target_share": by_model.get("target", 0) / tokens if tokens else 0.0,
            "interventions_per_problem": _mean([float(r.get("interventions", 0)) for r in recs]),
            "truncated": _mean([float(r["finish_reason"] == "length") for r in recs]),
            "interventions": _intervention_stats(recs),
        }
        drafted = sum(int(r.get("draft_tokens", {}).get("drafted", 0)) for r in recs)
        if drafted:
            accepted = sum(int(r.get("draft_tokens", {}).get("accepted", 0)) for r in recs)
            row["draft_acceptance"] = accepted / drafted
        if baseline and name != "small":
            pairs = [(baseline[k], bool(r["correct"])) for r in recs if (k := (r["id"], r["sample"])) in baseline]
            row["vs_small"] = {
                "compared": len(pairs),
                "fixed": sum(1 for b, c in pairs if c and not b),
                "broken": sum(1 for b, c in pairs if b and not c),
            }
        out.append(row)
    return out


def _intervention_stats(recs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Where the target stepped in: counts by kind and category, and relative position in the answer."""
    kinds: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    positions: list[float] = []
    target_tokens: list[int] = []
    for r in recs:
        for i in r.get("intervention_details", []):
            kinds[i.get("kind", "?")] += 1
            categories[i.get("category", "?")] += 1
            if r["output_tokens"]:
                positions.append(i.get("token_position", 0) / r["output_tokens"])
            target_tokens.append(int(i.get("target_tokens", 0)))
    return {
        "total": sum(kinds.values()),
        "by_kind": dict(kinds.most_common()),
        "by_category": dict(categories.most_common()),
        "mean_relative_position": _mean(positions),
        "mean_target_tokens": _mean([float(t) for t in target_tokens]),
    }


def pareto_front(rows: Sequence[Mapping[str, Any]], speed: str = "tokens_per_second") -> list[str]:
    """Systems not beaten on both accuracy and ``speed`` (a row key) by another one (fastest first)."""
    ordered = sorted(rows, key=lambda r: (-r[speed], -r["accuracy"]))
    front, best = [], -1.0
    for r in ordered:
        if r["accuracy"] > best:
            front.append(str(r["system"]))
            best = r["accuracy"]
    return front


def gap_closed(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Each system's share of the small -> target accuracy gap it closes (needs ``small`` and ``target``)."""
    acc = {str(r["system"]): float(r["accuracy"]) for r in rows}
    if "small" not in acc or "target" not in acc or acc["target"] == acc["small"]:
        return {}
    gap = acc["target"] - acc["small"]
    return {name: (a - acc["small"]) / gap for name, a in acc.items()}
