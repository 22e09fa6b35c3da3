"""How a node asks a model to write, and records what it wrote (spans, counters, events).

The plumbing under :mod:`spec_graph.graph.algorithm`: the algorithm decides *who* writes *what*;
these helpers run the model, stream its text, and turn the segment into state updates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar

from langgraph.runtime import Runtime

from spec_graph.errors import RunCancelledError, describe
from spec_graph.generators.base import GenerateRequest, Segment, Span, TokenStop, capabilities_of
from spec_graph.generators.scoring import TokenScores
from spec_graph.graph.state import Leftover, Route, SpecContext, SpecState
from spec_graph.policies import Look
from spec_graph.result import Fallback, FinishReason, Intervention

Who = Literal["small", "target"]
Kind = Literal["opening", "intervention", "verification", "takeover"]
N = TypeVar("N", int, float)
Counters = Mapping[str, Any]
"""A state, or a state with a node's updates merged in (what the helpers read: spans, counters)."""

_RUN_FINISH: dict[str, FinishReason] = {"eos": "eos", "stop": "stop", "time": "time", "context": "length"}
BOUNDARY: dict[str, Literal["trigger", "token"]] = {"trigger": "trigger", "uncertain": "token"}
"""A small model's segment finish -> the kind of boundary the trace now ends on."""


def spans(state: SpecState) -> list[Span]:
    """The trace so far."""
    return list(state.get("spans", []))


def chars(state: Counters) -> int:
    """Length of the trace's text."""
    return sum(len(s["text"]) for s in state.get("spans", []))


def remaining(state: Counters, ctx: SpecContext) -> int:
    """Generated tokens the budget still allows (prompt and injected text excluded)."""
    written: int = sum(state.get("output_tokens", {}).values())
    return ctx.config.max_new_tokens - written


def next_route(ctx: SpecContext, boundary: str | bool | None) -> Route:
    """After a stretch: the policy is asked at a boundary (or after every stretch, if it checks every step)."""
    return "classify" if boundary or ctx.checks_every_step else "write"


def finish(seg: Segment) -> FinishReason | None:
    """How the run ends after this segment (a full context window ends it like the budget)."""
    return _RUN_FINISH.get(seg.finish_reason)


def emit(runtime: Runtime[SpecContext], event: dict[str, Any]) -> None:
    """Send an event to the run's callback and to the graph's ``custom`` stream."""
    if runtime.context.on_event is not None:
        runtime.context.on_event(event)
    runtime.stream_writer(event)


def write(
    runtime: Runtime[SpecContext],
    who: Who,
    trace: list[Span],
    max_tokens: int,
    *,
    reason: str,
    stop_at_trigger: bool,
    live: bool,
    prefix: Leftover | None = None,
    triggers: tuple[str, ...] | None = None,
    token_stop: TokenStop | None = None,
    logprobs: bool = False,
) -> Segment:
    """Ask one model to continue the trace; stream its text as written when ``live``.

    A target that fails (after its retries) with ``target_fallback`` on returns what it wrote
    before failing, with the error; the small model then goes on alone.
    """
    ctx, cfg = runtime.context, runtime.context.config
    session = ctx.small if who == "small" else ctx.target

    def on_text(delta: str) -> None:
        emit(runtime, {"type": "text", "author": who, "reason": reason, "text": delta})

    request = GenerateRequest(
        max_tokens=max_tokens,
        triggers=cfg.trigger_strings if triggers is None else triggers,
        stop_at_trigger=stop_at_trigger,
        stop=ctx.stop,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        top_k=cfg.top_k,
        seed=None if cfg.seed is None else cfg.seed + (0 if who == "small" else 1),
        deadline=ctx.deadline,
        on_text=on_text if live else None,
        cancel=ctx.cancel,
        prefix_ids=list(prefix["token_ids"]) if prefix else [],
        prefix_text=prefix["text"] if prefix else "",
        logprobs=logprobs,
        token_stop=token_stop,
        grammar=ctx.grammar,
        response_format=ctx.response_format,
    )
    try:
        seg = session.generate(trace, request)
    except RunCancelledError:
        raise
    except Exception as exc:
        if who != "target" or not cfg.target_fallback:
            raise
        text, ids = getattr(exc, "partial_text", "") or "", list(getattr(exc, "partial_token_ids", []) or [])
        return Segment(text=text if ids else "", token_ids=ids, finish_reason="length", error=describe(exc))
    if seg.finish_reason == "cancelled":
        msg = "the run was cancelled"
        raise RunCancelledError(msg)
    return seg


def write_probe(runtime: Runtime[SpecContext], state: SpecState, trace: list[Span], look: Look) -> Segment:
    """The small model's probe, not shown yet; it starts from what the last kept probe wrote past its boundary.

    Those tokens (the leftover) are a sample of the same distribution that the small model
    still caches, so a plain probe at that point replays them instead of writing them again.
    """
    ctx = runtime.context
    n = min(look.tokens, remaining(state, ctx))
    leftover = state.get("leftover")
    reuse = (
        leftover is not None
        and not ctx.config.think_prompt  # no think prompt in between
        and not look.logprobs
        and not look.until_boundary
        and leftover["at"] == chars(state)
        and len(leftover["token_ids"]) <= n
        and capabilities_of(ctx.small).prefix
    )
    return write(
        runtime,
        "small",
        trace,
        n,
        reason="probe",
        stop_at_trigger=look.until_boundary,
        live=False,
        prefix=leftover if reuse else None,
        logprobs=look.logprobs,
    )


def span(runtime: Runtime[SpecContext], who: Who, reason: str, text: str, ids: list[int], boundary: bool) -> Span:
    """A span of the trace written by ``who``."""
    session = runtime.context.small if who == "small" else runtime.context.target
    return Span(author=who, reason=reason, text=text, token_ids=ids, tokenizer=session.tokenizer_key, boundary=boundary)


def injected(runtime: Runtime[SpecContext], reason: str, text: str) -> Span:
    """Text put into the trace by the run itself (the think and recap prompts), shown as it is put."""
    emit(runtime, {"type": "text", "author": "injected", "reason": reason, "text": text})
    return Span(author="injected", reason=reason, text=text, token_ids=[], tokenizer=None, boundary=False)


def shown(runtime: Runtime[SpecContext], kept: Span) -> Span:
    """``kept``, after streaming its text (for text written unseen: a probe, a stretch that had to wait)."""
    if kept["text"]:
        emit(runtime, {"type": "text", "author": kept["author"], "reason": kept["reason"], "text": kept["text"]})
    return kept


def bump(counts: Mapping[str, N] | None, who: str, amount: N) -> dict[str, N]:
    """``counts`` with ``amount`` added to ``who``."""
    out = dict(counts or {})
    out[who] = out.get(who, amount * 0) + amount
    return out


def account(state: Counters, who: Who, seg: Segment, kept: int) -> dict[str, Any]:
    """Counter updates after ``who`` wrote ``seg`` of which ``kept`` tokens stay in the trace."""
    updates: dict[str, Any] = {}
    if seg.drafted_tokens:  # the target wrote by draft-and-verify
        drafts = bump(state.get("draft_tokens"), "drafted", seg.drafted_tokens)
        updates["draft_tokens"] = bump(drafts, "accepted", seg.accepted_tokens)
    return {
        **updates,
        "generated_tokens": bump(state.get("generated_tokens"), who, seg.num_tokens - seg.reused_tokens),
        "prefill_tokens": bump(state.get("prefill_tokens"), who, seg.prefill_tokens),
        "model_seconds": bump(state.get("model_seconds"), who, seg.elapsed),
        "output_tokens": bump(state.get("output_tokens"), who, kept),
    }


def scored(state: SpecState, updates: dict[str, Any], scores: TokenScores | None) -> dict[str, Any]:
    """``updates`` plus the target's catch-up when it scored the probe."""
    if scores is not None:
        prefill = updates.get("prefill_tokens", state.get("prefill_tokens"))
        seconds = updates.get("model_seconds", state.get("model_seconds"))
        updates["prefill_tokens"] = bump(prefill, "target", scores.prefill_tokens)
        updates["model_seconds"] = bump(seconds, "target", scores.elapsed)
    return updates


def fallback(state: Counters, node: str, seg: Segment) -> dict[str, Any]:
    """State updates recording a target failure (empty when the target did not fail)."""
    if seg.error is None:
        return {}
    record = Fallback(
        node=node,
        error=seg.error,
        char_position=chars(state),
        token_position=sum(state.get("output_tokens", {}).values()),
        partial_text=seg.text,
    )
    return {"fallbacks": [record], "target_failed": True}


def keepable(seg: Segment) -> tuple[str, list[int], bool, FinishReason | None]:
    """The part of a probe that may stay: up to and including its first boundary.

    Returns the text, the token ids, whether it ends on a boundary, and the run's finish
    reason if it is kept (an end of turn or stop string after the boundary is dropped with it).
    """
    if seg.first_boundary is None:
        return seg.text, seg.token_ids, False, finish(seg)
    n_tok, n_chr = seg.first_boundary
    end = finish(seg) if n_tok == seg.num_tokens else None
    return seg.text[:n_chr], seg.token_ids[:n_tok], True, end


def leftover(seg: Segment, kept_text: str, kept_ids: list[int], at: int) -> Leftover | None:
    """What a kept probe wrote past its first boundary, for the next probe to replay."""
    if len(kept_ids) >= seg.num_tokens:
        return None
    return Leftover(text=seg.text[len(kept_text) :], token_ids=seg.token_ids[len(kept_ids) :], at=at)


def intervention(
    state: Counters, kind: Kind, category: str, probe: str | None, seg: Segment, kept: Literal["target", "probe"]
) -> Intervention:
    """The record of one time the target wrote (where: after the trace and the tokens in ``state``)."""
    return Intervention(
        kind=kind,
        category=category,
        char_position=chars(state),
        token_position=sum(state.get("output_tokens", {}).values()),
        probe_text=probe,
        target_text=seg.text,
        kept=kept,
        target_tokens=seg.num_tokens,
    )


def head(runtime: Runtime[SpecContext], trace: Sequence[Span], seg: Segment, n: int) -> list[Span]:
    """The probe's first ``n`` tokens as a kept span (fewer where a character would be split)."""
    small: Any = runtime.context.small  # token-level: the policy's scores came from this pairing
    detok = small.detokenizer(small.context_ids(list(trace)))
    text, cut, cut_text = "", 0, ""
    for i, token in enumerate(seg.token_ids[: min(n, seg.num_tokens)]):
        piece = detok.push(token)
        text += piece
        if piece:  # the text of the first i + 1 tokens is complete
            cut, cut_text = i + 1, text
    if not cut:
        return []
    return [shown(runtime, span(runtime, "small", "probe", cut_text, seg.token_ids[:cut], False))]
