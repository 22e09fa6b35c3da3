"""Draft-and-verify on the real Qwen2.5-Coder 0.5B -> 1.5B pair (slow: CPU inference).

Under greedy decoding drafting must not change a token: a run with drafting equals the same run
without it, and the ``always`` policy with drafting equals the 1.5B's own greedy ``generate``.
fp32, so that verifying several tokens in one forward pass and decoding them one at a time
agree on every argmax.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from spec_graph import SpeculativeThinker, resolve_config
from spec_graph.generators import GenerateRequest, Span, hf_loading
from spec_graph.generators.hf import HFGenerator
from spec_graph.generators.scoring import score_tokens

pytestmark = pytest.mark.slow

SMALL, TARGET = "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"
PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
QUESTIONS = [
    "Debby had 32 pieces of candy. Her sister had 42. If they ate 35 pieces, how many did they have left?",
    "A waiter had 14 customers. 3 left and 39 more came in. How many customers does he have now?",
]
N = 48


def _loaded(name: str) -> Iterator[HFGenerator]:
    """A float32 generator for the module; its weights leave the process-wide cache afterwards."""
    gen = HFGenerator(name, device="cpu", dtype="float32")
    yield gen
    for key in [k for k, (model, _tok) in hf_loading._LOADED.items() if model is gen.model]:
        del hf_loading._LOADED[key]  # 6 GB for the 1.5B in float32: do not keep it for the other test files


@pytest.fixture(scope="module")
def small() -> Iterator[HFGenerator]:
    yield from _loaded(SMALL)


@pytest.fixture(scope="module")
def target() -> Iterator[HFGenerator]:
    yield from _loaded(TARGET)


def messages(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"{PROMPT} {question}"}]


def greedy(gen: HFGenerator, question: str, n: int = N) -> list[int]:
    ids = torch.tensor([gen.encode(gen.render_prompt(messages(question)))])
    with torch.inference_mode():
        out = gen.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False)
    return [int(t) for t in out[0, ids.shape[1] :].tolist()]


def ids_of(result, author: str = "target") -> list[int]:
    return [i for s in result.spans if s["author"] == author for i in s["token_ids"]]


@pytest.mark.parametrize("question", QUESTIONS)
def test_always_with_drafting_is_the_targets_greedy_generate(
    question: str, small: HFGenerator, target: HFGenerator
) -> None:
    assert small.tokenizer_key == target.tokenizer_key
    thinker = SpeculativeThinker(small, target, {"policy": "always", "temperature": 0.0, "max_new_tokens": N})
    result = thinker.run(messages(question))
    expected = greedy(target, question)
    eos = target.eos_token_ids
    got = ids_of(result)
    assert got == [t for t in expected if t not in eos] or got == expected
    assert result.draft_tokens["drafted"] > 0
    assert result.draft_tokens["accepted"] > result.draft_tokens["drafted"] // 3  # same family: most drafts kept


@pytest.mark.parametrize("preset", ["non_reasoning", "uncertainty:0.5"])
def test_greedy_runs_with_and_without_drafting_are_identical(
    preset: str, small: HFGenerator, target: HFGenerator
) -> None:
    runs = []
    for mode in ("auto", "off"):
        overrides = {"temperature": 0.0, "max_new_tokens": N, "probe_tokens": 12, "target_drafting": mode}
        cfg = resolve_config(None, policy=preset, **overrides) if ":" in preset else resolve_config(preset, **overrides)
        runs.append(SpeculativeThinker(small, target, cfg).run(messages(QUESTIONS[0])))
    on, off = runs
    assert [(s["author"], s["token_ids"]) for s in on.spans] == [(s["author"], s["token_ids"]) for s in off.spans]
    assert on.draft_tokens.get("drafted", 0) > 0 and off.draft_tokens == {}


# -- the verify policy: the target scores each step of the small model ---------------------------
def all_ids(result) -> list[int]:
    return [i for s in result.spans for i in s["token_ids"]]


def without_eos(ids: list[int], gen: HFGenerator) -> list[int]:
    return [t for t in ids if t not in gen.eos_token_ids]


def test_verify_at_its_strictest_is_the_targets_greedy_text(small: HFGenerator, target: HFGenerator) -> None:
    cfg = {"policy": "verify:1.0", "temperature": 0.0, "max_new_tokens": N}
    result = SpeculativeThinker(small, target, cfg).run(messages(QUESTIONS[1]))
    assert without_eos(all_ids(result), target) == without_eos(greedy(target, QUESTIONS[1]), target)
    assert result.output_tokens["small"] > 0  # the 0.5B's words the 1.5B agrees with stay
    assert result.interventions and {i["category"] for i in result.interventions} == {"rejected"}


def test_verify_at_its_loosest_is_the_small_models_greedy_text(small: HFGenerator, target: HFGenerator) -> None:
    cfg = {"policy": "verify:0", "temperature": 0.0, "max_new_tokens": N}
    result = SpeculativeThinker(small, target, cfg).run(messages(QUESTIONS[1]))
    assert without_eos(all_ids(result), small) == without_eos(greedy(small, QUESTIONS[1]), small)
    assert result.interventions == [] and result.prefill_tokens["target"] > 0


def test_after_a_rejection_both_caches_continue_like_a_fresh_prefill(small: HFGenerator, target: HFGenerator) -> None:
    """Score a probe, keep its start, let the target write and the small model go on: each
    session's next tokens equal those of a new session prefilling the same text."""
    msgs = messages(QUESTIONS[0])
    run_small, run_target = small.start(msgs), target.start(msgs)
    probe = run_small.generate([], GenerateRequest(max_tokens=16, stop_at_trigger=False))
    scores = score_tokens(run_target, [], probe.token_ids)
    assert len(scores.logprobs) == 16 and max(scores.log_ratios) <= 0
    head = [_span("small", small, probe.token_ids[:6])]  # rejected after six tokens
    req = GenerateRequest(max_tokens=8, stop_at_trigger=False)
    wrote = run_target.generate(head, req)
    assert wrote.prefill_tokens <= 1  # the scored tokens stayed cached: only the last one runs again for its logits
    assert wrote.token_ids == target.start(msgs).generate(head, req).token_ids
    trace = [*head, _span("target", target, wrote.token_ids)]
    assert run_small.generate(trace, req).token_ids == small.start(msgs).generate(trace, req).token_ids


def _span(author: str, gen: HFGenerator, ids: list[int]) -> Span:
    text = gen.decode(ids)
    return Span(author=author, reason="test", text=text, token_ids=ids, tokenizer=gen.tokenizer_key, boundary=False)
