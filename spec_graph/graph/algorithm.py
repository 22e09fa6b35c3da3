"""The algorithm: one function per node of the state graph (algorithm.md, section 4).

A node is one step of reasoning: the model that writes runs until a boundary or a limit, and
the node returns what it adds to the trace, the counters, and ``route`` (what happens next).
The run's policy decides at each boundary (:mod:`spec_graph.policies`); models, caches and the
policy come from the runtime context (:class:`~spec_graph.graph.state.SpecContext`); running a
model and recording what it wrote is in :mod:`spec_graph.graph.writing`.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from langgraph.runtime import Runtime

from spec_graph.classification import classify_step as classify
from spec_graph.generators.base import Span
from spec_graph.generators.scoring import score_tokens
from spec_graph.graph.state import Probe, SpecContext, SpecState
from spec_graph.graph.writing import (
    BOUNDARY,
    account,
    bump,
    chars,
    emit,
    fallback,
    finish,
    head,
    injected,
    intervention,
    keepable,
    leftover,
    next_route,
    remaining,
    scored,
    shown,
    span,
    spans,
    write,
    write_probe,
)
from spec_graph.policies import Action, ProbeView, Step, TargetScores


def small_generate(state: SpecState, runtime: Runtime[SpecContext]) -> dict[str, Any]:
    """2. The small model writes until a boundary, its end of turn, the segment cap or the budget.

    A boundary is one of the policy's trigger strings, or a token its condition flags.
    """
    ctx, cfg = runtime.context, runtime.context.config
    stop = ctx.trigger_policy.token_stop(cfg)
    if stop is not None and state.get("boundary") == "token":  # the policy kept the flagged token: write it
        stop = dataclasses.replace(stop, min_tokens=max(stop.min_tokens, 1))
    cap = min(cfg.segment_cap, remaining(state, ctx))
    triggers = ctx.trigger_policy.triggers(cfg)
    seg = write(runtime, "small", spans(state), cap, reason="generate", stop_at_trigger=True, live=True,
                triggers=triggers, token_stop=stop)  # fmt: skip
    boundary = BOUNDARY.get(seg.finish_reason)
    return {
        "spans": [span(runtime, "small", "generate", seg.text, seg.token_ids, boundary == "trigger")]
        if seg.token_ids
        else [],
        "boundary": boundary,
        "route": next_route(ctx, boundary),
        "finish_reason": finish(seg),
        **account(state, "small", seg, seg.num_tokens),
    }


def detect_boundary(state: SpecState, runtime: Runtime[SpecContext]) -> dict[str, Any]:
    """3. Finished (end of turn by either model, stop string, budget, time) -> END; else on as routed."""
    if state.get("finish_reason"):
        return {"route": "finish"}
    if remaining(state, runtime.context) <= 0:
        return {"finish_reason": "length", "route": "finish"}
    deadline = runtime.context.deadline
    if deadline is not None and time.monotonic() >= deadline:
        return {"finish_reason": "time", "route": "finish"}
    return {}


def classify_step(state: SpecState, runtime: Runtime[SpecContext]) -> dict[str, Any]:
    """4. At a boundary the policy decides: a recap takeover, a target stretch, or keep the small model's words."""
    ctx, cfg = runtime.context, runtime.context.config
    policy = ctx.trigger_policy
    failed = bool(state.get("target_failed"))  # after a fallback the small model writes alone
    trace = spans(state)
    step = Step(
        trace="".join(s["text"] for s in trace),
        boundary=state.get("boundary") or "trigger",
        negatives=state.get("negatives", 0),
        negative_threshold=state.get("negative_threshold", cfg.negative_threshold),
        output_tokens=dict(state.get("output_tokens", {})),
        remaining=remaining(state, ctx),
        config=cfg,
    )
    # b. The policy may look at the small model's next words (a probe of n1 tokens, after the
    #    think prompt if set) and have the target score them: one forward pass, its catch-up.
    #    A probe that does not stay is undone by cropping the caches.
    think: list[Span] = []
    seg, scores, look = None, None, policy.look(step)
    if look is not None:
        think = [injected(runtime, "think_prompt", cfg.think_prompt)] if cfg.think_prompt else []
        seg = write_probe(runtime, state, [*trace, *think], look)
        step = dataclasses.replace(step, probe=ProbeView.of(seg))
        if ctx.scorer is not None and not failed and policy.wants_scores(step):
            scores = score_tokens(ctx.scorer, [*trace, *think], seg.token_ids)
            step = dataclasses.replace(step, scores=TargetScores(scores.logprobs, scores.log_ratios))
    action = policy.decide(step)
    intervening = action.kind == "intervene" and not failed and (seg is None or seg.finish_reason != "time")
    if intervening and cfg.think_prompt and not think:  # the target writes after the think prompt too
        think = [injected(runtime, "think_prompt", cfg.think_prompt)]
    kept_head = []
    if intervening and seg is not None and action.keep_tokens > 0:  # the probe's accepted start stays
        kept_head = head(runtime, [*trace, *think], seg, action.keep_tokens)
    n_head = sum(len(s["token_ids"]) for s in kept_head)
    probed = scored(state, account(state, "small", seg, n_head), scores) if seg is not None else {}
    # a. Too many negative steps (or another reason to recap): the target takes over.
    if action.kind == "takeover" and not failed:
        return {"route": "takeover", "boundary": None, "spans": think, **probed}
    # b. The target writes the stretch instead (after the probe's accepted start, if any stays).
    if intervening:
        probe = None
        if seg is not None:
            text, ids, boundary, end = keepable(seg)
            probe = Probe(text=seg.text, category=action.category, sentiment=action.sentiment, kept_text=text,
                          kept_ids=ids, boundary=boundary, finish_reason=end)  # fmt: skip
        return {"route": "intervene", "probe": probe, "action": dataclasses.asdict(action), "leftover": None,
                "boundary": None, "spans": [*think, *kept_head], **probed}  # fmt: skip
    # c. Keep: the small model goes on (after a token boundary, with the flagged token).
    if seg is None:
        return {"route": "write", "spans": think}
    #    With a probe: keep it up to and including its first boundary, so none is skipped; what it
    #    wrote past the boundary is where the next probe starts.
    text, ids, boundary, end = keepable(seg)
    kept = shown(runtime, span(runtime, "small", "probe", text, ids, boundary))
    at = chars(state) + sum(len(s["text"]) for s in think) + len(text)
    return {
        "route": next_route(ctx, boundary),
        "leftover": leftover(seg, text, ids, at),
        "spans": [*think, kept],
        "boundary": "trigger" if boundary else None,
        "finish_reason": end,
        **scored(state, account(state, "small", seg, len(ids)), scores),
    }


def target_intervene(state: SpecState, runtime: Runtime[SpecContext]) -> dict[str, Any]:
    """1./5. The target writes the opening, or the stretch the policy asked for at a boundary."""
    ctx, cfg = runtime.context, runtime.context.config
    stretch = state.get("action")
    if stretch is None:  # entered from the start
        return _opening(state, runtime, ctx.opening) if ctx.opening is not None else {"route": next_route(ctx, None)}
    # 5. The target writes n1 tokens (or to the step's end) from the boundary.
    action, probe, trace = Action(**stretch), state.get("probe"), spans(state)
    by_target = action.choose == "target" or probe is None
    seg = write(runtime, "target", trace, min(action.tokens, remaining(state, ctx)), reason="intervention",
                stop_at_trigger=action.until_boundary, live=by_target)  # fmt: skip
    #    With choose_large its stretch stays; without, it stays iff its sentiment has the sign the
    #    probe's lacked (probe < 0 <= stretch, or probe > 0 > stretch), else the probe stays.
    keep_target = by_target or _flips(action.sentiment, classify(seg.text, cfg).sentiment)
    if seg.error is not None and not seg.token_ids:  # the target failed before writing anything
        keep_target = False
        if probe is None:
            return {"probe": None, "action": None, "route": next_route(ctx, None),
                    **fallback(state, "target_intervene", seg)}  # fmt: skip
    out = account(state, "target", seg, seg.num_tokens if keep_target else 0)
    out.update(fallback(state, "target_intervene", seg))
    if keep_target:
        kept = span(runtime, "target", "intervention", seg.text, seg.token_ids, False)
        end = finish(seg)
        if not by_target:  # written unseen: the probe might have stayed
            shown(runtime, kept)
    else:
        assert probe is not None
        kept = shown(runtime, span(runtime, "small", "probe", probe["kept_text"], probe["kept_ids"], probe["boundary"]))
        out["output_tokens"] = bump(out["output_tokens"], "small", len(probe["kept_ids"]))
        end = probe["finish_reason"]
    event = intervention(state, "intervention", action.category, probe["text"] if probe else None, seg,
                         "target" if keep_target else "probe")  # fmt: skip
    emit(runtime, {"type": "intervention", **event})
    #    A kept stretch with negative sentiment counts towards the recap.
    negative = classify(kept["text"], cfg)
    out.update(spans=[kept], interventions=[event], probe=None, action=None, finish_reason=end,
               negatives=state.get("negatives", 0) + (1 if negative.sentiment < 0 else 0))  # fmt: skip
    #    A verification keyword in the kept stretch: the target writes n2 more tokens.
    now = {**state, **out, "spans": [*trace, kept]}
    n2 = min(action.extend if negative.verification_hits else 0, remaining(now, ctx))
    if n2 > 0 and end is None and seg.error is None:
        seg2 = write(runtime, "target", [*trace, kept], n2, reason="verification", stop_at_trigger=False, live=True)
        event2 = intervention(now, "verification", "verification", None, seg2, "target")
        emit(runtime, {"type": "intervention", **event2})
        out["spans"].append(span(runtime, "target", "verification", seg2.text, seg2.token_ids, False))
        out["interventions"].append(event2)
        out.update(finish_reason=finish(seg2), **account(now, "target", seg2, seg2.num_tokens))
        out.update(fallback(now, "target_intervene", seg2))
    last = out["spans"][-1]
    step_written = keep_target and action.until_boundary and seg.finish_reason == "trigger" and len(out["spans"]) == 1
    boundary = "trigger" if (last["author"] == "small" and last["boundary"]) or step_written else None
    return {**out, "boundary": boundary, "route": next_route(ctx, boundary)}


def _flips(probe: int, stretch: int) -> bool:
    """The stretch's sentiment has the sign the probe's lacked."""
    return (probe < 0 <= stretch) or (probe > 0 > stretch)


def _opening(state: SpecState, runtime: Runtime[SpecContext], first: Action) -> dict[str, Any]:
    """1. The target writes first: the opening (or, for the always policy, everything)."""
    n = min(first.tokens, remaining(state, runtime.context))
    seg = write(runtime, "target", spans(state), n, reason="opening", stop_at_trigger=False, live=True)
    event = intervention(state, "opening", first.category, None, seg, "target")
    emit(runtime, {"type": "intervention", **event})
    return {
        "spans": [span(runtime, "target", "opening", seg.text, seg.token_ids, False)] if seg.token_ids else [],
        "interventions": [event],
        "boundary": None,
        "route": next_route(runtime.context, None),
        **fallback(state, "target_intervene", seg),
        "finish_reason": finish(seg),
        **account(state, "target", seg, seg.num_tokens),
    }


def reflection_takeover(state: SpecState, runtime: Runtime[SpecContext]) -> dict[str, Any]:
    """6. Inject the recap prompt and let the target write the recap; the counters reset and grow."""
    ctx, cfg = runtime.context, runtime.context.config
    recap = state.get("recap_tokens", cfg.recap_tokens)
    threshold = state.get("negative_threshold", cfg.negative_threshold)
    prompt = injected(runtime, "recap_prompt", cfg.recap_prompt)
    n = min(recap, remaining(state, ctx))
    seg = write(runtime, "target", [*spans(state), prompt], n, reason="takeover", stop_at_trigger=False, live=True)
    event = intervention(state, "takeover", "takeover", None, seg, "target")
    event["char_position"] += len(prompt["text"])
    emit(runtime, {"type": "intervention", **event})
    written = [span(runtime, "target", "takeover", seg.text, seg.token_ids, False)] if seg.token_ids else []
    return {
        "spans": [prompt, *written],
        "interventions": [event],
        **fallback(state, "reflection_takeover", seg),
        "negatives": 0,
        "recap_tokens": min(recap + cfg.recap_growth, cfg.recap_tokens_cap),
        "negative_threshold": min(threshold + cfg.negative_threshold_growth, cfg.negative_threshold_cap),
        "boundary": None,
        "route": next_route(ctx, None),
        "finish_reason": finish(seg),
        **account(state, "target", seg, seg.num_tokens),
    }


def finalize(state: SpecState, runtime: Runtime[SpecContext]) -> dict[str, Any]:
    """The run is over: record the finish reason (nothing else changes)."""
    return {"finish_reason": state.get("finish_reason") or "length"}
