"""The trace of one run as HTML: who wrote what, and where the target stepped in."""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["INJECTED_BG", "KINDS", "KIND_COLOURS", "TARGET_BG", "Trace", "pieces", "render_trace", "short", "trace_of"]

KINDS = ("opening", "intervention", "verification", "takeover")
KIND_COLOURS = {"opening": "#2b8a3e", "intervention": "#c92a2a", "verification": "#5f3dc4", "takeover": "#d9480f"}
TARGET_BG = "#ffe066"
INJECTED_BG = "#dee2e6"


@dataclass
class Trace:
    """What a picture of a run shows: its spans (clipped to its text), interventions and figures."""

    spans: list[dict[str, Any]]
    interventions: list[dict[str, Any]]
    stats: dict[str, Any]


def trace_of(result: Any) -> Trace:
    """Spans, interventions and summary figures of a ``SpecResult`` or its ``to_dict()``."""
    if isinstance(result, Mapping):
        get = result.get
    elif hasattr(result, "spans"):

        def get(key: str, default: Any = None) -> Any:
            return getattr(result, key, default)

    else:
        msg = f"expected a SpecResult or a mapping with 'spans', got {type(result).__name__}"
        raise TypeError(msg)
    spans = [dict(s) for s in get("spans") or []]
    if not all(isinstance(s.get("text"), str) and s.get("author") for s in spans):
        msg = "every span needs 'author' and 'text' (a SpecResult's spans)"
        raise ValueError(msg)
    text = get("text")
    if isinstance(text, str):  # cut at a stop string: show what the result holds
        spans = _clip(spans, len(text))
    output = dict(get("output_tokens") or {})
    total = sum(output.values())
    stats = {
        "output_tokens": output,
        "target_share": output.get("target", 0) / total if total else 0.0,
        "finish_reason": get("finish_reason"),
        "wall_seconds": get("wall_seconds"),
        "fallbacks": len(get("fallbacks") or []),
    }
    return Trace(spans, [dict(i) for i in get("interventions") or []], stats)


def _clip(spans: list[dict[str, Any]], length: int) -> list[dict[str, Any]]:
    out, pos = [], 0
    for span in spans:
        if pos >= length:
            break
        text = span["text"][: length - pos]
        out.append({**span, "text": text})
        pos += len(span["text"])
    return out


def short(text: str | None, n: int = 240) -> str:
    """``text`` cut to ``n`` characters (with an ellipsis), ``"-"`` for ``None``."""
    if text is None:
        return "-"
    return text if len(text) <= n else text[: n - 1] + "…"


def _intervention_title(number: int, item: Mapping[str, Any]) -> str:
    kind, category = item.get("kind", "?"), item.get("category", "?")
    lines = [f"#{number} {kind}" + (f" ({category})" if category != kind else "")]
    lines.append(f"at character {item.get('char_position', '?')}, token {item.get('token_position', '?')}")
    if item.get("probe_text") is not None:
        lines.append(f"small model's probe: {short(item['probe_text'])!r}")
    lines.append(f"target wrote: {short(item.get('target_text'))!r}")
    lines.append(f"kept: {item.get('kept', 'target')}")
    return "\n".join(lines)


def pieces(trace: Trace) -> list[tuple[str, Any]]:
    """The trace as ("span", (span, text)) and ("marker", (number, intervention)) in text order."""
    order = sorted(enumerate(trace.interventions, 1), key=lambda p: (int(p[1].get("char_position", 0)), p[0]))
    out: list[tuple[str, Any]] = []
    pos, k = 0, 0
    for span in trace.spans:
        text, start = span["text"], pos
        cut = 0
        while k < len(order) and int(order[k][1].get("char_position", 0)) < start + len(text):
            at = max(0, int(order[k][1].get("char_position", 0)) - start)
            if at > cut:
                out.append(("span", (span, text[cut:at])))
                cut = at
            out.append(("marker", order[k]))
            k += 1
        if text[cut:]:
            out.append(("span", (span, text[cut:])))
        pos += len(text)
    out.extend(("marker", item) for item in order[k:])  # at (or past) the end of the text
    return out


_CSS = """
.sg-trace{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;font-size:14px;color:#212529;max-width:60rem}
.sg-trace .sg-stats{margin:.25rem 0 .5rem 0;color:#495057}
.sg-trace .sg-legend span{margin-right:1rem}
.sg-trace pre.sg-text{white-space:pre-wrap;word-wrap:break-word;
 font-family:ui-monospace,"DejaVu Sans Mono",Menlo,monospace;font-size:13px;line-height:1.6;
 background:#fff;border:1px solid #dee2e6;border-radius:4px;padding:.75rem;margin:.5rem 0}
.sg-trace .sg-small{}
.sg-trace .sg-target{background:%(target)s;border-radius:2px}
.sg-trace .sg-injected{background:%(injected)s;font-style:italic;outline:1px dashed #868e96}
.sg-trace .sg-marker{display:inline-block;font:bold 10px/14px system-ui,sans-serif;color:#fff;border-radius:7px;
 min-width:14px;height:14px;text-align:center;padding:0 3px;margin:0 1px;vertical-align:super;cursor:help}
%(kinds)s
.sg-trace ol.sg-list{padding-left:1.5rem;margin:.25rem 0}
.sg-trace ol.sg-list li{margin:.15rem 0}
.sg-trace code{background:#f1f3f5;padding:0 .2rem;border-radius:2px}
"""


def _css() -> str:
    kinds = "\n".join(f".sg-trace .sg-{k}{{background:{c}}}" for k, c in KIND_COLOURS.items())
    return _CSS % {"target": TARGET_BG, "injected": INJECTED_BG, "kinds": kinds}


def _stats_line(stats: Mapping[str, Any], n_interventions: int) -> str:
    tokens = stats["output_tokens"]
    parts = [", ".join(f"{who} {n} tokens" for who, n in tokens.items()) or "no tokens"]
    parts.append(f"target share {stats['target_share']:.0%}")
    parts.append(f"{n_interventions} intervention{'s' if n_interventions != 1 else ''}")
    if stats.get("finish_reason"):
        parts.append(f"finish <code>{html.escape(str(stats['finish_reason']))}</code>")
    if stats.get("wall_seconds"):
        parts.append(f"{stats['wall_seconds']:.1f} s")
    if stats.get("fallbacks"):
        parts.append(f"{stats['fallbacks']} target fallback(s)")
    return " · ".join(parts)


def render_trace(result: Any, *, title: str | None = None, standalone: bool = True) -> str:
    """The trace of one run as HTML: who wrote what, and where the target stepped in.

    The small model's text is plain, the target's stretches are highlighted, injected text
    (the recap prompt, a think prompt) is grey and italic, and a numbered marker shows each
    intervention where it starts; hovering a stretch or a marker shows its ``title``: the kind,
    the probe's category, the small model's probe text, what the target wrote and which was
    kept. A numbered list of the interventions follows the text.

    Args:
        result: a :class:`~spec_graph.thinker.SpecResult` (from ``SpeculativeThinker.run``, the
            last event of ``stream()``, or ``SpeculativeThinkingError.partial``) or its
            ``to_dict()`` (e.g. read back from JSON).
        title: a heading; none by default.
        standalone: a whole HTML document (default); ``False`` gives a ``<style>`` and a
            ``<div>`` to embed, e.g. ``IPython.display.HTML(render_trace(r, standalone=False))``.

    Returns:
        The HTML text.
    """
    trace = trace_of(result)
    body = []
    for kind, item in pieces(trace):
        if kind == "marker":
            number, iv = item
            k = iv.get("kind") if iv.get("kind") in KINDS else "intervention"
            body.append(
                f'<span class="sg-marker sg-{k}" id="sg-iv-{number}" '
                f'title="{html.escape(_intervention_title(number, iv), quote=True)}">{number}</span>'
            )
        else:
            span, text = item
            author = str(span["author"])
            css = f"sg-{author}" if author in ("small", "target", "injected") else "sg-small"
            tip = f"{author} · {span.get('reason', '')}"
            body.append(f'<span class="{css}" title="{html.escape(tip, quote=True)}">{html.escape(text)}</span>')
    items = []
    for number, iv in enumerate(trace.interventions, 1):
        k = iv.get("kind") if iv.get("kind") in KINDS else "intervention"
        category = iv.get("category", "")
        what = html.escape(str(iv.get("kind", "?"))) + (
            f" <em>({html.escape(str(category))})</em>" if category and category != iv.get("kind") else ""
        )
        probe = (
            f" probe <code>{html.escape(short(iv['probe_text'], 80))}</code>"
            if iv.get("probe_text") is not None
            else ""
        )
        target = html.escape(short(iv.get("target_text"), 80))
        kept = html.escape(str(iv.get("kept", "target")))
        items.append(
            f'<li><span class="sg-marker sg-{k}">{number}</span> {what} at character '
            f"{int(iv.get('char_position', 0))}:{probe} target <code>{target}</code>, kept <b>{kept}</b></li>"
        )
    legend = (
        '<div class="sg-legend"><span>small model: plain</span>'
        '<span><span class="sg-target">target model</span></span>'
        '<span><span class="sg-injected">injected</span></span>'
        + "".join(f'<span><span class="sg-marker sg-{k}">n</span> {k}</span>' for k in KINDS)
        + "</div>"
    )
    heading = f"<h3>{html.escape(title)}</h3>" if title else ""
    div = (
        f'<div class="sg-trace">{heading}<div class="sg-stats">'
        f"{_stats_line(trace.stats, len(trace.interventions))}</div>{legend}"
        f'<pre class="sg-text">{"".join(body)}</pre>'
        + (f'<ol class="sg-list">{"".join(items)}</ol>' if items else "")
        + "</div>"
    )
    fragment = f"<style>{_css()}</style>\n{div}\n"
    if not standalone:
        return fragment
    page_title = html.escape(title or "spec-graph trace")
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{page_title}</title>\n'
        f"</head>\n<body>\n{fragment}</body>\n</html>\n"
    )
