"""Plots of the summary rows (PNG and SVG): accuracy against speed, output length, target share."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from spec_graph.eval.summary import pareto_front

__all__ = ["plot_accuracy_vs_speed", "plot_accuracy_vs_target_share", "plot_output_length"]


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
