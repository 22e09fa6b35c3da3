"""The trace of one run as an image (matplotlib): a figure, and :func:`save_trace` for every format."""

from __future__ import annotations

import itertools
import re
import textwrap
from pathlib import Path
from typing import Any

from spec_graph.viz.trace import INJECTED_BG, KIND_COLOURS, TARGET_BG, Trace, pieces, render_trace, short, trace_of

__all__ = ["layout", "save_trace", "trace_figure"]


def layout(trace: Trace, width: int) -> tuple[list[list[tuple[str, str]]], dict[int, tuple[int, int]]]:
    """Wrap the text to ``width`` columns at spaces: lines of (author, text) runs, marker (line, column)s."""
    chars: list[tuple[str, str]] = []  # (character, author)
    marks: dict[int, int] = {}  # intervention number -> index in chars
    for kind, item in pieces(trace):
        if kind == "marker":
            marks[item[0]] = len(chars)
        else:
            span, text = item
            chars.extend((ch, str(span["author"])) for ch in text.replace("\t", "    "))
    # Line starts: after each newline, and greedily before a word that would pass the width.
    starts, col = [0], 0
    text = "".join(ch for ch, _ in chars)
    for m in re.finditer(r"\n|[^\S\n]*\S+|[^\S\n]+", text):
        piece = m.group()
        if piece == "\n":
            starts.append(m.end())
            col = 0
            continue
        if col and col + len(piece) > width:  # the word goes to the next line, its spaces stay
            word = piece.lstrip()
            starts.append(m.end() - len(word))
            piece, col = word, 0
        while col + len(piece) > width:  # a word longer than a line
            cut = width - col
            starts.append(m.end() - len(piece) + cut)
            piece, col = piece[cut:], 0
        col += len(piece)
    starts.append(len(chars) + 1)
    lines: list[list[tuple[str, str]]] = []
    where: dict[int, tuple[int, int]] = {}
    for row, (a, b) in enumerate(itertools.pairwise(starts)):
        runs: list[tuple[str, str]] = []
        for ch, author in chars[a:b]:
            if ch == "\n":
                continue
            if runs and runs[-1][0] == author:
                runs[-1] = (author, runs[-1][1] + ch)
            else:
                runs.append((author, ch))
        lines.append(runs)
        for number, at in marks.items():
            if a <= at < b:
                where[number] = (row, min(at - a, width))
    return lines, where


def trace_figure(
    result: Any, *, title: str | None = None, width: int = 96, max_lines: int = 160, fontsize: float = 9.0
) -> Any:
    """The trace as a matplotlib figure: the text wrapped to ``width`` columns, coloured by author.

    Target stretches have a yellow background, injected text a grey one, and numbered markers
    show where the target stepped in; the interventions are listed below the text. Lines past
    ``max_lines`` are left out (and said so).

    Args:
        result: a ``SpecResult`` or its ``to_dict()``, as for :func:`render_trace`.
        title: a line above the figure.
        width: columns of text.
        max_lines: most lines of text drawn.
        fontsize: points.

    Returns:
        A ``matplotlib.figure.Figure``.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    trace = trace_of(result)
    lines, markers = layout(trace, width)
    hidden = max(0, len(lines) - max_lines)
    lines = lines[:max_lines]
    char_w = 0.6021 * fontsize / 72  # DejaVu Sans Mono advance, inches
    line_h = 1.55 * fontsize / 72
    margin = 0.3
    list_lines: list[str] = []
    for n, iv in enumerate(trace.interventions, 1):
        item = (
            f"{n}. {iv.get('kind')} ({iv.get('category')}) at char {iv.get('char_position')}: "
            + (f"probe {short(iv['probe_text'], 60)!r} -> " if iv.get("probe_text") is not None else "")
            + f"target {short(iv.get('target_text'), 60)!r}, kept {iv.get('kept', 'target')}"
        )
        list_lines += textwrap.wrap(item, width=int(width * 1.1), subsequent_indent="   ") or [""]
    if hidden:
        list_lines.append(f"({hidden} more lines not shown)")
    title_lines = textwrap.wrap(title, width=int(width * 0.8)) if title else []
    title_h = 0.27 * len(title_lines)
    head_h, foot_h = 0.75 + title_h, 0.25 + line_h * len(list_lines)
    text_h = line_h * max(1, len(lines))
    fig_w, fig_h = width * char_w + 2 * margin, text_h + head_h + foot_h + margin
    fig = plt.figure(figsize=(fig_w, fig_h), dpi=150)
    ax = fig.add_axes((margin / fig_w, (foot_h + margin / 2) / fig_h, width * char_w / fig_w, text_h / fig_h))
    ax.set_xlim(0, width)
    ax.set_ylim(max(1, len(lines)), 0)
    ax.axis("off")
    for row, runs in enumerate(lines):
        col = 0
        for author, text in runs:
            if author in ("target", "injected"):
                colour = TARGET_BG if author == "target" else INJECTED_BG
                ax.add_patch(Rectangle((col, row + 0.08), len(text), 0.9, facecolor=colour, edgecolor="none"))
            ax.text(
                col,
                row + 0.72,
                text,
                family="DejaVu Sans Mono",
                fontsize=fontsize,
                style="italic" if author == "injected" else "normal",
                usetex=False,
                parse_math=False,
            )
            col += len(text)
    for number, (row, col) in markers.items():
        if row >= len(lines):
            continue
        kind = trace.interventions[number - 1].get("kind")
        colour = KIND_COLOURS.get(str(kind), KIND_COLOURS["intervention"])
        ax.plot([col, col], [row + 0.05, row + 1.0], color=colour, linewidth=1.6)
        ax.text(
            col,
            row + 0.05,
            str(number),
            fontsize=fontsize * 0.65,
            color="white",
            ha="center",
            va="center",
            fontweight="bold",
            bbox={"boxstyle": "round,pad=0.15", "facecolor": colour, "edgecolor": "none"},
        )
    stats = trace.stats
    tokens = ", ".join(f"{who} {n}" for who, n in stats["output_tokens"].items())
    for i, line in enumerate(title_lines):
        y = 1 - (0.22 + 0.27 * i) / fig_h
        fig.text(margin / fig_w, y, line, fontsize=fontsize * 1.15, va="center", fontweight="bold", parse_math=False)
    fig.text(
        margin / fig_w,
        1 - (0.22 + title_h) / fig_h,
        f"tokens: {tokens} · target share {stats['target_share']:.0%} · "
        f"{len(trace.interventions)} intervention{'' if len(trace.interventions) == 1 else 's'} · "
        f"finish {stats.get('finish_reason')}",
        fontsize=fontsize,
        va="center",
    )
    handles = [
        Patch(facecolor="white", edgecolor="#adb5bd", label="small model"),
        Patch(facecolor=TARGET_BG, label="target model"),
        Patch(facecolor=INJECTED_BG, label="injected"),
        *(Patch(facecolor=c, label=k) for k, c in KIND_COLOURS.items()),
    ]
    fig.legend(
        handles=handles,
        loc="upper left",
        ncol=len(handles),
        fontsize=fontsize * 0.8,
        frameon=False,
        handlelength=1.5,
        columnspacing=1.2,
        borderaxespad=0,
        bbox_to_anchor=(margin / fig_w, 1 - (0.38 + title_h) / fig_h),
    )
    for i, line in enumerate(list_lines):
        fig.text(
            margin / fig_w,
            (foot_h - 0.15 - i * line_h) / fig_h,
            line,
            fontsize=fontsize * 0.85,
            va="top",
            family="DejaVu Sans Mono",
            parse_math=False,
        )
    return fig


def save_trace(result: Any, path: str | Path, *, title: str | None = None, **figure_kwargs: Any) -> Path:
    """Write the trace of a run to ``path``: ``.html`` (:func:`render_trace`) or ``.png``/``.svg``/``.pdf``.

    The image formats need matplotlib (:func:`trace_figure`).

    Args:
        result: a ``SpecResult`` or its ``to_dict()``.
        path: the file to write; its suffix picks the format.
        title: a heading above the trace.
        **figure_kwargs: passed to :func:`trace_figure` (``width``, ``max_lines``, ``fontsize``).

    Returns:
        The path written.

    Raises:
        ValueError: for another suffix.
        ImportError: for an image format without matplotlib.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".html", ".htm"):
        path.write_text(render_trace(result, title=title), encoding="utf-8")
        return path
    if suffix in (".png", ".svg", ".pdf"):
        try:
            import matplotlib

            matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt
        except ImportError as exc:
            msg = "saving a trace as an image needs matplotlib: pip install matplotlib (or save it as .html)"
            raise ImportError(msg) from exc
        fig = trace_figure(result, title=title, **figure_kwargs)
        try:
            fig.savefig(path, dpi=150, metadata={"Software": None} if suffix == ".png" else None)
        finally:
            plt.close(fig)
        return path
    msg = f"cannot save a trace as {suffix or 'a file without suffix'!r}: use .html, .png, .svg or .pdf"
    raise ValueError(msg)
