"""The engine on the real embedded models: exactness, caching, hand-overs (slow: CPU inference)."""

from __future__ import annotations

import pytest
import torch

from spec_graph import SpeculativeThinker, SpeculativeThinkingConfig
from spec_graph.generators.base import GenerateRequest, Span
from spec_graph.generators.hf import HFGenerator
from spec_graph.models import TINY_SMALL_MODEL, TINY_TARGET_MODEL

pytestmark = pytest.mark.slow

QUESTION = (
    "Please reason step by step, and put your final answer within \\boxed{}. "
    "A farmer has 3 fields with 12 cows each. He sells 5 cows. How many cows are left?"
)
MESSAGES = [{"role": "user", "content": QUESTION}]

# Keywords that fire often on ordinary text, so that short greedy runs take every hand-over path;
# the recap is kept off (threshold out of reach) because it injects text plain decoding never writes.
BUSY = {
    "keyword_matching": "substring",
    "affirmation_keywords": ("we",),
    "reflection_keywords": ("number",),
    "verification_keywords": ("n",),
    "probe_tokens": 6,
    "verify_tokens": 5,
    "negative_threshold": 10_000,
    "negative_threshold_cap": 10_000,
    "temperature": 0.0,
}


@pytest.fixture(scope="module")
def small() -> HFGenerator:
    return HFGenerator(TINY_SMALL_MODEL, device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def target() -> HFGenerator:
    return HFGenerator(TINY_TARGET_MODEL, device="cpu", dtype="float32")


def plain_generate(gen: HFGenerator, n: int) -> list[int]:
    ids = torch.tensor([gen.encode(gen.render_prompt(MESSAGES))])
    out = gen.model.generate(ids, max_new_tokens=n, do_sample=False)
    return out[0, ids.shape[1] :].tolist()


def kept_ids(result) -> list[int]:
    return [i for span in result.spans for i in span["token_ids"]]


def check_consistent(result, budget: int) -> None:
    """Text, spans, counts and interventions must agree with each other."""
    assert result.text == "".join(s["text"] for s in result.spans)
    for who in ("small", "target"):
        written = sum(len(s["token_ids"]) for s in result.spans if s["author"] == who)
        assert result.output_tokens.get(who, 0) == written
        assert result.generated_tokens.get(who, 0) >= written
    assert result.num_output_tokens <= budget
    for item in result.interventions:
        if item["kept"] == "target":
            pos = item["char_position"]
            assert result.text[pos : pos + len(item["target_text"])] == item["target_text"]


def test_same_model_equals_plain_generate(small: HFGenerator) -> None:
    """Small = target, recap off, greedy: token for token what plain ``generate`` writes."""
    n = 100
    reference = plain_generate(small, n)
    twin = HFGenerator(small.model, small.tokenizer)  # a second generator on the same weights
    result = SpeculativeThinker(small, twin, SpeculativeThinkingConfig(max_new_tokens=n, **BUSY)).run(MESSAGES)
    kinds = {i["kind"] for i in result.interventions}
    assert {"intervention", "verification"} <= kinds, result.interventions  # hand-overs happened
    assert kept_ids(result) == reference
    check_consistent(result, n)


def test_cached_engine_equals_recompute(small: HFGenerator, target: HFGenerator) -> None:
    """Different tokenizers, KV caches versus full recomputation at every token: same text."""
    cfg = SpeculativeThinkingConfig(max_new_tokens=40, **{**BUSY, "opening": True, "opening_tokens": 8})
    cached = SpeculativeThinker(small, target, cfg).run(MESSAGES)
    slow_small = HFGenerator(small.model, small.tokenizer, use_cache=False)
    slow_target = HFGenerator(target.model, target.tokenizer, use_cache=False)
    recomputed = SpeculativeThinker(slow_small, slow_target, cfg).run(MESSAGES)
    assert cached.interventions, "the run should hand over at least once"
    assert cached.text == recomputed.text
    assert cached.output_tokens == recomputed.output_tokens
    check_consistent(cached, 40)


def test_default_pair_run_is_consistent(small: HFGenerator, target: HFGenerator) -> None:
    """The default pair in the paper's non-reasoning setting: text, interventions and counts agree."""
    cfg = SpeculativeThinkingConfig.preset("non_reasoning", max_new_tokens=48, opening_tokens=12, temperature=0)
    result = SpeculativeThinker(small, target, cfg).run(QUESTION)
    assert result.text.strip()
    assert result.interventions[0]["kind"] == "opening"
    assert result.spans[0]["author"] == "target"
    assert result.finish_reason in {"eos", "length"}
    assert result.prompt_tokens["small"] > 0 and result.prompt_tokens["target"] > 0
    check_consistent(result, 48)


@pytest.mark.parametrize("foreign", [False, True])
def test_discarded_probe_is_undone_by_cropping(small: HFGenerator, target: HFGenerator, foreign: bool) -> None:
    """After a probe is thrown away, the next-token logits equal a fresh prefill of the same text."""
    session = small.start(MESSAGES)
    first = session.generate([], GenerateRequest(max_tokens=12))
    trace: list[Span] = [
        Span(
            author="small",
            reason="generate",
            text=first.text,
            token_ids=first.token_ids,
            tokenizer=small.tokenizer_key,
            boundary=False,
        )
    ]
    session.generate(trace, GenerateRequest(max_tokens=10, stop_at_trigger=False))  # the probe
    if foreign:  # another model's text replaces the probe: the small model re-tokenizes it
        text = " Wait, let me check that again."
        trace.append(
            Span(
                author="target",
                reason="intervention",
                text=text,
                token_ids=target.encode(text),
                tokenizer=target.tokenizer_key,
                boundary=False,
            )
        )
    cropped = session.next_token_logits(trace)
    fresh = small.start(MESSAGES).next_token_logits(trace)
    torch.testing.assert_close(cropped, fresh, atol=1e-4, rtol=0)


def test_seam_is_retokenized_like_the_whole_text(target: HFGenerator) -> None:
    """Text from another tokenizer that merges with the end of ours is tokenized as one piece.

    In Qwen's tokenizer ".\n" + "\nWait" is [".\n", "\n", "Wait"] but the whole text is
    [".\n\n", "Wait"]: the catching-up model must see the latter.
    """
    session = target.start(MESSAGES)
    own_text = "So 36 - 5 = 31.\n"
    own = target.encode(own_text)
    trace = [
        Span(
            author="target",
            reason="generate",
            text=own_text,
            token_ids=own,
            tokenizer=target.tokenizer_key,
            boundary=False,
        ),
        Span(author="small", reason="generate", text="\nWait", token_ids=[1, 2], tokenizer="another", boundary=False),
    ]
    pieces = own + target.encode("\nWait")
    whole = target.encode(own_text + "\nWait")
    assert pieces != whole, "the hand-made case must merge at the seam"
    assert session.trace_ids(trace) == whole
