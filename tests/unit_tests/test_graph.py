"""The state graph against algorithm.md section 4, driven by scripted models.

Scripted tokens are word-like (``" word"``, ``"\\n\\n"`` on its own, ``"<eos>"`` ends the turn), so
every count below can be checked by hand. Unless a test says otherwise, n1 = ``probe_tokens`` = 3
and n2 = ``verify_tokens`` = 4.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from spec_graph import ScriptedGenerator, SpecResult, SpeculativeThinker, SpeculativeThinkingConfig
from spec_graph.generators import EOS, GenerateRequest, Segment, Span
from spec_graph.generators.scripted import scripted_tokens
from spec_graph.graph import SpecContext, build_graph, recursion_limit
from spec_graph.graph.state import SpecState

MESSAGES = [{"role": "user", "content": "question"}]
RECAP = " Recap:"


# -- helpers -----------------------------------------------------------------------------------
def config(**overrides: Any) -> SpeculativeThinkingConfig:
    base: dict[str, Any] = {"probe_tokens": 3, "verify_tokens": 4, "max_new_tokens": 100, "temperature": 0.0}
    return SpeculativeThinkingConfig(**{**base, **overrides})


def gens(small: Sequence[str], target: Sequence[str]) -> tuple[ScriptedGenerator, ScriptedGenerator]:
    return (
        ScriptedGenerator.from_responses(small, name="small"),
        ScriptedGenerator.from_responses(target, name="target"),
    )


def run(small: Any, target: Any, cfg: SpeculativeThinkingConfig, **kwargs: Any) -> SpecResult:
    return SpeculativeThinker(small, target, cfg).run("question", **kwargs)


def invoke(
    small: Any,
    target: Any,
    cfg: SpeculativeThinkingConfig,
    *,
    graph: Any = None,
    thread_id: str | None = None,
    **ctx: Any,
) -> SpecState:
    """Run the compiled graph directly and return its final state."""
    context = SpecContext.open(small, target, MESSAGES, cfg)
    for key, value in ctx.items():
        setattr(context, key, value)
    run_config: dict[str, Any] = {"recursion_limit": recursion_limit(cfg.max_new_tokens)}
    if thread_id is not None:
        run_config["configurable"] = {"thread_id": thread_id}
    graph = graph if graph is not None else build_graph()
    return graph.invoke({"messages": MESSAGES}, context=context, config=run_config)


def text_of(state: Mapping[str, Any]) -> str:
    return "".join(s["text"] for s in state["spans"])


def spans(spans_: Sequence[Span]) -> list[tuple[str, str, str, bool]]:
    return [(s["author"], s["reason"], s["text"], s["boundary"]) for s in spans_]


def calls(gen: ScriptedGenerator) -> list[tuple[int, bool]]:
    """``(max_tokens, stop_at_trigger)`` of every call: True = a stretch to a boundary, False = fixed length."""
    return [(c["max_tokens"], c["stop_at_trigger"]) for c in gen.calls]


def traces(gen: ScriptedGenerator) -> list[str]:
    return [c["trace"] for c in gen.calls]


def intervention(
    kind: str,
    category: str,
    char_position: int,
    token_position: int,
    probe_text: str | None,
    target_text: str,
    kept: str = "target",
    target_tokens: int = 3,
) -> dict[str, Any]:
    return {
        "kind": kind,
        "category": category,
        "char_position": char_position,
        "token_position": token_position,
        "probe_text": probe_text,
        "target_text": target_text,
        "kept": kept,
        "target_tokens": target_tokens,
    }


def kept_tokens(spans_: Sequence[Span]) -> int:
    return sum(len(s["token_ids"]) for s in spans_)


# -- 4c. a NEUTRAL probe is kept ----------------------------------------------------------------
def test_neutral_probe_kept_up_to_and_including_its_first_boundary() -> None:
    small, target = gens(["Let x be 2.\n\n", " So y\n\n then z", " It is four now", " Done." + EOS], ["unused"])
    res = run(small, target, config(probe_tokens=4))

    assert res.text == "Let x be 2.\n\n So y\n\n It is four now Done."
    assert "then" not in res.text  # the probe's text after its boundary is dropped
    assert res.finish_reason == "eos"
    assert spans(res.spans) == [
        ("small", "generate", "Let x be 2.\n\n", True),
        ("small", "probe", " So y\n\n", True),
        ("small", "probe", " It is four now", False),
        ("small", "generate", " Done.", False),
    ]
    # The second probe starts at the boundary the first one ended on; no boundary is skipped.
    assert calls(small) == [(100, True), (4, False), (4, False), (100 - 12, True)]
    assert traces(small) == [
        "",
        "Let x be 2.\n\n",
        "Let x be 2.\n\n So y\n\n",
        "Let x be 2.\n\n So y\n\n It is four now",
    ]
    assert target.calls == []
    assert res.interventions == []
    assert res.output_tokens == {"small": 5 + 3 + 4 + 2}  # the end-of-turn token counts
    assert res.generated_tokens == {"small": 5 + 4 + 4 + 2}  # " then" was written and dropped


def test_neutral_probe_without_boundary_is_kept_whole_and_can_end_the_turn() -> None:
    small, target = gens(["A.\n\n", " All done." + EOS, " never"], ["unused"])
    res = run(small, target, config(probe_tokens=4))

    assert res.text == "A.\n\n All done."
    assert res.finish_reason == "eos"
    assert spans(res.spans) == [("small", "generate", "A.\n\n", True), ("small", "probe", " All done.", False)]
    assert calls(small) == [(100, True), (4, False)]
    assert res.output_tokens == {"small": 2 + 3}
    assert target.calls == []


def test_neutral_probe_ending_on_a_boundary_is_classified_again_there() -> None:
    small, target = gens(["A.\n\n", " B c\n\n", " Wait no no", " End." + EOS], [" T1 T2 T3"])
    res = run(small, target, config())

    assert res.text == "A.\n\n B c\n\n T1 T2 T3 End."
    assert calls(small) == [(100, True), (3, False), (3, False), (100 - 8, True)]
    assert res.interventions == [
        intervention("intervention", "reflection", len("A.\n\n B c\n\n"), 5, " Wait no no", " T1 T2 T3")
    ]
    assert traces(target) == ["A.\n\n B c\n\n"]


# -- 5. target_intervene ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("target_text", "negatives"),
    [(" Hmm, wait here", 1), (" Fine so far", 0)],
    ids=["negative-stretch", "neutral-stretch"],
)
def test_reflection_target_writes_n1_and_its_stretch_is_kept(target_text: str, negatives: int) -> None:
    small, target = gens(["Step one.\n\n", "Wait, that is", " Next." + EOS], [target_text])
    cfg = config()
    state = invoke(small, target, cfg)

    assert text_of(state) == "Step one.\n\n" + target_text + " Next."
    assert state["finish_reason"] == "eos"
    assert spans(state["spans"]) == [
        ("small", "generate", "Step one.\n\n", True),
        ("target", "intervention", target_text, False),
        ("small", "generate", " Next.", False),
    ]
    assert target.calls == [{"trace": "Step one.\n\n", "max_tokens": cfg.probe_tokens, "stop_at_trigger": False}]
    assert calls(small) == [(100, True), (3, False), (100 - 6, True)]
    assert state["interventions"] == [
        intervention("intervention", "reflection", len("Step one.\n\n"), 3, "Wait, that is", target_text)
    ]
    assert state["negatives"] == negatives
    assert state["output_tokens"] == {"small": 3 + 2, "target": 3}
    assert state["generated_tokens"] == {"small": 3 + 3 + 2, "target": 3}  # the probe was written, then dropped
    assert state["probe"] is None


@pytest.mark.parametrize(
    ("probe", "category", "stretch", "verifies"),
    [
        (" Let us verify", "verification", " We check it", True),
        (" Let us verify", "verification", " Looks fine so", False),
        (" Wait, hmm no", "reflection", " We check it", True),
    ],
    ids=["verify-probe-verify-stretch", "verify-probe-neutral-stretch", "reflection-probe-verify-stretch"],
)
def test_verification_cue_in_the_kept_stretch_makes_the_target_write_n2_more(
    probe: str, category: str, stretch: str, verifies: bool
) -> None:
    small, target = gens(["Step.\n\n", probe, " Next." + EOS], [stretch, " and all is fine"])
    state = invoke(small, target, config())

    extra = " and all is fine" if verifies else ""
    assert text_of(state) == "Step.\n\n" + stretch + extra + " Next."
    assert state["finish_reason"] == "eos"
    first = intervention("intervention", category, 7, 2, probe, stretch)
    if verifies:
        assert calls(target) == [(3, False), (4, False)]
        assert traces(target) == ["Step.\n\n", "Step.\n\n" + stretch]
        assert state["interventions"] == [
            first,
            intervention("verification", "verification", 7 + len(stretch), 5, None, extra, target_tokens=4),
        ]
        assert [s[:2] for s in spans(state["spans"])] == [
            ("small", "generate"),
            ("target", "intervention"),
            ("target", "verification"),
            ("small", "generate"),
        ]
        assert state["output_tokens"] == {"small": 4, "target": 7}
        assert calls(small)[-1] == (100 - 9, True)
        assert state["negatives"] == 1
    else:
        assert calls(target) == [(3, False)]
        assert state["interventions"] == [first]
        assert state["negatives"] == 0


def test_affirmation_probe_also_calls_the_target() -> None:
    small, target = gens(["A.\n\n", " Yes, it works", " End." + EOS], [" So x is"])
    state = invoke(small, target, config())

    assert text_of(state) == "A.\n\n So x is End."
    assert calls(target) == [(3, False)]
    assert state["interventions"] == [intervention("intervention", "affirmation", 4, 2, " Yes, it works", " So x is")]
    assert state["negatives"] == 0


# choose_large=False: keep the target's stretch iff (p < 0 and t >= 0) or (p > 0 and t < 0).
NEG_PROBE, POS_PROBE = " Wait, hmm no", " Yes, it works"
NEUTRAL_T, POS_T, NEG_T = " So x is", " Yes, so good", " Hmm, wait no"


@pytest.mark.parametrize(
    ("probe", "stretch", "kept"),
    [
        (NEG_PROBE, NEUTRAL_T, "target"),
        (NEG_PROBE, POS_T, "target"),
        (NEG_PROBE, NEG_T, "probe"),
        (POS_PROBE, NEG_T, "target"),
        (POS_PROBE, NEUTRAL_T, "probe"),
        (POS_PROBE, POS_T, "probe"),
    ],
    ids=["p<0,t=0", "p<0,t>0", "p<0,t<0", "p>0,t<0", "p>0,t=0", "p>0,t>0"],
)
def test_choose_large_false_rule(probe: str, stretch: str, kept: str) -> None:
    small, target = gens(["A.\n\n", probe, " End." + EOS], [stretch])
    events: list[dict[str, Any]] = []
    state = invoke(small, target, config(choose_large=False), on_event=events.append)

    kept_text = stretch if kept == "target" else probe
    assert text_of(state) == "A.\n\n" + kept_text + " End."
    author, reason = ("target", "intervention") if kept == "target" else ("small", "probe")
    assert spans(state["spans"])[1] == (author, reason, kept_text, False)
    category = "reflection" if probe == NEG_PROBE else "affirmation"
    assert state["interventions"] == [intervention("intervention", category, 4, 2, probe, stretch, kept=kept)]
    assert state["output_tokens"] == (
        {"small": 4, "target": 3} if kept == "target" else {"small": 2 + 3 + 2, "target": 0}
    )
    assert state["generated_tokens"] == {"small": 7, "target": 3}
    assert state["negatives"] == (1 if kept_text in (NEG_PROBE, NEG_T) else 0)
    # Only the kept stretch is streamed: the events spell out the final text.
    assert "".join(e["text"] for e in events if e["type"] == "text") == text_of(state)
    assert calls(small) == [(100, True), (3, False), (95, True)]


def test_choose_large_false_kept_verification_probe_still_gets_n2_target_tokens() -> None:
    small, target = gens(["A.\n\n", " We check it", " End." + EOS], [NEG_T, " v1 v2 v3 v4"])
    state = invoke(small, target, config(choose_large=False))

    assert text_of(state) == "A.\n\n We check it v1 v2 v3 v4 End."
    assert [i["kind"] for i in state["interventions"]] == ["intervention", "verification"]
    assert state["interventions"][0]["kept"] == "probe"
    assert calls(target) == [(3, False), (4, False)]
    assert traces(target) == ["A.\n\n", "A.\n\n We check it"]


# -- 4a./6. reflection_takeover -----------------------------------------------------------------
def _takeover_small(trace: str, _i: int) -> str:
    return " Wait no no" if trace.endswith("\n\n") else " Step.\n\n"


def _takeover_target(trace: str, _i: int) -> str:
    return " r1 r2 r3 r4 r5 r6 r7 r8" if trace.endswith(RECAP) else " Hmm wait w"


def test_takeovers_grow_recap_and_threshold_up_to_their_caps() -> None:
    small, target = ScriptedGenerator(_takeover_small), ScriptedGenerator(_takeover_target)
    # cycle 1: G I G T3 (10 tokens); cycle 2: G I G I G T5 (17); cycles 3, 4: G I G I G T6 (18 each)
    cfg = config(
        recap_prompt=RECAP,
        recap_tokens=3,
        recap_growth=2,
        recap_tokens_cap=6,
        negative_threshold=1,
        negative_threshold_growth=1,
        negative_threshold_cap=2,
        max_new_tokens=63,
    )
    state = invoke(small, target, cfg)

    assert state["finish_reason"] == "length"
    assert sum(state["output_tokens"].values()) == 63
    recaps = [c["max_tokens"] for c in target.calls if c["trace"].endswith(RECAP)]
    assert recaps == [3, 5, 6, 6]
    assert calls(target) == [(n, False) for n in (3, 3, 3, 3, 5, 3, 3, 6, 3, 3, 6)]
    # Threshold 1, then 2 (capped): one negative intervention, then two, before each recap.
    kinds = [i["kind"] for i in state["interventions"]]
    assert kinds == ["intervention", "takeover"] + ["intervention", "intervention", "takeover"] * 3
    # No probe is written at a boundary that goes to a takeover.
    assert [c[1] for c in calls(small)] == [True, False, True] + [True, False, True, False, True] * 3
    assert state["negatives"] == 0
    assert state["recap_tokens"] == 6
    assert state["negative_threshold"] == 2
    injected = [s for s in state["spans"] if s["author"] == "injected"]
    assert len(injected) == 4
    assert all(
        s == {**s, "reason": "recap_prompt", "text": RECAP, "token_ids": [], "tokenizer": None} for s in injected
    )
    for i, s in enumerate(state["spans"]):
        if s["author"] == "injected":
            assert (state["spans"][i + 1]["author"], state["spans"][i + 1]["reason"]) == ("target", "takeover")
    first = state["interventions"][1]
    head = "".join(s["text"] for s in state["spans"][:4])  # G I G + recap prompt
    assert first == intervention("takeover", "takeover", len(head), 7, None, " r1 r2 r3", target_tokens=3)


def test_takeover_at_threshold_resets_negatives() -> None:
    small, target = gens(["A.\n\n", " Wait no no", " B.\n\n", " C." + EOS], [" Hmm wait w", " r1 r2 r3 r4 r5"])
    cfg = config(recap_prompt=RECAP, recap_tokens=4, negative_threshold=1, negative_threshold_cap=10)
    state = invoke(small, target, cfg)

    assert text_of(state) == "A.\n\n Hmm wait w B.\n\n" + RECAP + " r1 r2 r3 r4 C."
    assert spans(state["spans"]) == [
        ("small", "generate", "A.\n\n", True),
        ("target", "intervention", " Hmm wait w", False),
        ("small", "generate", " B.\n\n", True),
        ("injected", "recap_prompt", RECAP, False),
        ("target", "takeover", " r1 r2 r3 r4", False),
        ("small", "generate", " C.", False),
    ]
    assert calls(target) == [(3, False), (4, False)]
    assert traces(target)[1] == "A.\n\n Hmm wait w B.\n\n" + RECAP
    assert calls(small) == [(100, True), (3, False), (100 - 5, True), (100 - 11, True)]
    assert state["negatives"] == 0
    assert state["recap_tokens"] == 4 + 25
    assert state["negative_threshold"] == 1 + 5


def test_default_recap_prompt_is_injected() -> None:
    small, target = gens(["A.\n\n", " Wait no no", " B.\n\n", " C." + EOS], [" Hmm wait w", " r1 r2" + EOS])
    res = run(small, target, config(negative_threshold=1))
    assert ("injected", "recap_prompt", "Let me check whether there are some wrong steps:", False) in spans(res.spans)
    assert res.finish_reason == "eos"


# -- think prompt -------------------------------------------------------------------------------
@pytest.mark.parametrize("probe", [" So it is", " Wait no no"], ids=["neutral", "reflection"])
def test_think_prompt_is_injected_before_the_probe_and_kept(probe: str) -> None:
    small, target = gens(["A.\n\n", probe, " End." + EOS], [" T1 T2 T3"])
    res = run(small, target, config(think_prompt=" Think:"))

    kept = ("small", "probe", probe, False) if probe == " So it is" else ("target", "intervention", " T1 T2 T3", False)
    assert spans(res.spans) == [
        ("small", "generate", "A.\n\n", True),
        ("injected", "think_prompt", " Think:", False),
        kept,
        ("small", "generate", " End.", False),
    ]
    assert res.text == "A.\n\n Think:" + kept[2] + " End."
    assert traces(small)[1] == "A.\n\n Think:"
    if probe != " So it is":
        assert traces(target) == ["A.\n\n Think:"]
        assert res.interventions[0]["char_position"] == len("A.\n\n Think:")
    assert res.output_tokens["small"] == 2 + (3 if kept[0] == "small" else 0) + 2  # injected text is free


# -- 1. the opening -----------------------------------------------------------------------------
def test_opening_is_written_by_the_target_then_the_small_model_continues() -> None:
    small, target = gens([" Then x." + EOS], ["Open a b c d e"])
    res = run(small, target, config(opening=True, opening_tokens=4))

    assert res.text == "Open a b c Then x."
    assert target.calls == [{"trace": "", "max_tokens": 4, "stop_at_trigger": False}]
    assert small.calls == [{"trace": "Open a b c", "max_tokens": 96, "stop_at_trigger": True}]
    assert spans(res.spans) == [("target", "opening", "Open a b c", False), ("small", "generate", " Then x.", False)]
    assert res.interventions == [intervention("opening", "opening", 0, 0, None, "Open a b c", target_tokens=4)]
    assert res.output_tokens == {"target": 4, "small": 3}  # " Then", " x." and the end of turn


def test_boundary_written_by_the_target_is_not_classified() -> None:
    small, target = gens([" B." + EOS], ["Open a\n\n b"])
    res = run(small, target, config(opening=True, opening_tokens=3))
    assert res.text == "Open a\n\n B."
    assert calls(small) == [(97, True)]  # no probe at the target's boundary


def test_opening_is_capped_by_the_budget() -> None:
    small, target = gens(["never"], ["Open a b c d e"])
    res = run(small, target, config(opening=True, opening_tokens=10, max_new_tokens=2))
    assert res.text == "Open a"
    assert res.finish_reason == "length"
    assert calls(target) == [(2, False)]
    assert small.calls == []


# -- not_reasoning ------------------------------------------------------------------------------
def test_non_reasoning_preset_intervenes_at_every_boundary_without_probes() -> None:
    small, target = gens(["\n\n", " B.\n\n", " C." + EOS], ["Hi there", " T1 T2 T3", " U1 U2 U3"])
    cfg = SpeculativeThinkingConfig.preset("non_reasoning", opening_tokens=2, probe_tokens=3, max_new_tokens=100)
    assert (cfg.not_reasoning, cfg.choose_large, cfg.opening) == (True, True, True)
    res = run(small, target, cfg)

    assert res.text == "Hi there\n\n T1 T2 T3 B.\n\n U1 U2 U3 C."
    assert res.finish_reason == "eos"
    assert calls(small) == [(98, True), (94, True), (89, True)]  # no probe is ever written
    assert calls(target) == [(2, False), (3, False), (3, False)]
    assert res.interventions == [
        intervention("opening", "opening", 0, 0, None, "Hi there", target_tokens=2),
        intervention("intervention", "forced", 10, 3, None, " T1 T2 T3"),
        intervention("intervention", "forced", 24, 8, None, " U1 U2 U3"),
    ]
    assert res.generated_tokens == res.output_tokens == {"target": 8, "small": 1 + 2 + 2}


def test_not_reasoning_without_choose_large_writes_the_probe_and_applies_the_rule() -> None:
    small, target = gens(["A.\n\n", " Wait no no", " B." + EOS], [" So fine now"])
    state = invoke(small, target, config(not_reasoning=True, choose_large=False))

    # p < 0 and t = 0: the target's stretch is kept.
    assert text_of(state) == "A.\n\n So fine now B."
    assert calls(small) == [(100, True), (3, False), (95, True)]
    assert calls(target) == [(3, False)]
    assert state["interventions"] == [intervention("intervention", "reflection", 4, 2, " Wait no no", " So fine now")]
    assert state["negatives"] == 0


def test_not_reasoning_without_choose_large_keeps_a_neutral_probe() -> None:
    small, target = gens(["A.\n\n", " So it is", " B." + EOS], [" Hmm, wait no"])
    state = invoke(small, target, config(not_reasoning=True, choose_large=False))

    assert text_of(state) == "A.\n\n So it is B."
    assert calls(small) == [(100, True), (3, False), (95, True)]
    assert calls(target) == [(3, False)]
    assert state["interventions"] == [
        intervention("intervention", "neutral", 4, 2, " So it is", " Hmm, wait no", kept="probe")
    ]
    assert state["negatives"] == 0


# -- end of turn --------------------------------------------------------------------------------
def test_end_of_turn_by_the_small_model() -> None:
    small, target = gens(["All done." + EOS], ["unused"])
    res = run(small, target, config())
    assert (res.text, res.finish_reason, res.output_tokens) == ("All done.", "eos", {"small": 3})
    assert target.calls == []


def test_end_of_turn_by_the_target_inside_an_intervention() -> None:
    small, target = gens(["A.\n\n", " Wait no no", " never"], [" The end." + EOS])
    res = run(small, target, config(probe_tokens=4))
    assert (res.text, res.finish_reason) == ("A.\n\n The end.", "eos")
    assert len(small.calls) == 2
    assert res.output_tokens == {"small": 2, "target": 3}


def test_end_of_turn_by_the_target_inside_the_opening() -> None:
    small, target = gens(["never"], ["Short." + EOS])
    res = run(small, target, config(opening=True, opening_tokens=5))
    assert (res.text, res.finish_reason) == ("Short.", "eos")
    assert small.calls == []


def test_end_of_turn_by_the_target_inside_a_takeover() -> None:
    small, target = gens(["A.\n\n", " Wait no no", " B.\n\n", " never"], [" Hmm wait w", " Fine." + EOS])
    res = run(small, target, config(negative_threshold=1, recap_prompt=RECAP))
    assert (res.text, res.finish_reason) == ("A.\n\n Hmm wait w B.\n\n" + RECAP + " Fine.", "eos")
    assert len(small.calls) == 3
    assert res.interventions[-1]["kind"] == "takeover"


def test_end_of_turn_by_the_target_inside_a_verification() -> None:
    small, target = gens(["A.\n\n", " Let us verify", " never"], [" We check it", " Fine." + EOS])
    res = run(small, target, config())
    assert (res.text, res.finish_reason) == ("A.\n\n We check it Fine.", "eos")
    assert len(small.calls) == 2


def test_end_of_turn_inside_a_kept_probe_ends_the_run() -> None:
    small, target = gens(["A.\n\n", " Yes, done." + EOS, " More stuff here." + EOS], [" So x is"])
    res = run(small, target, config(probe_tokens=4, choose_large=False))
    assert res.interventions[0]["kept"] == "probe"
    assert (res.text, res.finish_reason) == ("A.\n\n Yes, done.", "eos")
    assert len(small.calls) == 2  # the small model is not asked to write after its end of turn


def test_stop_string_inside_a_kept_probe_ends_the_run() -> None:
    small, target = gens(["A.\n\n", " Yes STOP no", " More.\n\n", " x y z"], [" So x is"])
    res = run(small, target, config(choose_large=False, max_new_tokens=30), stop=["STOP"])
    assert (res.text, res.finish_reason) == ("A.\n\n Yes ", "stop")  # this part holds (cut in from_state)
    assert len(small.calls) == 2
    assert res.output_tokens == {"small": 2 + 2, "target": 0}


# -- segment cap --------------------------------------------------------------------------------
def test_segment_cap_splits_a_long_small_stretch() -> None:
    small, target = gens(["a b c d", " e f g h", " i." + EOS], ["unused"])
    res = run(small, target, config(segment_cap=4))
    assert res.text == "a b c d e f g h i."
    assert calls(small) == [(4, True), (4, True), (4, True)]
    assert [s[1] for s in spans(res.spans)] == ["generate"] * 3


# -- the budget is never exceeded ---------------------------------------------------------------
@dataclass
class BudgetChecked:
    """Wraps a scripted generator and records, for every call, max_tokens and what the budget left."""

    inner: ScriptedGenerator
    budget: int
    name: str = "checked"
    tokenizer_key: str = "scripted-words"
    asked: list[tuple[int, int]] = field(default_factory=list)

    def start(self, messages: Sequence[Mapping[str, Any]]) -> _CheckedSession:
        return _CheckedSession(self, self.inner.start(messages))

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)


class _CheckedSession:
    def __init__(self, owner: BudgetChecked, inner: Any) -> None:
        self.owner, self.inner = owner, inner
        self.prompt_tokens, self.tokenizer_key = inner.prompt_tokens, inner.tokenizer_key

    def generate(self, trace: Sequence[Span], request: GenerateRequest) -> Segment:
        used = sum(len(s["token_ids"]) for s in trace)  # injected spans carry no tokens
        self.owner.asked.append((request.max_tokens, self.owner.budget - used))
        return self.inner.generate(trace, request)

    def close(self) -> None:
        self.inner.close()


PAD = " pad" * 40  # long enough that no call runs out of script before its max_tokens
_PROBES = (" Wait no no more", " We check it now", " So then\n\n next", " Yes it is", "\n\n\n\n x", " So it is")
_STRETCHES = (" Hmm wait a b", " We check it c", " Fine so far d", " more words e f g h")
_GRAPH = build_graph()


def _budget_small(ends: bool) -> Callable[[str, int], str]:
    """Cycles through the probe kinds at boundaries; alternates a long and a short step elsewhere."""
    count = {"probe": 0, "step": 0}

    def script(trace: str, i: int) -> str:
        if ends and i >= 9:
            return " Done." + EOS
        kind = "probe" if trace.endswith(("\n\n", " Think:")) else "step"
        n = count[kind]
        count[kind] += 1
        if kind == "probe":
            return _PROBES[n % len(_PROBES)] + PAD
        return (" A longer line of words.\n\n" if n % 3 == 0 else " Go.\n\n") + PAD

    return script


def _budget_target(trace: str, i: int) -> str:
    return (" r1 r2 r3 r4 r5 r6 r7" if trace.endswith(RECAP) else _STRETCHES[i % len(_STRETCHES)]) + PAD


BUDGET_CONFIGS = {
    "reasoning": {"recap_tokens": 3, "recap_growth": 2, "recap_tokens_cap": 6, "negative_threshold": 1},
    "choose_small": {"choose_large": False, "negative_threshold": 2},
    "non_reasoning": {"not_reasoning": True, "opening": True, "opening_tokens": 3},
    "non_reasoning_choose_small": {"not_reasoning": True, "choose_large": False},
    "think_prompt": {"think_prompt": " Think:", "probe_tokens": 5, "verify_tokens": 2, "negative_threshold": 2},
    "segment_cap": {"segment_cap": 2, "opening": True, "opening_tokens": 5, "verify_tokens": 7},
}


BUDGET_KINDS = {  # interventions the loop must meet, so that every path is under the budget check
    "reasoning": {"intervention", "takeover"},
    "choose_small": {"intervention", "verification", "takeover"},
    "non_reasoning": {"opening", "intervention", "verification"},
    "non_reasoning_choose_small": {"intervention", "verification"},
    "think_prompt": {"intervention", "verification", "takeover"},
    "segment_cap": {"opening", "intervention", "verification"},
}


@pytest.mark.parametrize("name", list(BUDGET_CONFIGS))
def test_budget_is_never_exceeded(name: str) -> None:
    seen: set[str] = set()
    for budget in range(1, 41):
        ends = budget % 2 == 0  # even budgets: the small model ends its turn after a while
        small = BudgetChecked(ScriptedGenerator(_budget_small(ends)), budget)
        target = BudgetChecked(ScriptedGenerator(_budget_target), budget)
        cfg = config(recap_prompt=RECAP, max_new_tokens=budget, **BUDGET_CONFIGS[name])
        state = invoke(small, target, cfg, graph=_GRAPH)
        used = sum(state["output_tokens"].values())
        seen |= {i["kind"] for i in state["interventions"]}

        where = f"{name} budget={budget}"
        assert used <= budget, where
        assert used == kept_tokens(state["spans"]), where
        assert small.asked or target.asked, where
        for asked, left in small.asked + target.asked:
            assert 1 <= asked <= left, where
        if state["finish_reason"] == "length":
            assert used == budget, where
        else:
            assert (state["finish_reason"], ends) == ("eos", True), where
        if not ends:
            assert state["finish_reason"] == "length", where
    assert seen >= BUDGET_KINDS[name]


@pytest.mark.parametrize("budget", [1, 2, 5, 9])
def test_run_override_of_the_budget(budget: int) -> None:
    small, target = gens(["A b c d.\n\n", " Wait no no" + PAD], [" Hmm wait w" + PAD])
    thinker = SpeculativeThinker(small, target, config())
    res = thinker.run("question", max_new_tokens=budget)
    assert res.num_output_tokens == budget
    assert res.finish_reason == "length"
    assert res.text == "".join(scripted_tokens("A b c d.\n\n Hmm wait w Wait no no" + PAD)[:budget])
    assert [c["max_tokens"] for c in small.calls][:1] == [budget]


# -- time budget --------------------------------------------------------------------------------
def test_deadline_already_passed_returns_nothing_with_finish_time() -> None:
    small, target = gens(["A b.\n\n"], ["unused"])
    state = invoke(small, target, config(), deadline=time.monotonic() - 1)
    assert state["finish_reason"] == "time"
    assert text_of(state) == ""
    assert len(small.calls) == 1
    assert target.calls == []


def test_deadline_passed_during_the_opening() -> None:
    small, target = gens(["never"], ["Open a b"])
    state = invoke(small, target, config(opening=True), deadline=time.monotonic() - 1)
    assert (state["finish_reason"], text_of(state)) == ("time", "")
    assert small.calls == []


def _sleepy(texts: Sequence[str], sleep_on: int, seconds: float) -> ScriptedGenerator:
    def script(_trace: str, i: int) -> str:
        if i == sleep_on:
            time.sleep(seconds)
        return texts[min(i, len(texts) - 1)]

    return ScriptedGenerator(script)


def test_time_budget_hit_while_the_small_model_probes() -> None:
    small = _sleepy(["A b.\n\n", " Wait no no", " never"], sleep_on=1, seconds=0.2)
    target = ScriptedGenerator.from_responses([" T1 T2 T3"])
    res = run(small, target, config(time_budget=0.1))
    assert (res.text, res.finish_reason) == ("A b.\n\n", "time")
    assert target.calls == []  # a probe cut by the clock is not sent to the target


def test_time_budget_hit_while_the_target_intervenes() -> None:
    small = ScriptedGenerator.from_responses(["A b.\n\n", " Wait no no", " never"])
    target = _sleepy([" T1 T2 T3"], sleep_on=0, seconds=0.2)
    res = run(small, target, config(time_budget=0.1))
    assert (res.text, res.finish_reason) == ("A b.\n\n", "time")
    assert len(small.calls) == 2


def test_time_budget_hit_between_steps_is_detected_at_the_boundary() -> None:
    small, target = gens(["A b.\n\n", " never"], ["unused"])

    def slow_consumer(event: dict[str, Any]) -> None:
        if event.get("text") == "\n\n":
            time.sleep(0.2)

    res = run(small, target, config(time_budget=0.1), on_event=slow_consumer)
    assert (res.text, res.finish_reason) == ("A b.\n\n", "time")
    assert len(small.calls) == 1  # the boundary's token was written, then detect_boundary saw the clock


# -- user stop strings --------------------------------------------------------------------------
def test_stop_string_cuts_the_text_before_the_match() -> None:
    small, target = gens(["A b STOP c d.\n\n", " never"], ["unused"])
    res = run(small, target, config(), stop=["STOP"])
    assert (res.text, res.finish_reason) == ("A b ", "stop")
    assert len(small.calls) == 1


def test_stop_string_across_spans_and_models() -> None:
    small, target = gens(["Alpha.\n\n", " Wait no no", " never"], ["END here now"])
    res = run(small, target, config(), stop=["\n\nEND"])
    assert (res.text, res.finish_reason) == ("Alpha.", "stop")
    assert len(small.calls) == 2


def test_stop_string_in_a_discarded_probe_does_not_stop() -> None:
    small, target = gens(["A.\n\n", " Wait STOP no", " B." + EOS], [" T1 T2 T3"])
    res = run(small, target, config(), stop=["STOP"])
    assert (res.text, res.finish_reason) == ("A.\n\n T1 T2 T3 B.", "eos")


def test_empty_stop_string_is_rejected() -> None:
    small, target = gens(["A"], ["B"])
    with pytest.raises(ValueError, match="stop strings"):
        run(small, target, config(), stop=[""])


# -- events -------------------------------------------------------------------------------------
def _merge(pieces: Sequence[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    for author, reason, text in pieces:
        if not text:
            continue
        if out and out[-1][:2] == (author, reason):
            out[-1] = (author, reason, out[-1][2] + text)
        else:
            out.append((author, reason, text))
    return out


def _rich_run_gens() -> tuple[ScriptedGenerator, ScriptedGenerator]:
    small = [" A.\n\n", " So x\n\n y", " Wait no no", " B.\n\n", " Let us verify", " C.\n\n", " D." + EOS]
    target = ["Open", " Hmm wait w", " We check it", " v1 v2 v3 v4", " r1 r2 r3"]
    return gens(small, target)


RICH_CONFIG = {
    "opening": True,
    "opening_tokens": 1,
    "think_prompt": " Hm:",
    "negative_threshold": 2,
    "recap_prompt": RECAP,
    "recap_tokens": 3,
}


@pytest.mark.parametrize("choose_large", [True, False])
def test_events_spell_the_final_text_with_authors_and_interventions(choose_large: bool) -> None:
    small, target = _rich_run_gens()
    events: list[dict[str, Any]] = []
    res = run(small, target, config(choose_large=choose_large, **RICH_CONFIG), on_event=events.append)

    assert res.finish_reason == "eos"
    assert {e["type"] for e in events} == {"text", "intervention"}
    texts = [e for e in events if e["type"] == "text"]
    assert "".join(e["text"] for e in texts) == res.text
    assert _merge([(e["author"], e["reason"], e["text"]) for e in texts]) == _merge(
        [(s["author"], s["reason"], s["text"]) for s in res.spans]
    )
    assert [{k: v for k, v in e.items() if k != "type"} for e in events if e["type"] == "intervention"] == (
        res.interventions
    )
    assert [(i["kind"], i["kept"]) for i in res.interventions] == [
        ("opening", "target"),
        ("intervention", "target" if choose_large else "probe"),
        ("intervention", "target" if choose_large else "probe"),
        ("verification", "target"),
        ("takeover", "target"),
    ]
    reflection, verification = (" Hmm wait w", " We check it") if choose_large else (" Wait no no", " Let us verify")
    assert res.text == (
        f"Open A.\n\n Hm: So x\n\n Hm:{reflection} B.\n\n Hm:{verification} v1 v2 v3 v4 C.\n\n{RECAP} r1 r2 r3 D."
    )
    assert {s["author"] for s in res.spans} == {"small", "target", "injected"}
    if not choose_large:  # the target's discarded stretches were never streamed
        assert " Hmm wait w" not in "".join(e["text"] for e in texts)


def test_stream_custom_mode_yields_the_same_events() -> None:
    small, target = _rich_run_gens()
    cfg = config(**RICH_CONFIG)
    events: list[dict[str, Any]] = []
    invoke(small, target, cfg, on_event=events.append)

    small, target = _rich_run_gens()
    context = SpecContext.open(small, target, MESSAGES, cfg)
    streamed = list(
        build_graph().stream(
            {"messages": MESSAGES},
            context=context,
            config={"recursion_limit": recursion_limit(cfg.max_new_tokens)},
            stream_mode="custom",
        )
    )
    assert streamed == events


# -- serialization, checkpointing, drawing, async -----------------------------------------------
def test_final_state_is_json_serializable() -> None:
    small, target = _rich_run_gens()
    state = invoke(small, target, config(**RICH_CONFIG))
    assert json.loads(json.dumps(state)) == state
    assert state["messages"] == MESSAGES


def test_works_with_an_in_memory_checkpointer() -> None:
    small, target = _rich_run_gens()
    graph = build_graph(checkpointer=InMemorySaver())
    state = invoke(small, target, config(**RICH_CONFIG), graph=graph, thread_id="t1")

    saved = graph.get_state({"configurable": {"thread_id": "t1"}})
    assert saved.values == state
    assert saved.next == ()
    assert len(list(graph.get_state_history({"configurable": {"thread_id": "t1"}}))) > 5


def test_thinker_with_checkpointer_and_thread_id() -> None:
    small, target = _rich_run_gens()
    saver = InMemorySaver()
    thinker = SpeculativeThinker(small, target, config(**RICH_CONFIG), checkpointer=saver)
    res = thinker.run("question", thread_id="run-1")
    saved = thinker.graph.get_state({"configurable": {"thread_id": "run-1"}}).values
    assert "".join(s["text"] for s in saved["spans"]) == res.text
    assert saved["finish_reason"] == res.finish_reason == "eos"
    json.dumps(saved)


def test_a_finished_thread_is_not_reused_for_a_new_run() -> None:
    small, target = gens(["A b.\n\n", " So it is", " End." + EOS], [" T"])
    thinker = SpeculativeThinker(small, target, config(), checkpointer=InMemorySaver())
    first = thinker.run("question one", thread_id="same")
    assert first.text == "A b.\n\n So it is End."
    with pytest.raises(ValueError, match="already holds a run"):
        thinker.run("question two", thread_id="same")
    assert thinker.resume("same").text == first.text  # a finished thread resumes to its result
    thinker.small, thinker.target = gens(["A b.\n\n", " So it is", " End." + EOS], [" T"])
    second = thinker.run("question two", thread_id="other")
    assert second.output_tokens == first.output_tokens


def test_thread_id_needs_a_checkpointer() -> None:
    small, target = gens(["A.<eos>"], [" T"])
    with pytest.raises(ValueError, match="needs a checkpointer"):
        SpeculativeThinker(small, target, config()).run("q", thread_id="t")


def _mermaid_parts(mermaid: str) -> tuple[set[str], set[tuple[str, str, str]]]:
    nodes = set(re.findall(r"^\s*(\w+)\(", mermaid, flags=re.M)) - {"__start__", "__end__"}
    labelled = set(re.findall(r"^\s*(\w+) -\. &nbsp;(\w+)&nbsp; \.-> (\w+);", mermaid, flags=re.M))
    plain = {(a, "", b) for a, b in re.findall(r"^\s*(\w+) --> (\w+);", mermaid, flags=re.M)}
    return nodes, labelled | plain


def test_mermaid_drawing_has_the_nodes_and_labelled_edges() -> None:
    nodes, edges = _mermaid_parts(build_graph().get_graph().draw_mermaid())
    assert nodes == {
        "small_generate",
        "detect_boundary",
        "classify_step",
        "target_intervene",
        "reflection_takeover",
        "finalize",
    }
    assert edges == {
        ("__start__", "start", "small_generate"),
        ("__start__", "opening", "target_intervene"),
        ("__start__", "check", "classify_step"),
        ("detect_boundary", "finished", "finalize"),
        ("detect_boundary", "boundary", "classify_step"),
        ("detect_boundary", "continue", "small_generate"),
        ("classify_step", "keep", "detect_boundary"),
        ("classify_step", "takeover", "reflection_takeover"),
        ("classify_step", "intervene", "target_intervene"),
        ("small_generate", "", "detect_boundary"),
        ("target_intervene", "", "detect_boundary"),
        ("reflection_takeover", "", "detect_boundary"),
        ("finalize", "", "__end__"),
    }


def _comparable(res: SpecResult) -> dict[str, Any]:
    out = res.to_dict()
    for key in ("wall_seconds", "model_seconds", "tokens_per_second"):
        out.pop(key)
    return out


async def test_arun_gives_the_same_result_as_run() -> None:
    cfg = config(**RICH_CONFIG)
    small, target = _rich_run_gens()
    expected = SpeculativeThinker(small, target, cfg).run("question")
    small, target = _rich_run_gens()
    got = await SpeculativeThinker(small, target, cfg).arun("question")
    assert _comparable(got) == _comparable(expected)
    assert got.finish_reason == "eos"


def test_result_counts_and_prompt_tokens() -> None:
    small, target = _rich_run_gens()
    res = run(small, target, config(**RICH_CONFIG))
    assert res.prompt_tokens == {"small": 1, "target": 1}
    assert res.num_output_tokens == kept_tokens(res.spans)
    assert res.output_tokens["small"] + res.output_tokens["target"] == res.num_output_tokens
    assert res.generated_tokens["small"] >= res.output_tokens["small"]
    assert 0 < res.target_share < 1
    json.dumps(res.to_dict())
