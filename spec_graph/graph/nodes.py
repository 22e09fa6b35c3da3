"""The algorithm: one function per node of the state graph (algorithm.md, section 4).

Each node is one reasoning step: the model that writes runs until a boundary or a limit, and
the node returns what it adds to the trace and to the counters. Models and caches come from
the runtime context; the state holds only text, token ids and numbers.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Literal

from langgraph.runtime import Runtime

from spec_graph.classification import StepCategory
from spec_graph.classification import classify_step as classify
from spec_graph.errors import RunCancelledError, describe
from spec_graph.generators.base import GenerateRequest, Segment, Span, TokenStop
from spec_graph.generators.scoring import TokenScores, score_tokens
from spec_graph.graph.state import (
    Fallback,
    FinishReason,
    Intervention,
    Leftover,
    Probe,
    SpecContext,
    SpecState,
    Stretch,
)
from spec_graph.policies import Action, ProbeView, Step, TargetScores

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
    triggers: tuple[str, ...] | None = None,
    token_stop: TokenStop | None = None,
    logprobs: bool = False,
) -> Segment:
    """Ask one model to continue the trace; stream its text as written when ``live``."""
    ctx, cfg = runtime.context, runtime.context.config
    session = ctx.small if who == "small" else ctx.target

    def on_text(delta: str) -> None:
        _emit(runtime, {"type": "text", "author": who, "reason": reason, "text": delta})

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
    updates: dict[str, Any] = {}
    if seg.drafted_tokens:  # the target wrote by draft-and-verify
        drafts = dict(state.get("draft_tokens", {}))
        drafts["drafted"] = drafts.get("drafted", 0) + seg.drafted_tokens
        drafts["accepted"] = drafts.get("accepted", 0) + seg.accepted_tokens
        updates["draft_tokens"] = drafts
    return {
        **updates,
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


def _scored(state: SpecState, updates: dict[str, Any], scores: list[TokenScores]) -> dict[str, Any]:
    """``updates`` plus the target's catch-up when it scored the probe."""
    if scores:
        now: Any = {**state, **updates}
        updates["prefill_tokens"] = _bump(now, "prefill_tokens", "target", scores[0].prefill_tokens)
        updates["model_seconds"] = _bump(now, "model_seconds", "target", scores[0].elapsed)
    return updates


def _head(runtime: Runtime[SpecContext], trace: list[Span], seg: Segment, n: int) -> list[Span]:
    """The probe's first ``n`` tokens as a kept span (fewer where a character would be split)."""
    small: Any = runtime.context.small  # token-level: the policy's scores came from this pairing
    detok = small.detokenizer(small.context_ids(trace))
    text, cut, cut_text = "", 0, ""
    for i, token in enumerate(seg.token_ids[: min(n, seg.num_tokens)]):
        piece = detok.push(token)
        text += piece
        if piece:  # the text of the first i + 1 tokens is complete
            cut, cut_text = i + 1, text
    if not cut:
        return []
    _emit(runtime, {"type": "text", "author": "small", "reason": "probe", "text": cut_text})
    return [_span(runtime, "small", "probe", cut_text, seg.token_ids[:cut], False)]


# -- nodes -------------------------------------------------------------------------------------
def small_generate(state: SpecState, runtime: Runtime[SpecContext]) -> dict[str, Any]:
    """2. The small model writes until a boundary, its end of turn, the segment cap or the budget.

    A boundary is one of the policy's trigger strings, or a token its condition flags.
    """
    ctx = runtime.context
    policy = ctx.trigger_policy
    cap = min(ctx.config.segment_cap, _remaining(state, ctx))
    stop = policy.token_stop(ctx.config)
    if stop is not None and state.get("write_past_stop"):  # the policy kept the flagged token
        stop = dataclasses.replace(stop, min_tokens=max(stop.min_tokens, 1))
    seg = _write(
        runtime,
        "small",
        _spans(state),
        cap,
        reason="generate",
        stop_at_trigger=True,
        live=True,
        triggers=policy.triggers(ctx.config),
        token_stop=stop,
    )
    boundary = {"trigger": "trigger", "uncertain": "token"}.get(seg.finish_reason)
    span = _span(runtime, "small", "generate", seg.text, seg.token_ids, boundary == "trigger")
    return {
        "spans": [span] if seg.token_ids else [],
        "boundary": boundary,
        "write_past_stop": False,
        "finish_reason": _finish(seg),
        **_account(state, "small", seg, seg.num_tokens),
    }


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
    """4. At a boundary the policy decides: recap takeover, a target stretch, or keep the probe.

    The policy (the paper's keyword rule by default) may ask for the small model's probe: its
    next words, written here once and undone by cropping when the target writes instead.
    """
    ctx, cfg = runtime.context, runtime.context.config
    failed = bool(state.get("target_failed"))  # after a fallback the small model writes alone
    spans = _spans(state)
    injected: list[Span] = []
    written: list[Segment] = []
    scores: list[TokenScores] = []
    scorer = None if failed else ctx.scorer

    def think() -> list[Span]:
        if cfg.think_prompt and not injected:
            injected.append(_injected(runtime, "think_prompt", cfg.think_prompt))
        return injected

    def write_probe(tokens: int, logprobs: bool, until_boundary: bool = False) -> ProbeView:
        # b. The small model writes a probe of n1 tokens (after the think prompt, if set),
        #    starting from what the last kept probe wrote past its boundary.
        if not written:
            n = min(tokens, _remaining(state, ctx))
            leftover = state.get("leftover")
            reuse = (
                leftover is not None
                and not cfg.think_prompt
                and not logprobs
                and not until_boundary
                and leftover["at"] == _chars(state)
                and len(leftover["token_ids"]) <= n
                and getattr(ctx.small, "supports_prefix", False)
            )
            prefix = leftover if reuse else None
            written.append(
                _write(
                    runtime,
                    "small",
                    spans + think(),
                    n,
                    reason="probe",
                    stop_at_trigger=until_boundary,
                    live=False,
                    prefix=prefix,
                    logprobs=logprobs,
                )
            )
        return ProbeView.of(written[0])

    def score_probe() -> TargetScores:
        # The target scores the probe: one forward pass, its catch-up on this text.
        if not scores:
            probe = written[0] if written else None
            if probe is None:
                write_probe(cfg.probe_tokens, False)
                probe = written[0]
            assert scorer is not None
            scores.append(score_tokens(scorer, spans + injected, probe.token_ids))
        return TargetScores(scores[0].logprobs, scores[0].log_ratios)

    step = Step(
        trace="".join(s["text"] for s in spans),
        boundary=state.get("boundary") or "trigger",
        negatives=state.get("negatives", 0),
        negative_threshold=state.get("negative_threshold", cfg.negative_threshold),
        output_tokens=dict(state.get("output_tokens", {})),
        remaining=_remaining(state, ctx),
        config=cfg,
        write_probe=write_probe,
        score_probe=score_probe if scorer is not None else None,
    )
    action = ctx.trigger_policy.decide(step)
    seg = written[0] if written else None
    intervening = action.kind == "intervene" and not failed and (seg is None or seg.finish_reason != "time")
    head: list[Span] = []
    if intervening and seg is not None and action.keep_tokens > 0:  # the probe's accepted start stays
        head = _head(runtime, [*spans, *think()], seg, action.keep_tokens)
    kept_head = len(head[0]["token_ids"]) if head else 0
    probed = _scored(state, _account(state, "small", seg, kept_head) if seg is not None else {}, scores)
    # a. Too many negative steps: the target takes over with a recap.
    if action.kind == "takeover" and not failed:
        return {"decision": "takeover", "boundary": None, "spans": injected, **probed}
    # c. The target writes the stretch instead of the small model.
    if intervening:
        think()
        probe = None
        if seg is not None:
            text, ids, boundary, finish = _keepable(seg)
            probe = Probe(
                text=seg.text,
                category=action.category,
                sentiment=action.sentiment,
                kept_text=text,
                kept_ids=ids,
                boundary=boundary,
                finish_reason=finish,
            )
        stretch = Stretch(
            tokens=action.tokens,
            category=action.category,
            sentiment=action.sentiment,
            until_boundary=action.until_boundary,
        )
        return {
            "decision": "intervene",
            "probe": probe,
            "stretch": stretch,
            "leftover": None,
            "boundary": None,
            "spans": [*injected, *head],
            **probed,
        }
    # d. Keep: the small model goes on (a flagged token is written after all).
    if seg is None:
        return {"decision": "keep", "boundary": None, "write_past_stop": step.boundary == "token", "spans": injected}
    #    With a probe: keep it up to and including its first boundary, so none is skipped.
    text, ids, boundary, finish = _keepable(seg)
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
        "boundary": "trigger" if boundary else None,
        "finish_reason": finish,
        **_scored(state, _account(state, "small", seg, len(ids)), scores),
    }


def _opening(state: SpecState, runtime: Runtime[SpecContext], first: Action) -> dict[str, Any]:
    """1. The target writes first: the opening (or, for the always policy, everything)."""
    n = min(first.tokens, _remaining(state, runtime.context))
    seg = _write(runtime, "target", _spans(state), n, reason="opening", stop_at_trigger=False, live=True)
    event = _intervention(state, "opening", first.category, None, seg, "target")
    _emit(runtime, {"type": "intervention", **event})
    span = _span(runtime, "target", "opening", seg.text, seg.token_ids, False)
    return {
        "spans": [span] if seg.token_ids else [],
        "interventions": [event],
        "opening_done": True,
        "boundary": None,
        **_fallback(state, "target_intervene", seg),
        "finish_reason": _finish(seg),
        **_account(state, "target", seg, seg.num_tokens),
    }


def target_intervene(state: SpecState, runtime: Runtime[SpecContext]) -> dict[str, Any]:
    """1./5. The target writes the opening, or the stretch the policy asked for at a boundary."""
    ctx, cfg = runtime.context, runtime.context.config
    policy = ctx.trigger_policy
    stretch = state.get("stretch")
    if stretch is None:  # entered from the start
        first = None if state.get("opening_done") else policy.start(cfg)
        return _opening(state, runtime, first) if first is not None else {"opening_done": True}
    # 5. The target writes the stretch from the boundary.
    spans = _spans(state)
    probe = state.get("probe")
    n1 = min(stretch["tokens"], _remaining(state, ctx))
    live = cfg.choose_large or probe is None  # else the probe may still win: shown once chosen
    until_boundary = bool(stretch.get("until_boundary"))
    seg = _write(runtime, "target", spans, n1, reason="intervention", stop_at_trigger=until_boundary, live=live)
    action = Action("intervene", stretch["tokens"], stretch["category"], stretch["sentiment"])
    view = ProbeView(probe["text"], list(probe["kept_ids"])) if probe else None
    keep_target = policy.keep_target(view, action, seg.text, cfg)
    if seg.error is not None and not seg.token_ids:  # the target failed before writing anything
        keep_target = False
        if probe is None:
            return {"probe": None, "stretch": None, "decision": None, **_fallback(state, "target_intervene", seg)}
    updates = _account(state, "target", seg, seg.num_tokens if keep_target else 0)
    updates.update(_fallback(state, "target_intervene", seg))
    if keep_target:
        kept = _span(runtime, "target", "intervention", seg.text, seg.token_ids, False)
        finish = _finish(seg)
        if not live:
            _emit(runtime, {"type": "text", "author": "target", "reason": "intervention", "text": seg.text})
    else:
        assert probe is not None
        kept = _span(runtime, "small", "probe", probe["kept_text"], probe["kept_ids"], probe["boundary"])
        updates["output_tokens"] = _bump({**state, **updates}, "output_tokens", "small", len(probe["kept_ids"]))  # type: ignore[typeddict-item]
        finish = probe["finish_reason"]
        _emit(runtime, {"type": "text", "author": "small", "reason": "probe", "text": probe["kept_text"]})
    event = _intervention(
        state,
        "intervention",
        stretch["category"],
        probe["text"] if probe else None,
        seg,
        "target" if keep_target else "probe",
    )
    _emit(runtime, {"type": "intervention", **event})
    out: dict[str, Any] = {
        **updates,
        "spans": [kept],
        "interventions": [event],
        "probe": None,
        "stretch": None,
        "decision": None,
        "negatives": state.get("negatives", 0) + (1 if classify(kept["text"], cfg).sentiment < 0 else 0),
        "finish_reason": finish,
    }
    # The policy may extend the kept stretch (the paper: n2 tokens after a verification cue).
    now = {**state, **out, "spans": [*spans, kept]}
    n2 = min(policy.extension(kept["text"], cfg), _remaining(now, ctx))  # type: ignore[arg-type]
    if n2 > 0 and finish is None and seg.error is None:
        seg2 = _write(runtime, "target", [*spans, kept], n2, reason="verification", stop_at_trigger=False, live=True)
        event2 = _intervention(now, "verification", StepCategory.VERIFICATION.value, None, seg2, "target")  # type: ignore[arg-type]
        _emit(runtime, {"type": "intervention", **event2})
        out["spans"].append(_span(runtime, "target", "verification", seg2.text, seg2.token_ids, False))
        out["interventions"].append(event2)
        out["finish_reason"] = _finish(seg2)
        out.update(_account(now, "target", seg2, seg2.num_tokens))  # type: ignore[arg-type]
        out.update(_fallback(now, "target_intervene", seg2))  # type: ignore[arg-type]
    last = out["spans"][-1]
    step_written = keep_target and until_boundary and seg.finish_reason == "trigger" and len(out["spans"]) == 1
    out["boundary"] = "trigger" if (last["author"] == "small" and last["boundary"]) or step_written else None
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
        "boundary": None,
        "finish_reason": _finish(seg),
        **_account(state, "target", seg, seg.num_tokens),
    }


def finalize(state: SpecState, runtime: Runtime[SpecContext]) -> dict[str, Any]:
    """The run is over: record the finish reason (nothing else changes)."""
    return {"finish_reason": state.get("finish_reason") or "length"}
