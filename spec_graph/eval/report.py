"""Summaries of evaluation records: a table (Markdown and JSON) and plots (PNG and SVG).

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

import json
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "interventions_markdown",
    "pareto_front",
    "plot_accuracy_vs_speed",
    "plot_output_length",
    "summarize",
    "to_markdown",
    "write_report",
]


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


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


_SPEEDS = {
    "tokens_per_second": ("output tokens per second (wall time)", "{:.1f} tok/s"),
    "problems_per_hour": ("problems per hour (average wall time per problem)", "{:.0f}/h"),
}


def plot_accuracy_vs_speed(
    rows: Sequence[Mapping[str, Any]], path_stem: Path, title: str = "", speed: str = "tokens_per_second"
) -> list[Path]:
    """Accuracy against ``speed`` (tokens/s or problems/h), Pareto front drawn; saved as PNG and SVG."""
    plt = _pyplot()
    xlabel, fmt = _SPEEDS[speed]
    fig, ax = plt.subplots(figsize=(7.6, 4.4))
    markers = "osD^vP*Xh<>p"
    for i, r in enumerate(rows):
        label = f"{r['system']} ({100 * r['accuracy']:.0f}%, {fmt.format(r.get(speed, 0.0))})"
        ax.scatter(r.get(speed, 0.0), 100 * r["accuracy"], s=70, marker=markers[i % len(markers)],
                   label=label, zorder=3, alpha=0.85)  # fmt: skip
    front = [next(r for r in rows if r["system"] == s) for s in pareto_front(rows, speed)]
    if len(front) > 1:
        xs = [r[speed] for r in front]
        ys = [100 * r["accuracy"] for r in front]
        ax.step(xs, ys, where="post", linestyle="--", color="grey", linewidth=1, label="Pareto front", zorder=2)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(bottom=0, top=max(5.0, *(100 * r["accuracy"] for r in rows)) * 1.15)
    ax.set_xlim(left=0, right=max(1e-9, *(r.get(speed, 0.0) for r in rows)) * 1.3)
    ax.set_title(title or "accuracy vs speed", fontsize=10)
    ax.grid(alpha=0.3)
    return _save(plt, fig, path_stem)


def plot_output_length(rows: Sequence[Mapping[str, Any]], path_stem: Path, title: str = "") -> list[Path]:
    """Average output tokens per system, split by author; saved as PNG and SVG."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 0.55 * len(rows) + 2.0))
    names = [str(r["system"]) for r in rows]
    small = [r["avg_output_tokens_by_model"].get("small", 0.0) for r in rows]
    target = [r["avg_output_tokens_by_model"].get("target", 0.0) for r in rows]
    ax.barh(names, small, label="small model", color="tab:blue")
    ax.barh(names, target, left=small, label="target model", color="tab:orange")
    for i, r in enumerate(rows):
        ax.annotate(f"{r['avg_output_tokens']:.0f} ({r['truncated']:.0%} cut)", (small[i] + target[i], i),
                    textcoords="offset points", xytext=(4, -3), fontsize=8)  # fmt: skip
    ax.invert_yaxis()
    ax.set_xlim(right=max(1.0, *(s + t for s, t in zip(small, target, strict=True))) * 1.35)
    ax.set_xlabel("average output tokens per answer")
    ax.set_title(title or "output length", fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=8, frameon=False)
    return _save(plt, fig, path_stem)


def gap_closed(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Each system's share of the small -> target accuracy gap it closes (needs ``small`` and ``target``)."""
    acc = {str(r["system"]): float(r["accuracy"]) for r in rows}
    if "small" not in acc or "target" not in acc or acc["target"] == acc["small"]:
        return {}
    gap = acc["target"] - acc["small"]
    return {name: (a - acc["small"]) / gap for name, a in acc.items()}


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


def plot_accuracy_vs_target_share(rows: Sequence[Mapping[str, Any]], path_stem: Path, title: str = "") -> list[Path]:
    """Accuracy against the target's share of the output tokens, saved as PNG and SVG.

    With ``small`` and ``target`` in the rows, the half-gap line and the 50 % share line mark the
    goal region of a trigger policy.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.6, 4.4))
    markers = "osD^vP*Xh<>p"
    for i, r in enumerate(rows):
        label = f"{r['system']} ({100 * r['accuracy']:.0f}%, target {100 * r['target_share']:.0f}%)"
        ax.scatter(100 * r["target_share"], 100 * r["accuracy"], s=70, marker=markers[i % len(markers)],
                   label=label, zorder=3, alpha=0.85)  # fmt: skip
    acc = {str(r["system"]): 100 * float(r["accuracy"]) for r in rows}
    if "small" in acc and "target" in acc:
        half = (acc["small"] + acc["target"]) / 2
        ax.axhline(half, color="grey", linestyle="--", linewidth=1, label="half of the small -> target gap")
        ax.axvline(50, color="grey", linestyle=":", linewidth=1, label="target writes half")
        ax.fill_between([0, 50], half, max(100.0, half), color="tab:green", alpha=0.08, label="goal")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    ax.set_xlabel("share of output tokens written by the target (%)")
    ax.set_ylabel("accuracy (%)")
    ax.set_xlim(-3, 103)
    ax.set_ylim(bottom=0, top=max(5.0, *(100 * r["accuracy"] for r in rows)) * 1.15)
    ax.set_title(title or "accuracy vs target share", fontsize=10)
    ax.grid(alpha=0.3)
    return _save(plt, fig, path_stem)


def _save(plt: Any, fig: Any, stem: Path) -> list[Path]:
    fig.tight_layout()
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    for p in paths:
        fig.savefig(p, dpi=150 if p.suffix == ".png" else None)
    plt.close(fig)
    return paths


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
