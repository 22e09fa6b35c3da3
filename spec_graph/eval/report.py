"""The report of an evaluation run: ``results.json``, ``results.md`` (tables) and the plots.

The figures come from :mod:`spec_graph.eval.summary` (its columns are described there), the
pictures from :mod:`spec_graph.eval.plots`; both are re-exported here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from spec_graph.eval.plots import plot_accuracy_vs_speed, plot_accuracy_vs_target_share, plot_output_length
from spec_graph.eval.summary import gap_closed, pareto_front, summarize

__all__ = [
    "gap_closed",
    "interventions_markdown",
    "pareto_front",
    "plot_accuracy_vs_speed",
    "plot_accuracy_vs_target_share",
    "plot_output_length",
    "share_markdown",
    "summarize",
    "to_markdown",
    "write_report",
]


def to_markdown(rows: Sequence[Mapping[str, Any]], meta: Mapping[str, Any] | None = None) -> str:
    """The table as GitHub Markdown, with a one-line header on the run's settings."""
    lines = []
    if meta:
        lines.append(
            f"Dataset `{meta.get('dataset')}` ({meta.get('problems')} problems × {meta.get('samples')} "
            f"sample(s)), small `{meta.get('small')}`, target `{meta.get('target')}`, "
            f"max_new_tokens {meta.get('max_new_tokens')}, temperature {meta.get('temperature')}"
            + (f", {meta['resolved_dtype']}" if meta.get("resolved_dtype") else "")
            + (f", {meta['quantization']} weights" if meta.get("quantization", "none") != "none" else "")
            + "."
        )
        lines.append("")
    several = any(r["answers"] > r["problems"] for r in rows)
    head = ["system", "accuracy", "avg output tokens", "tokens/s", "median tokens/s", "wall time (s)"]
    head += ["s / problem", "problems / h", "target share"]
    head += ["interventions / problem", "truncated", "vs small (fixed/broken)"]
    if several:
        head.insert(2, "pass@samples")
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
    for r in rows:
        vs = r.get("vs_small")
        cells = [
            f"`{r['system']}`",
            f"{r['accuracy']:.1%} ({r['correct']}/{r['answers']})",
            f"{r['avg_output_tokens']:.1f}",
            f"{r['tokens_per_second']:.2f}",
            f"{r['median_tokens_per_second']:.2f}",
            f"{r['wall_seconds']:.0f}",
            f"{r['avg_wall_seconds']:.1f}",
            f"{r.get('problems_per_hour', 0.0):.0f}",
            f"{r['target_share']:.1%}",
            f"{r['interventions_per_problem']:.2f}",
            f"{r['truncated']:.0%}",
            f"+{vs['fixed']} / -{vs['broken']}" if vs else "",
        ]
        if several:
            cells.insert(2, f"{r['pass_at_samples']:.1%}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def interventions_markdown(
    rows: Sequence[Mapping[str, Any]], records: Sequence[Mapping[str, Any]], examples: int = 3
) -> str:
    """Where the target stepped in, per system that has interventions, with a few examples of what it wrote."""
    parts = []
    for row in rows:
        stats = row["interventions"]
        if not stats["total"]:
            continue
        kinds = ", ".join(f"{k} {v}" for k, v in stats["by_kind"].items())
        cats = ", ".join(f"{k} {v}" for k, v in stats["by_category"].items())
        parts.append(f"### Interventions of `{row['system']}`\n")
        parts.append(
            f"{stats['total']} in {row['answers']} answers; by kind: {kinds}; by probe category: {cats}; "
            f"on average {stats['mean_target_tokens']:.1f} target tokens each, starting "
            f"{stats['mean_relative_position']:.0%} of the way into the answer.\n"
        )
        shown = 0
        for rec in records:
            if rec["system"] != row["system"]:
                continue
            for i in rec.get("intervention_details", []):
                if shown >= examples:
                    break
                probe = _clip(i.get("probe_text"))
                parts.append(
                    f"- `{rec['id']}` ({'correct' if rec['correct'] else 'wrong'}), {i.get('kind')} at token "
                    f"{i.get('token_position')}, probe category {i.get('category')}"
                    + (f", small model's probe: {probe}" if probe else "")
                    + f"; target wrote: {_clip(i.get('target_text'))}"
                )
                shown += 1
        parts.append("")
    return "\n".join(parts)


def _clip(text: str | None, width: int = 160) -> str:
    if not text:
        return ""
    flat = " ".join(text.split())
    return "`" + (flat if len(flat) <= width else flat[: width - 1] + "…").replace("`", "'") + "`"


def share_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """Accuracy against the target's share of the output tokens, with the gap each system closes."""
    closed = gap_closed(rows)
    if not closed:
        return ""
    lines = [
        "## Accuracy against the target's share of the tokens",
        "",
        "Gap closed = (accuracy - small's) / (target's - small's). The goal of a trigger policy: close at least "
        "half of the gap while the target writes at most half of the tokens.",
        "",
        "| system | target share | accuracy | gap closed | goal met |",
        "|---|---:|---:|---:|:---:|",
    ]
    for r in sorted(rows, key=lambda r: r["target_share"]):
        name = str(r["system"])
        met = "yes" if closed[name] >= 0.5 and r["target_share"] <= 0.5 else ""
        lines.append(f"| `{name}` | {r['target_share']:.1%} | {r['accuracy']:.1%} | {closed[name]:.0%} | {met} |")
    return "\n".join(lines) + "\n"


def write_report(
    out: str | Path,
    records: Sequence[Mapping[str, Any]],
    meta: Mapping[str, Any],
    systems: Sequence[str] | None = None,
    *,
    plots: bool = True,
) -> dict[str, Any]:
    """Write ``results.json``, ``results.md`` and the plots into ``out``; return the results dict."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = summarize(records, systems)
    results = {
        "meta": dict(meta),
        "systems": rows,
        "pareto_front": pareto_front(rows),
        "pareto_front_problems_per_hour": pareto_front(rows, "problems_per_hour") if rows else [],
    }
    (out / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    markdown = to_markdown(rows, meta)
    drafting = [r for r in rows if "draft_acceptance" in r]
    if drafting:
        markdown += "\nDraft-and-verify in the target's stretches, drafted tokens the target kept: "
        markdown += ", ".join(f"`{r['system']}` {r['draft_acceptance']:.0%}" for r in drafting) + ".\n"
    for extra in (share_markdown(rows), interventions_markdown(rows, records)):
        if extra:
            markdown += "\n" + extra
    (out / "results.md").write_text(markdown, encoding="utf-8")
    if plots and rows:
        title = f"{meta.get('dataset')}: {meta.get('problems')} problems, {meta.get('max_new_tokens')} new tokens"
        plot_accuracy_vs_speed(rows, out / "accuracy_vs_speed", title)
        plot_accuracy_vs_speed(rows, out / "accuracy_vs_problems_per_hour", title, speed="problems_per_hour")
        plot_output_length(rows, out / "output_length", title)
        plot_accuracy_vs_target_share(rows, out / "accuracy_vs_target_share", title)
    return results
