"""The algorithm: one function per node of the state graph (algorithm.md, section 4).

Each node is one reasoning step: the model that writes runs until a boundary or a limit, and
the node returns what it adds to the trace and to the counters. Models and caches come from
the runtime context; the state holds only text, token ids and numbers.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from langgraph.runtime import Runtime

from spec_graph.classification import StepCategory
from spec_graph.classification import classify_step as classify
from spec_graph.errors import RunCancelledError, describe
from spec_graph.generators.base import GenerateRequest, Segment, Span
from spec_graph.graph.state import Fallback, FinishReason, Intervention, Leftover, Probe, SpecContext, SpecState

Who = Literal["small", "target"]


# -- helpers -----------------------------------------------------------------------------------
def _spans(state: SpecState) -> list[Span]:
    return list(state.get("spans", []))


def _remaining(state: SpecState, ctx: SpecContext) -> int:
    """Generated tokens the budget still allows (prompt and injected text excluded)."""
    return ctx.config.max_new_tokens - sum(state.get("output_tokens", {}).values())


def _emit(runtime: Runtime[SpecContext], event: dict[str, Any]) -> None:
    if runtime.context.on_event is not None:
        runtime.context.on_event(event)
    runtime.stream_writer(event)


def _write(
    runtime: Runtime[SpecContext],
    who: Who,
    trace: list[Span],
    max_tokens: int,
    *,
    reason: str,
    stop_at_trigger: bool,
    live: bool,
    prefix: Leftover | None = None,
) -> Segment:
    """Ask one model to continue the trace; stream its text as written when ``live``."""
    ctx, cfg = runtime.context, runtime.context.config
    session = ctx.small if who == "small" else ctx.target

    def on_text(delta: str) -> None:
        _emit(runtime, {"type": "text", "author": who, "reason": reason, "text": delta})

    request = GenerateRequest(
        max_tokens=max_tokens,
        triggers=cfg.trigger_strings,
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
    )
    try:
        seg = session.generate(trace, request)
    except RunCancelledError:
        raise
    except Exception as exc:
        if who != "target" or not cfg.target_fallback:
            raise
        # Fallback: keep what the target wrote before it failed; the small model goes on alone.
        text, ids = getattr(exc, "partial_text", "") or "", list(getattr(exc, "partial_token_ids", []) or [])
        return Segment(text=text if ids else "", token_ids=ids, finish_reason="length", error=describe(exc))
    if seg.finish_reason == "cancelled":
        msg = "the run was cancelled"
        raise RunCancelledError(msg)
    return seg


def _span(runtime: Runtime[SpecContext], who: Who, reason: str, text: str, ids: list[int], boundary: bool) -> Span:
    session = runtime.context.small if who == "small" else runtime.context.target
    return Span(author=who, reason=reason, text=text, token_ids=ids, tokenizer=session.tokenizer_key, boundary=boundary)


def _injected(runtime: Runtime[SpecContext], reason: str, text: str) -> Span:
    _emit(runtime, {"type": "text", "author": "injected", "reason": reason, "text": text})
    return Span(author="injected", reason=reason, text=text, token_ids=[], tokenizer=None, boundary=False)


def _bump(state: SpecState, key: str, who: Who, amount: float) -> dict[str, Any]:
    counts = dict(state.get(key, {}))  # type: ignore[call-overload]
    counts[who] = counts.get(who, 0) + amount
    return counts


def _account(state: SpecState, who: Who, seg: Segment, kept: int) -> dict[str, Any]:
    """Counter updates after ``who`` wrote ``seg`` of which ``kept`` tokens stay in the trace."""
    return {
        "generated_tokens": _bump(state, "generated_tokens", who, seg.num_tokens - seg.reused_tokens),
        "prefill_tokens": _bump(state, "prefill_tokens", who, seg.prefill_tokens),
        "model_seconds": _bump(state, "model_seconds", who, seg.elapsed),
        "output_tokens": _bump(state, "output_tokens", who, kept),
    }


_RUN_FINISH: dict[str, FinishReason] = {"eos": "eos", "stop": "stop", "time": "time", "context": "length"}


def _finish(seg: Segment) -> FinishReason | None:
    """How the run ends after this segment (a full context window ends it like the budget)."""
    return _RUN_FINISH.get(seg.finish_reason)


def _fallback(state: SpecState, node: str, seg: Segment) -> dict[str, Any]:
    """State updates recording a target failure (empty when the target did not fail)."""
    if seg.error is None:
        return {}
    record = Fallback(
        node=node,
        error=seg.error,
        char_position=_chars(state),
        token_position=sum(state.get("output_tokens", {}).values()),
        partial_text=seg.text,
    )
    return {"fallbacks": [record], "target_failed": True}


def _keepable(seg: Segment) -> tuple[str, list[int], bool, FinishReason | None]:
    """The part of a probe that may stay: up to and including its first boundary.

    Returns the text, the token ids, whether it ends on a boundary, and the run's finish
    reason if it is kept (an end of turn or stop string after the boundary is dropped with it).
    """
    if seg.first_boundary is None:
        return seg.text, seg.token_ids, False, _finish(seg)
    n_tok, n_chr = seg.first_boundary
    finish = _finish(seg) if n_tok == seg.num_tokens else None
    return seg.text[:n_chr], seg.token_ids[:n_tok], True, finish


def _chars(state: SpecState) -> int:
    return sum(len(s["text"]) for s in state.get("spans", []))


def _intervention(
    state: SpecState, kind: str, category: str, probe: str | None, seg: Segment, kept: str
) -> Intervention:
    return Intervention(
        kind=kind,  # type: ignore[typeddict-item]
        category=category,
        char_position=_chars(state),
        token_position=sum(state.get("output_tokens", {}).values()),
        probe_text=probe,
        target_text=seg.text,
        kept=kept,  # type: ignore[typeddict-item]
        target_tokens=seg.num_tokens,
    )


# -- nodes -------------------------------------------------------------------------------------
def small_generate(state: SpecState, runtime: Runtime[SpecContext]) -> dict[str, Any]:
    """2. The small model writes until a boundary, its end of turn, the segment cap or the budget."""
    cap = min(runtime.context.config.segment_cap, _remaining(state, runtime.context))
    seg = _write(runtime, "small", _spans(state), cap, reason="generate", stop_at_trigger=True, live=True)
    span = _span(runtime, "small", "generate", seg.text, seg.token_ids, seg.finish_reason == "trigger")
    return {"spans": [span], "finish_reason": _finish(seg), **_account(state, "small", seg, seg.num_tokens)}


def detect_boundary(state: SpecState, runtime: Runtime[SpecContext]) -> dict[str, Any]:
    """3. Decide whether the run is over (end of turn, stop string, budget, time)."""
    if state.get("finish_reason"):
        return {}
    if _remaining(state, runtime.context) <= 0:
        return {"finish_reason": "length"}
    deadline = runtime.context.deadline
    if deadline is not None and time.monotonic() >= deadline:
        return {"finish_reason": "time"}
    return {}


def classify_step(state: SpecState, runtime: Runtime[SpecContext]) -> dict[str, Any]:
    """4. At a boundary the small model wrote: recap takeover, intervention, or keep its probe."""
    cfg = runtime.context.config
    failed = bool(state.get("target_failed"))  # after a fallback the small model writes alone
    # a. Too many negative steps: the target takes over with a recap.
    if not failed and state.get("negatives", 0) >= state.get("negative_threshold", cfg.negative_threshold):
        return {"decision": "takeover"}
    # b. The small model writes a probe of n1 tokens (after the think prompt, if set).
    spans = _spans(state)
    injected = [_injected(runtime, "think_prompt", cfg.think_prompt)] if cfg.think_prompt else []
    if cfg.not_reasoning and cfg.choose_large and not failed:
        # Every boundary goes to the target and its stretch is always kept: the probe could
        # not change the text, so it is not written (same output, n1 small tokens saved).
        return {"decision": "intervene", "probe": None, "spans": injected}
    n1 = min(cfg.probe_tokens, _remaining(state, runtime.context))
    leftover = state.get("leftover")
    reuse = (
        leftover is not None
        and not injected
        and leftover["at"] == _chars(state)
        and len(leftover["token_ids"]) <= n1
        and getattr(runtime.context.small, "supports_prefix", False)
    )
    seg = _write(
        runtime,
        "small",
        spans + injected,
        n1,
        reason="probe",
        stop_at_trigger=False,
        live=False,
        prefix=leftover if reuse else None,
    )
    step = classify(seg.text, cfg)
    text, ids, boundary, finish = _keepable(seg)
    wants_target = step.category != StepCategory.NEUTRAL or cfg.not_reasoning
    if wants_target and not failed and seg.finish_reason != "time":
        probe = Probe(
            text=seg.text,
            category=step.category.value,
            sentiment=step.sentiment,
            kept_text=text,
            kept_ids=ids,
            boundary=boundary,
            finish_reason=finish,
        )
        return {
            "decision": "intervene",
            "probe": probe,
            "leftover": None,
            "spans": injected,
            **_account(state, "small", seg, 0),
        }
    # c. NEUTRAL: keep the probe up to and including its first boundary, so none is skipped.
    if text:
        _emit(runtime, {"type": "text", "author": "small", "reason": "probe", "text": text})
    span = _span(runtime, "small", "probe", text, ids, boundary)
    rest = Leftover(
        text=seg.text[len(text) :],
        token_ids=seg.token_ids[len(ids) :],
        at=_chars(state) + sum(len(i["text"]) for i in injected) + len(text),
    )
    return {
        "decision": "keep",
        "leftover": rest if rest["token_ids"] else None,
        "spans": [*injected, span],
        "finish_reason": finish,
        **_account(state, "small", seg, len(ids)),
    }


def target_intervene(state: SpecState, runtime: Runtime[SpecContext]) -> dict[str, Any]:
    """1./5. The target writes the opening, or the n1-token stretch at a flagged boundary."""
    ctx, cfg = runtime.context, runtime.context.config
    spans = _spans(state)
    if cfg.opening and not state.get("opening_done"):  # 1. the opening
        n = min(cfg.opening_tokens, _remaining(state, ctx))
        seg = _write(runtime, "target", spans, n, reason="opening", stop_at_trigger=False, live=True)
        event = _intervention(state, "opening", "opening", None, seg, "target")
        _emit(runtime, {"type": "intervention", **event})
        span = _span(runtime, "target", "opening", seg.text, seg.token_ids, False)
        return {
            "spans": [span] if seg.token_ids else [],
            "interventions": [event],
            "opening_done": True,
            **_fallback(state, "target_intervene", seg),
            "finish_reason": _finish(seg),
            **_account(state, "target", seg, seg.num_tokens),
        }
    # 5. The target writes n1 tokens from the boundary.
    probe = state.get("probe")
    n1 = min(cfg.probe_tokens, _remaining(state, ctx))
    seg = _write(runtime, "target", spans, n1, reason="intervention", stop_at_trigger=False, live=cfg.choose_large)
    target_sent = classify(seg.text, cfg).sentiment
    p = probe["sentiment"] if probe else 0
    keep_target = cfg.choose_large or probe is None or (p < 0 <= target_sent) or (p > 0 > target_sent)
    if seg.error is not None and not seg.token_ids:  # the target failed before writing anything
        keep_target = False
        if probe is None:
            return {"probe": None, "decision": None, **_fallback(state, "target_intervene", seg)}
    updates = _account(state, "target", seg, seg.num_tokens if keep_target else 0)
    updates.update(_fallback(state, "target_intervene", seg))
    if keep_target:
        kept = _span(runtime, "target", "intervention", seg.text, seg.token_ids, False)
        finish = _finish(seg)
        if not cfg.choose_large:
            _emit(runtime, {"type": "text", "author": "target", "reason": "intervention", "text": seg.text})
    else:
        assert probe is not None
        kept = _span(runtime, "small", "probe", probe["kept_text"], probe["kept_ids"], probe["boundary"])
        updates["output_tokens"] = _bump({**state, **updates}, "output_tokens", "small", len(probe["kept_ids"]))  # type: ignore[typeddict-item]
        finish = probe["finish_reason"]
        _emit(runtime, {"type": "text", "author": "small", "reason": "probe", "text": probe["kept_text"]})
    category = probe["category"] if probe else "forced"
    event = _intervention(
        state, "intervention", category, probe["text"] if probe else None, seg, "target" if keep_target else "probe"
    )
    _emit(runtime, {"type": "intervention", **event})
    kept_step = classify(kept["text"], cfg)
    out: dict[str, Any] = {
        **updates,
        "spans": [kept],
        "interventions": [event],
        "probe": None,
        "decision": None,
        "negatives": state.get("negatives", 0) + (1 if kept_step.sentiment < 0 else 0),
        "finish_reason": finish,
    }
    # A verification cue in the kept stretch: the target writes n2 more tokens.
    now = {**state, **out, "spans": [*spans, kept]}
    n2 = min(cfg.verify_tokens, _remaining(now, ctx))  # type: ignore[arg-type]
    if kept_step.verification_hits and finish is None and n2 > 0 and seg.error is None:
        seg2 = _write(runtime, "target", [*spans, kept], n2, reason="verification", stop_at_trigger=False, live=True)
        event2 = _intervention(now, "verification", StepCategory.VERIFICATION.value, None, seg2, "target")  # type: ignore[arg-type]
        _emit(runtime, {"type": "intervention", **event2})
        out["spans"].append(_span(runtime, "target", "verification", seg2.text, seg2.token_ids, False))
        out["interventions"].append(event2)
        out["finish_reason"] = _finish(seg2)
        out.update(_account(now, "target", seg2, seg2.num_tokens))  # type: ignore[arg-type]
        out.update(_fallback(now, "target_intervene", seg2))  # type: ignore[arg-type]
    return out


def reflection_takeover(state: SpecState, runtime: Runtime[SpecContext]) -> dict[str, Any]:
    """6. Too many negative steps: inject the recap prompt and let the target write the recap."""
    cfg = runtime.context.config
    recap = state.get("recap_tokens", cfg.recap_tokens)
    threshold = state.get("negative_threshold", cfg.negative_threshold)
    prompt = _injected(runtime, "recap_prompt", cfg.recap_prompt)
    n = min(recap, _remaining(state, runtime.context))
    seg = _write(runtime, "target", [*_spans(state), prompt], n, reason="takeover", stop_at_trigger=False, live=True)
    event = _intervention(state, "takeover", "takeover", None, seg, "target")
    event["char_position"] += len(prompt["text"])
    _emit(runtime, {"type": "intervention", **event})
    written = [_span(runtime, "target", "takeover", seg.text, seg.token_ids, False)] if seg.token_ids else []
    return {
        "spans": [prompt, *written],
        "interventions": [event],
        **_fallback(state, "reflection_takeover", seg),
        "negatives": 0,
        "recap_tokens": min(recap + cfg.recap_growth, cfg.recap_tokens_cap),
        "negative_threshold": min(threshold + cfg.negative_threshold_growth, cfg.negative_threshold_cap),
        "decision": None,
        "finish_reason": _finish(seg),
        **_account(state, "target", seg, seg.num_tokens),
    }


def finalize(state: SpecState, runtime: Runtime[SpecContext]) -> dict[str, Any]:
    """The run is over: record the finish reason (nothing else changes)."""
    return {"finish_reason": state.get("finish_reason") or "length"}
