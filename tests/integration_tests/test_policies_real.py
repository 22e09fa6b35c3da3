"""Trigger policies on the real embedded models (slow: CPU inference).

``never`` must give exactly the small model's greedy text and ``always`` exactly the target's,
for a pair that shares a tokenizer (SmolLM2-135M with a small model built from a config on its
tokenizer) and one that does not (SmolLM2-135M with Qwen2.5-Coder-0.5B). The uncertainty
policy's token condition and the generator's probabilities are checked against fresh forward
passes.
"""

from __future__ import annotations

import math

import pytest
import torch

from spec_graph import SpeculativeThinker, SpeculativeThinkingConfig
from spec_graph.generators.base import GenerateRequest, Span, TokenStop
from spec_graph.generators.hf import HFGenerator
from spec_graph.models import TINY_SMALL_MODEL, TINY_TARGET_MODEL

pytestmark = pytest.mark.slow

QUESTION = (
    "Please reason step by step, and put your final answer within \\boxed{}. "
    "Debby had 32 pieces of candy. Her sister had 42. If they ate 35 pieces, how many did they have left?"
)
MESSAGES = [{"role": "user", "content": QUESTION}]
N = 40


@pytest.fixture(scope="module")
def small() -> HFGenerator:
    return HFGenerator(TINY_SMALL_MODEL, device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def qwen() -> HFGenerator:
    return HFGenerator(TINY_TARGET_MODEL, device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def twin(small: HFGenerator) -> HFGenerator:
    """Another model on the small model's tokenizer: a 2-layer Llama built from a config (seeded)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tok = small.tokenizer
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        eos_token_id=small.model.generation_config.eos_token_id,
        bos_token_id=tok.bos_token_id,
    )
    model = LlamaForCausalLM(cfg).eval()
    model.generation_config.eos_token_id = small.model.generation_config.eos_token_id
    return HFGenerator(model, tok, name="twin-of-smollm2")


def greedy(gen: HFGenerator, n: int = N) -> list[int]:
    ids = torch.tensor([gen.encode(gen.render_prompt(MESSAGES))])
    out = gen.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False)
    return out[0, ids.shape[1] :].tolist()


def kept(result, author: str) -> list[int]:
    return [i for s in result.spans if s["author"] == author for i in s["token_ids"]]


@pytest.mark.parametrize("pair", ["same-tokenizer", "different-tokenizer"])
def test_never_is_the_small_model_and_always_the_target(
    pair: str, small: HFGenerator, qwen: HFGenerator, twin: HFGenerator
) -> None:
    target = twin if pair == "same-tokenizer" else qwen
    assert (small.tokenizer_key == target.tokenizer_key) == (pair == "same-tokenizer")
    base = {"max_new_tokens": N, "temperature": 0.0}
    never = SpeculativeThinker(small, target, SpeculativeThinkingConfig(policy="never", **base)).run(MESSAGES)
    assert kept(never, "target") == []
    assert kept(never, "small") == greedy(small)
    assert never.interventions == []

    always = SpeculativeThinker(small, target, SpeculativeThinkingConfig(policy="always", **base)).run(MESSAGES)
    assert kept(always, "small") == []
    assert kept(always, "target") == greedy(target)
    assert always.generated_tokens.get("small", 0) == 0


def test_uncertainty_stops_exactly_before_an_unsure_token(small: HFGenerator) -> None:
    """Every token written after ``min_tokens`` has top-1 probability >= the threshold; the next, below."""
    session = small.start(MESSAGES)
    stop = TokenStop("top1", 0.5, min_tokens=3)
    seg = session.generate([], GenerateRequest(max_tokens=200, temperature=0.0, logprobs=True, token_stop=stop))
    assert seg.finish_reason == "uncertain"
    assert seg.top1_probs is not None and len(seg.top1_probs) == len(seg.token_ids) >= 3
    assert all(p >= 0.5 for p in seg.top1_probs[3:])
    key = small.tokenizer_key
    trace = [
        Span(author="small", reason="generate", text=seg.text, token_ids=seg.token_ids, tokenizer=key, boundary=False)
    ]
    fresh = small.start(MESSAGES).next_token_logits(trace)[0]
    assert float(torch.softmax(fresh.float(), -1).max()) < 0.5
    # The statistics equal a fresh forward pass over the same text.
    ids = torch.tensor([session._prompt + seg.token_ids])
    with torch.inference_mode():
        logits = small.model(ids).logits[0, len(session._prompt) - 1 : -1].float()
    logp = torch.log_softmax(logits, -1)
    chosen = logp[torch.arange(len(seg.token_ids)), torch.tensor(seg.token_ids)]
    assert seg.logprobs == pytest.approx(chosen.tolist(), abs=1e-4)
    assert seg.top1_probs == pytest.approx(logp.max(-1).values.exp().tolist(), abs=1e-4)
    entropy = -(logp.exp() * logp).sum(-1)
    assert seg.entropies == pytest.approx(entropy.tolist(), abs=1e-3)
    assert all(not math.isnan(x) for x in seg.entropies)


def test_uncertainty_policy_run_is_consistent(small: HFGenerator, qwen: HFGenerator) -> None:
    cfg = SpeculativeThinkingConfig(policy="uncertainty:0.5", max_new_tokens=60, temperature=0.0)
    result = SpeculativeThinker(small, qwen, cfg).run(MESSAGES)
    assert result.interventions, "the small model is unsure somewhere in 60 tokens"
    assert all(i["category"] == "uncertain" and i["target_tokens"] <= 8 for i in result.interventions)
    assert result.text == "".join(s["text"] for s in result.spans)
    assert result.num_output_tokens <= 60
    # No small-model token was written and thrown away: the policy never probes.
    assert result.generated_tokens["small"] == result.output_tokens["small"]
