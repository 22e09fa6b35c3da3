"""The step-judging policies on scripted models: verify, step entropy, loop, and combinations.

Scripted models with token-level access continue their documents; the target scores a token
as its own choice (``p(x) / max p = 1``) or as one it would never write (``~0``).
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydantic import ValidationError

from spec_graph import ScriptedGenerator, SpeculativeThinker, SpeculativeThinkingConfig
from spec_graph.generators import EOS
from spec_graph.policies import (
    Action,
    AnyPolicy,
    KeywordPolicy,
    Look,
    LoopPolicy,
    ProbeView,
    Step,
    StepEntropyPolicy,
    TargetScores,
    VerifyPolicy,
    build_policy,
    checks_every_step,
)
from spec_graph.policy_config import AnyPolicyConfig, VerifyPolicyConfig, parse_policy

SMALL_DOC = " One plus two is four.\n\n So the sum is four.\n\n The answer is four." + EOS
TARGET_DOC = " One plus two is three.\n\n So the sum is three.\n\n The answer is three." + EOS


def pair(small_doc: str = SMALL_DOC, target_doc: str = TARGET_DOC, **small_kw: Any) -> tuple[Any, Any]:
    small = ScriptedGenerator.from_document(small_doc, name="small", filler=" zz", supports_drafting=True, **small_kw)
    target = ScriptedGenerator.from_document(target_doc, name="target", filler=" yy", supports_drafting=True)
    return small, target


def run(policy: Any, small_doc: str = SMALL_DOC, target_doc: str = TARGET_DOC, n: int = 60, **cfg: Any) -> Any:
    small, target = pair(small_doc, target_doc, confidence=cfg.pop("confidence", None))
    config = SpeculativeThinkingConfig.preset("reasoning", temperature=0.0, policy=policy, **cfg)
    return SpeculativeThinker(small, target, config).run("question", max_new_tokens=n)


# -- verify ------------------------------------------------------------------------------------
@pytest.mark.parametrize("drafting", ["auto", "off"])
def test_verify_at_its_strictest_writes_the_targets_text(drafting: str) -> None:
    result = run("verify:1.0", target_drafting=drafting)
    alone = run("always", target_drafting=drafting)
    assert result.text == alone.text == TARGET_DOC.removesuffix(EOS)
    assert result.finish_reason == "eos"
    # the small model's words the target agrees with stay: "One plus two is" etc.
    assert result.output_tokens["small"] > 0 and result.output_tokens["target"] > 0
    assert {i["category"] for i in result.interventions} == {"rejected"}
    # every rejection keeps the step's accepted start, and the target's stretch ends at the step's end
    assert all(i["target_text"].endswith(("\n\n", "three.")) for i in result.interventions)


def test_verify_at_its_loosest_writes_the_small_models_text() -> None:
    result = run("verify:0")
    assert result.text == run("never").text == SMALL_DOC.removesuffix(EOS)
    assert result.interventions == [] and result.output_tokens.get("target", 0) == 0
    # the target still read every step (its catch-up), without writing
    assert result.prefill_tokens["target"] >= result.output_tokens["small"]


def test_verify_checks_the_first_step_and_every_step_after_the_target() -> None:
    def script(trace: str, _i: int) -> str:  # wrong at the start, then the target's words
        if not trace:
            return " Wrong start.\n\n"
        return TARGET_DOC[len(trace) :] if TARGET_DOC.startswith(trace) else " zz" * 64

    small = ScriptedGenerator(script, name="small", supports_drafting=True)
    target = ScriptedGenerator.from_document(TARGET_DOC, name="target", supports_drafting=True)
    config = SpeculativeThinkingConfig.preset("reasoning", temperature=0.0, policy="verify:1.0")
    result = SpeculativeThinker(small, target, config).run("question", max_new_tokens=60)
    assert result.text == TARGET_DOC.removesuffix(EOS)
    first = result.interventions[0]
    assert first["char_position"] == 0 and first["target_text"] == " One plus two is three.\n\n"
    kinds = [(s["author"], s["reason"]) for s in result.spans]
    assert kinds[0] == ("target", "intervention")  # nothing unchecked from the small model first
    assert ("small", "probe") in kinds and ("small", "generate") not in kinds


def test_verify_keeps_the_accepted_start_and_counts_it() -> None:
    result = run("verify:1.0")
    first_small = next(s for s in result.spans if s["author"] == "small")
    assert first_small["text"] == " One plus two is"
    assert result.spans[1]["author"] == "target" and result.spans[1]["text"].startswith(" three.")
    assert sum(len(s["token_ids"]) for s in result.spans if s["author"] == "small") == result.output_tokens["small"]


def test_verify_with_a_stretch_length_writes_that_many_target_tokens() -> None:
    result = run({"kind": "verify", "threshold": 1.0, "stretch_tokens": 1})
    assert result.text == TARGET_DOC.removesuffix(EOS)
    assert all(i["target_tokens"] == 1 for i in result.interventions)


def test_verify_needs_a_target_that_can_score() -> None:
    small = ScriptedGenerator.from_document(SMALL_DOC, name="small")  # no token-level access
    target = ScriptedGenerator.from_document(TARGET_DOC, name="target")
    config = SpeculativeThinkingConfig.preset("reasoning", temperature=0.0, policy="verify:0.5")
    with pytest.raises(ValueError, match="needs the target to score"):
        SpeculativeThinker(small, target, config).run("question", max_new_tokens=20)


@pytest.mark.parametrize(
    ("threshold", "expected"),
    [(0.0, 4), (0.05, 4), (0.2, 3), (0.5, 2), (1.0, 1)],
)
def test_accepted_prefix_is_up_to_the_first_token_below_the_threshold(threshold: float, expected: int) -> None:
    ratios = [0.0, math.log(0.6), math.log(0.3), math.log(0.1)]
    assert TargetScores([0.0] * 4, ratios).accepted(threshold) == expected


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_verify_threshold_is_a_probability(bad: float) -> None:
    with pytest.raises(ValidationError, match="threshold"):
        VerifyPolicyConfig(threshold=bad)
    with pytest.raises(ValueError):
        parse_policy(f"verify:{bad}")


# -- step entropy ------------------------------------------------------------------------------
def step(trace: str = "", probe: ProbeView | None = None, **kw: Any) -> Step:
    config = SpeculativeThinkingConfig.preset("reasoning", **kw)
    return Step(trace, "trigger", 0, 15, {}, 100, config, probe=probe or ProbeView("", []))


@pytest.mark.parametrize(("entropy", "kind"), [(0.2, "keep"), (1.4, "intervene")])
def test_step_entropy_decides_on_the_first_tokens_entropy(entropy: float, kind: str) -> None:
    probe = ProbeView(" So", [1], logprobs=[-0.1], top1_probs=[0.9], entropies=[entropy])
    action = StepEntropyPolicy(1.0, step_tokens=40).decide(step(probe=probe))
    assert action.kind == kind
    if kind == "intervene":
        assert action == Action.intervene(40, "step_entropy", until_boundary=True)


def test_step_entropy_runs_write_uncertain_steps_with_the_target() -> None:
    # the small model is unsure how to start the second step (" So": top-1 0.3, entropy 0.61)
    target_doc = " One plus two is four.\n\n So the sum is three.\n\n The answer is three." + EOS
    result = run("step-entropy:0.5", target_doc=target_doc, confidence={"So": 0.3})
    assert [i["category"] for i in result.interventions] == ["step_entropy"]
    assert result.interventions[0]["target_text"] == " So the sum is three.\n\n"
    assert result.text.startswith(" One plus two is four.\n\n So the sum is three.\n\n")


def test_step_entropy_needs_entropies_and_a_positive_threshold() -> None:
    with pytest.raises(ValueError, match="entropies"):
        StepEntropyPolicy(1.0).decide(step(probe=ProbeView(" So", [1])))
    with pytest.raises(ValidationError):
        StepEntropyPolicy(0)


# -- loop ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("trace", "looping"),
    [
        ("We add 2 and 3.\n\nThen we multiply 2 and 3.\n\n", False),
        ("We add 2 and 3 to get 5.\n\nSo.\n\nWe add 2 and 3 to get 5.\n\n", True),  # a repeated step
        ("Short.\n\nShort.\n\n", False),  # shorter than min_chars
        (" ".join(["a b c d"] * 3), True),  # the last 4 words were written before
        (" ".join(f"w{i}" for i in range(20)), False),
    ],
)
def test_loop_detection(trace: str, looping: bool) -> None:
    assert LoopPolicy(ngram=4, min_chars=8).looping(trace, ("\n\n",)) is looping
    expected = "takeover" if looping else "keep"
    assert LoopPolicy(ngram=4, min_chars=8).decide(step(trace)).kind == expected


def test_loop_runs_end_a_repeating_small_model_with_the_recap() -> None:
    loop_doc = " Add two and two.\n\n" * 6 + EOS
    result = run("loop", small_doc=loop_doc, target_doc=loop_doc, n=80)
    assert [i["kind"] for i in result.interventions][:1] == ["takeover"]
    assert result.interventions[0]["char_position"] > len(" Add two and two.\n\n")
    assert any(s["author"] == "injected" and s["reason"] == "recap_prompt" for s in result.spans)


def test_loop_settings_are_validated() -> None:
    with pytest.raises(ValidationError):
        LoopPolicy(ngram=1)
    assert parse_policy("loop:12") == parse_policy({"kind": "loop", "ngram": 12})


# -- combinations --------------------------------------------------------------------------------
def test_combination_parses_builds_and_asks_in_order() -> None:
    settings = parse_policy("loop+verify:0.3")
    assert isinstance(settings, AnyPolicyConfig)
    policy = build_policy(settings)
    assert isinstance(policy, AnyPolicy) and checks_every_step(policy)
    assert [type(p) for p in policy.policies] == [LoopPolicy, VerifyPolicy]
    assert not checks_every_step(build_policy(parse_policy("loop+keyword")))
    # the first policy that acts decides
    looping = step(" ".join(["a b c d e f"] * 10))
    assert AnyPolicy([LoopPolicy(ngram=4), KeywordPolicy()]).decide(looping).kind == "takeover"
    probe = ProbeView(" Wait, no", [1, 2])
    action = AnyPolicy([LoopPolicy(ngram=4), KeywordPolicy()]).decide(step("a b", probe=probe))
    assert action.kind == "intervene" and action.category == "reflection"


def test_combination_shares_one_probe_and_asks_for_scores_only_where_the_deciding_order_needs_them() -> None:
    verify = VerifyPolicy(0.5, step_tokens=16)
    both = AnyPolicy([KeywordPolicy(), verify])
    # the keyword rule asks first: its probe is the one written, and verify scores that one
    assert both.look(step("a b")) == Look(SpeculativeThinkingConfig.preset("reasoning").probe_tokens)
    sure, cue = ProbeView(" So", [1], top1_probs=[0.9]), ProbeView(" Wait", [1], top1_probs=[0.9])
    assert both.wants_scores(step("a b", probe=sure))
    assert not both.wants_scores(step("a b", probe=cue))  # the keyword rule decides first, without scores
    # a recap that is due needs neither probe nor scores
    due = Step("a b", "trigger", 15, 15, {}, 100, SpeculativeThinkingConfig.preset("reasoning"))
    assert both.look(due) is None and both.decide(due).kind == "takeover"
    # verify's gate: a step the small model was sure of is not scored, and kept
    gated = VerifyPolicy(0.5, gate=0.8)
    assert not gated.wants_scores(step(probe=sure))
    assert gated.wants_scores(step(probe=ProbeView(" So", [1], top1_probs=[0.5])))


def test_policies_keep_no_state_between_calls() -> None:
    # a policy is a function of the step: what the deciding policy wants afterwards is in its action
    policy = AnyPolicy([LoopPolicy(ngram=4), KeywordPolicy()])
    before = dict(vars(policy))
    probe = ProbeView(" Wait, no", [1, 2])
    first = policy.decide(step("a b", probe=probe))
    assert policy.decide(step("a b", probe=probe)) == first
    assert vars(policy) == before
    assert first.choose == "target" and first.extend == SpeculativeThinkingConfig.preset("reasoning").verify_tokens
    no_large = step("a b", probe=probe, choose_large=False)
    assert KeywordPolicy().decide(no_large).choose == "sentiment"


def test_verify_keeps_the_step_when_the_target_could_not_score_it() -> None:
    probe = ProbeView(" So", [1, 2], top1_probs=[0.5, 0.5])
    assert VerifyPolicy(0.5).decide(step(probe=probe)).kind == "keep"  # no scores: a failed target
    scored = Step("", "trigger", 0, 15, {}, 100, SpeculativeThinkingConfig(), probe, TargetScores([0, -3], [0, -3]))
    assert VerifyPolicy(0.5).decide(scored) == Action.intervene(64, "rejected", keep_tokens=1, until_boundary=True)


def test_combination_runs_verify_and_loop() -> None:
    result = run("loop+verify:1.0")
    assert result.text == TARGET_DOC.removesuffix(EOS)


def test_combination_needs_two_policies() -> None:
    with pytest.raises(ValidationError, match="at least two"):
        AnyPolicyConfig(policies=(parse_policy("loop"),))
    with pytest.raises(ValueError, match="at least two"):
        AnyPolicy([LoopPolicy()])
    with pytest.raises(ValueError, match="unknown policy"):
        parse_policy("loop+bogus")


def test_cli_and_eval_accept_the_new_policy_names() -> None:
    from spec_graph.cli.run import _policy
    from spec_graph.eval.systems import make_system

    assert _policy("verify:0.3+loop") == "verify:0.3+loop"
    small, target = pair()
    system = make_system("spec:loop+verify:0.5", small, target)
    assert system.name == "spec:loop+verify:0.5"
