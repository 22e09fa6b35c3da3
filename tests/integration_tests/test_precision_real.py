"""int8 weights and dtypes on the real embedded pair (slow: CPU inference)."""

from __future__ import annotations

import pytest
import torch

from spec_graph import SpeculativeThinker
from spec_graph.generators.hf import HFGenerator
from spec_graph.generators.int8 import Int8WeightLinear
from spec_graph.models import TINY_SMALL_MODEL, TINY_TARGET_MODEL

pytestmark = pytest.mark.slow

QUESTION = (
    "Please reason step by step, and put your final answer within \\boxed{}. "
    "A waiter had 14 customers. 3 left and 39 more came in. How many customers does he have now?"
)


def test_int8_pair_runs_the_whole_graph() -> None:
    small = HFGenerator(TINY_SMALL_MODEL, quantization="int8")
    target = HFGenerator(TINY_TARGET_MODEL, quantization="int8")
    thinker = SpeculativeThinker(small, target, config="non_reasoning")
    result = thinker.run(QUESTION, max_new_tokens=48)
    assert result.num_output_tokens > 0
    assert result.text == "".join(s["text"] for s in result.spans)
    assert result.finish_reason in ("eos", "length")
    for gen in (small, target):
        assert isinstance(gen.model.lm_head, Int8WeightLinear)
        assert not any(type(m) is torch.nn.Linear for m in gen.model.modules())


@pytest.mark.parametrize("model", [TINY_SMALL_MODEL, TINY_TARGET_MODEL])
def test_int8_next_token_distribution_stays_close(model: str) -> None:
    """Int8 weights move the probabilities a little (measured: <= 0.055), never the top token here."""
    plain = HFGenerator(model, dtype="bfloat16")
    int8 = HFGenerator(model, dtype="bfloat16", quantization="int8")
    assert plain.model is not int8.model  # the load cache keeps them apart
    messages = [{"role": "user", "content": QUESTION}]
    probs = [torch.softmax(gen.start(messages).next_token_logits([]), dim=-1)[0] for gen in (plain, int8)]
    assert int(probs[0].argmax()) == int(probs[1].argmax())
    assert float((probs[0] - probs[1]).abs().max()) < 0.1
