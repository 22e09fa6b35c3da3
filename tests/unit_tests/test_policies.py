"""Trigger policies: their decisions on scripted models with given probabilities, and their settings.

Scripted tokens are word-like (``" word"``, ``"\\n\\n"``, ``"<eos>"``); a scripted model's
``confidence`` gives the top-1 probability of the position each token is written from (1.0
elsewhere), with the rest of the mass on one other token, so entropies are binary entropies.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from pydantic import ValidationError

from spec_graph import ScriptedGenerator, SpeculativeThinker, SpeculativeThinkingConfig
from spec_graph.chat_model import SpeculativeThinkingChatModel
from spec_graph.generators import EOS, GenerateRequest, TokenStop
from spec_graph.generators.scripted import scripted_tokens, token_distribution
from spec_graph.policies import (
    Action,
    AlwaysPolicy,
    KeywordPolicy,
    Look,
    NeverPolicy,
    Policy,
    ProbeView,
    RegexPolicy,
    Step,
    TriggerPolicy,
    UncertaintyPolicy,
    build_policy,
)
from spec_graph.policy_config import RegexPolicyConfig, UncertaintyPolicyConfig, parse_policy

UNSURE_13 = {"13": 0.3, "13.": 0.3}
"""The small model is unsure where it writes 13 (" 13" and " 13." are tokens)."""
SMALL_DOC = "We have 3 boxes of 4 apples.\n\nSo 3 * 4 = 13 apples.\n\nThe answer is 13." + EOS
TARGET_DOC = "We have 3 boxes of 4 apples.\n\nSo 3 * 4 = 12 apples.\n\nThe answer is 12." + EOS


def cfg(policy: Any = "keyword", **overrides: Any) -> SpeculativeThinkingConfig:
    base: dict[str, Any] = {"probe_tokens": 3, "max_new_tokens": 100, "temperature": 0.0, "policy": policy}
    return SpeculativeThinkingConfig(**{**base, **overrides})


def small_script(trace: str, _call: int) -> str:
    """The small model follows the target's text but writes 13 for 12 (its SMALL_DOC from scratch)."""
    if TARGET_DOC.startswith(trace):
        return TARGET_DOC[len(trace) :].replace("12", "13")
    if SMALL_DOC.startswith(trace):
        return SMALL_DOC[len(trace) :]
    return " x" * 64


def pair(confidence: Any = None) -> tuple[ScriptedGenerator, ScriptedGenerator]:
    small = ScriptedGenerator(small_script, name="small", confidence=confidence)
    target = ScriptedGenerator.from_document(TARGET_DOC, name="target")
    return small, target


def run(policy: Any, confidence: Mapping[str, float] | None = None, **overrides: Any) -> Any:
    small, target = pair(confidence)
    return SpeculativeThinker(small, target, cfg(policy, **overrides)).run("question")


def strip_eos(doc: str) -> str:
    return doc.removesuffix(EOS)


# -- settings ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("short", "expected"),
    [
        ("keyword", {"kind": "keyword"}),
        ("never", {"kind": "never"}),
        ("always", {"kind": "always"}),
        ("uncertainty:0.4", {"kind": "uncertainty", "threshold": 0.4, "measure": "top1", "scope": "token"}),
        ("entropy:2.5", {"kind": "uncertainty", "threshold": 2.5, "measure": "entropy"}),
        ("regex:^\\s*\\d", {"kind": "regex", "patterns": ("^\\s*\\d",)}),
    ],
)
def test_short_policy_names(short: str, expected: dict[str, Any]) -> None:
    dumped = parse_policy(short).model_dump()
    assert {k: dumped[k] for k in expected} == expected
    assert SpeculativeThinkingConfig(policy=short).policy == parse_policy(short)


def test_default_policy_is_the_papers_keyword_rule() -> None:
    config = SpeculativeThinkingConfig()
    assert config.policy.kind == "keyword"
    assert isinstance(build_policy(config.policy), KeywordPolicy)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("uncertainty:0", "strictly between 0 and 1"),
        ("uncertainty:1", "strictly between 0 and 1"),
        ("uncertainty:1.5", "strictly between 0 and 1"),
        ("uncertainty:-0.2", "strictly between 0 and 1"),
        ("entropy:0", "must be > 0"),
        ("entropy:-1", "must be > 0"),
        ("uncertainty:high", "unknown policy"),
        ("sometimes", "unknown policy"),
        ("regex:(", "invalid regex"),
        ({"kind": "regex", "patterns": []}, "at least one pattern"),
        ({"kind": "uncertainty", "threshold": 0.5, "stretch_tokens": 0}, "greater than or equal to 1"),
        ({"kind": "uncertainty", "threshold": 0.5, "scope": "line"}, "scope"),
        ({"kind": "bogus"}, "kind"),
        ({"kind": "uncertainty"}, "threshold"),
    ],
)
def test_bad_policy_settings_are_clear_errors(value: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SpeculativeThinkingConfig(policy=value)


def test_policy_settings_round_trip_through_yaml(tmp_path: Any) -> None:
    config = SpeculativeThinkingConfig(policy={"kind": "uncertainty", "threshold": 2.0, "measure": "entropy"})
    path = tmp_path / "config.yaml"
    config.to_yaml(path)
    again = SpeculativeThinkingConfig.from_yaml(path)
    assert again == config
    assert isinstance(again.policy, UncertaintyPolicyConfig)


def test_policy_classes_validate_their_arguments() -> None:
    with pytest.raises(ValidationError, match="strictly between"):
        UncertaintyPolicy(1.2)
    with pytest.raises(ValidationError, match="invalid regex"):
        RegexPolicy(["[a-"])
    with pytest.raises(ValueError, match="at least one token"):
        Action.intervene(0, "x")
    with pytest.raises(TypeError, match="not a policy"):
        build_policy(42)


def test_chat_model_takes_a_policy_and_validates_it() -> None:
    llm = SpeculativeThinkingChatModel(small_model="a", target_model="b", policy="uncertainty:0.3")
    assert llm.resolved_config.policy == UncertaintyPolicyConfig(threshold=0.3)
    llm = SpeculativeThinkingChatModel(small_model="a", target_model="b", config={"policy": "never"})
    assert llm.resolved_config.policy.kind == "never"
    with pytest.raises(ValidationError, match="strictly between 0 and 1"):
        SpeculativeThinkingChatModel(small_model="a", target_model="b", policy="uncertainty:2")
    with pytest.raises(ValidationError, match="must be > 0"):
        SpeculativeThinkingChatModel(
            small_model="a", target_model="b", policy={"kind": "uncertainty", "threshold": -1, "measure": "entropy"}
        )


def test_chat_model_runs_with_a_policy_and_per_call_override() -> None:
    small, target = pair({"13": 0.2})
    llm = SpeculativeThinkingChatModel(small_model=small, target_model=target, policy="uncertainty:0.5", temperature=0)
    assert (
        llm.invoke("question").content == "We have 3 boxes of 4 apples.\n\nSo 3 * 4 = 12 apples.\n\nThe answer is 12."
    )
    assert llm.invoke("question", policy="never").content == strip_eos(SMALL_DOC)


def test_chat_model_takes_a_policy_object() -> None:
    class FirstBoundaryToTarget(Policy):
        name = "first"

        def decide(self, step: Step) -> Action:
            return Action.intervene(100, "mine") if step.output_tokens.get("target", 0) == 0 else Action.keep()

    small, target = pair()
    llm = SpeculativeThinkingChatModel(
        small_model=small, target_model=target, policy=FirstBoundaryToTarget(), temperature=0
    )
    msg = llm.invoke("question")
    assert msg.content == strip_eos(TARGET_DOC)
    assert msg.response_metadata["speculative_thinking"]["interventions"] == {"mine": 1}


# -- never / always ----------------------------------------------------------------------------
def test_never_writes_exactly_the_small_model() -> None:
    result = run("never", {"13": 0.01})
    assert result.text == strip_eos(SMALL_DOC)
    assert result.output_tokens == {"small": len(scripted_tokens(SMALL_DOC))}
    assert result.interventions == []


def test_always_writes_exactly_the_target_even_with_an_opening_configured() -> None:
    small, target = pair()
    result = SpeculativeThinker(small, target, cfg("always", opening=True, opening_tokens=2)).run("question")
    assert result.text == strip_eos(TARGET_DOC)
    assert result.output_tokens == {"target": len(scripted_tokens(TARGET_DOC))}
    assert small.calls == []  # the small model never ran
    assert [i["category"] for i in result.interventions] == ["always"]


# -- uncertainty -------------------------------------------------------------------------------
def test_uncertainty_stops_before_the_unsure_token_and_the_target_writes_a_stretch() -> None:
    result = run({"kind": "uncertainty", "threshold": 0.5, "stretch_tokens": 2}, UNSURE_13)
    # The small model stops before " 13" (p = 0.3 < 0.5); the target writes " 12 apples."
    # (2 tokens: " 12", " apples."); the small model goes on from there.
    [first, second] = result.interventions
    assert first["category"] == "uncertain"
    assert first["target_text"] == " 12 apples."
    assert first["probe_text"] is None
    assert result.text.startswith("We have 3 boxes of 4 apples.\n\nSo 3 * 4 = 12 apples.")
    # ... and once more before the final " 13." (also p = 0.3 in the small model's script).
    assert second["target_text"].startswith(" 12")
    assert result.text.endswith("The answer is 12.")


def test_uncertainty_threshold_decides_which_tokens_are_flagged() -> None:
    confident = run("uncertainty:0.2", UNSURE_13)  # 0.3 >= 0.2: nothing flagged
    assert confident.text == strip_eos(SMALL_DOC)
    assert confident.interventions == []


def test_uncertainty_entropy_measure() -> None:
    top1, entropy, _ = token_distribution(0.3)
    assert entropy == pytest.approx(-(0.3 * math.log(0.3) + 0.7 * math.log(0.7)))
    assert top1 == 0.3
    flagged = run({"kind": "uncertainty", "measure": "entropy", "threshold": 0.5}, UNSURE_13)  # H = 0.61 > 0.5
    # The target's 8-token stretch from " 12" reaches the end of its document.
    assert [i["category"] for i in flagged.interventions] == ["uncertain"]
    assert flagged.text == strip_eos(TARGET_DOC)
    calm = run({"kind": "uncertainty", "measure": "entropy", "threshold": 0.7}, UNSURE_13)
    assert calm.interventions == []


def test_uncertainty_min_small_tokens_lets_the_small_model_write_first() -> None:
    # Every small token is unsure: without min_small_tokens the target writes everything.
    everything = run({"kind": "uncertainty", "threshold": 0.5, "stretch_tokens": 1}, lambda _t: 0.1)  # type: ignore[arg-type]
    assert everything.output_tokens.get("small", 0) == 0
    assert everything.text == strip_eos(TARGET_DOC)
    # With min_small_tokens=1 the small model writes one token after each target token.
    mixed = run({"kind": "uncertainty", "threshold": 0.5, "stretch_tokens": 1, "min_small_tokens": 1}, lambda _t: 0.1)  # type: ignore[arg-type]
    assert mixed.output_tokens["small"] > 0
    assert mixed.output_tokens["target"] > 0


def test_uncertainty_over_the_probe() -> None:
    settings = {"kind": "uncertainty", "threshold": 0.6, "scope": "probe", "stretch_tokens": 3}
    # The probe after the first boundary is "So 3 *" (all 1.0) then " 4 = 13": mean 1.0 -> kept;
    # make " So" unsure enough to pull the mean of the first probe below 0.6.
    result = run(settings, {"So": 0.1, "3": 0.2})
    [item] = [i for i in result.interventions if i["kind"] == "intervention"][:1]
    assert item["category"] == "uncertain"
    assert item["probe_text"] == "So 3 *"
    assert item["target_text"] == "So 3 *"
    calm = run(settings, UNSURE_13)  # probes "So 3 *" (mean 1.0), "The answer is" (1.0): kept
    assert calm.interventions == []
    assert calm.text == strip_eos(SMALL_DOC)


# -- regex -------------------------------------------------------------------------------------
def test_regex_hands_equation_lines_to_the_target() -> None:
    result = run({"kind": "regex", "patterns": [r"\d\s*\*"], "stretch_tokens": 6})
    [item] = result.interventions
    assert item["category"] == "pattern"
    assert item["probe_text"] == "So 3 *"[: len(item["probe_text"])]
    assert "12 apples" in result.text


def test_regex_without_a_match_keeps_the_small_model() -> None:
    result = run("regex:banana")
    assert result.text == strip_eos(SMALL_DOC)
    assert result.interventions == []


def test_regex_ignore_case() -> None:
    assert run({"kind": "regex", "patterns": ["^SO"], "ignore_case": True}).interventions
    assert not run({"kind": "regex", "patterns": ["^SO"]}).interventions


# -- keyword (the paper) and custom policies ---------------------------------------------------
def test_keyword_policy_decisions_on_probes() -> None:
    policy = KeywordPolicy()
    config = cfg()

    def step(probe: str, negatives: int = 0) -> Step:
        return Step(
            trace="",
            boundary="trigger",
            negatives=negatives,
            negative_threshold=config.negative_threshold,
            output_tokens={},
            remaining=10,
            config=config,
            probe=ProbeView(probe, []),
        )

    assert policy.decide(step(" Wait, that is")).kind == "intervene"
    assert policy.decide(step(" Wait, that is")).category == "reflection"
    assert policy.decide(step(" The final answer")).category == "affirmation"
    assert policy.decide(step(" So we add")).kind == "keep"
    assert policy.decide(step(" So we add", negatives=99)).kind == "takeover"
    # the probe is asked for only when the decision needs one
    assert policy.look(step("")) == Look(config.probe_tokens)
    assert policy.look(step("", negatives=99)) is None


def test_a_custom_policy_can_ask_for_the_recap_takeover() -> None:
    class RecapAtFirstBoundary(Policy):
        name = "recap"

        def decide(self, step: Step) -> Action:
            return Action.takeover() if step.output_tokens.get("target", 0) == 0 else Action.keep()

    small, target = pair()
    result = SpeculativeThinker(small, target, cfg(), policy=RecapAtFirstBoundary()).run("question")
    assert [i["kind"] for i in result.interventions] == ["takeover"]
    assert isinstance(RecapAtFirstBoundary(), TriggerPolicy)


def test_the_probe_a_policy_asks_for_is_written_once_per_step_with_probabilities() -> None:
    seen: list[Any] = []

    class Peek(Policy):
        name = "peek"

        def look(self, step: Step) -> Look | None:
            assert step.probe is None  # asked before the probe is written
            return Look(3, logprobs=True)

        def decide(self, step: Step) -> Action:
            seen.append(step.probe)
            return Action.keep()

    small, target = pair({"13": 0.25})
    result = SpeculativeThinker(small, target, cfg(), policy=Peek()).run("question")
    assert result.text == strip_eos(SMALL_DOC)
    assert seen[0].text == "So 3 *"
    assert seen[0].top1_probs == [1.0, 1.0, 1.0]
    assert seen[1].text == "The answer is"
    probes = [c for c in small.calls if c["max_tokens"] == 3]
    assert len(probes) == len(seen)


def test_a_policy_with_a_token_condition_needs_a_generator_that_can_stop_on_one() -> None:
    class NoTokenStop:
        """A scripted generator whose sessions cannot stop on a token condition (like a served model)."""

        name = "plain"
        tokenizer_key = "scripted-words"

        def __init__(self) -> None:
            self.inner = ScriptedGenerator.from_document(SMALL_DOC)

        def start(self, messages: Sequence[Mapping[str, Any]]) -> Any:
            session = self.inner.start(messages)

            class Session:
                prompt_tokens = session.prompt_tokens
                tokenizer_key = session.tokenizer_key
                generate = staticmethod(session.generate)
                close = staticmethod(session.close)

            return Session()

        def count_tokens(self, text: str) -> int:
            return self.inner.count_tokens(text)

    small = NoTokenStop()
    target = ScriptedGenerator.from_document(TARGET_DOC)
    with pytest.raises(ValueError, match="scope='probe'"):
        SpeculativeThinker(small, target, cfg("uncertainty:0.5")).run("question")
    assert small.inner.calls == [] and target.calls == []
    # The probe scope works with it.
    assert SpeculativeThinker(small, target, cfg({"kind": "uncertainty", "threshold": 0.5, "scope": "probe"})).run("q")


def test_scripted_token_stop_and_statistics() -> None:
    gen = ScriptedGenerator.from_responses([" a b c d"], confidence={"c": 0.4})
    session = gen.start([{"role": "user", "content": "q"}])
    seg = session.generate([], GenerateRequest(max_tokens=10, logprobs=True, token_stop=TokenStop("top1", 0.5)))
    assert seg.text == " a b"
    assert seg.finish_reason == "uncertain"
    assert seg.top1_probs == [1.0, 1.0]
    assert seg.entropies == [0.0, 0.0]
    seg = session.generate([], GenerateRequest(max_tokens=10, logprobs=True))
    assert seg.top1_probs == [1.0, 1.0, 0.4, 1.0]
    assert seg.logprobs is not None and seg.logprobs[2] == pytest.approx(math.log(0.4))


def test_policy_reprs_and_names() -> None:
    assert "0.5" in repr(UncertaintyPolicy(0.5))
    assert "x" in repr(RegexPolicy(["x"]))
    assert {NeverPolicy.name, AlwaysPolicy.name, KeywordPolicy.name} == {"never", "always", "keyword"}
    assert isinstance(build_policy(RegexPolicyConfig(patterns=("x",))), RegexPolicy)
