"""int8 weights and dtypes on the real embedded pair (slow: CPU inference)."""

from __future__ import annotations

import pytest
import torch

from spec_graph import SpeculativeThinker
from spec_graph.generators.base import GenerateRequest
from spec_graph.generators.hf import HFGenerator
from spec_graph.generators.int8 import Int8WeightLinear
from spec_graph.models import DEFAULT_SMALL_MODEL, DEFAULT_TARGET_MODEL

pytestmark = pytest.mark.slow

QUESTION = (
    "Please reason step by step, and put your final answer within \\boxed{}. "
    "A waiter had 14 customers. 3 left and 39 more came in. How many customers does he have now?"
)


def test_int8_pair_runs_the_whole_graph() -> None:
    small = HFGenerator(DEFAULT_SMALL_MODEL, quantization="int8")
    target = HFGenerator(DEFAULT_TARGET_MODEL, quantization="int8")
    thinker = SpeculativeThinker(small, target, config="non_reasoning")
    result = thinker.run(QUESTION, max_new_tokens=48)
    assert result.num_output_tokens > 0
    assert result.text == "".join(s["text"] for s in result.spans)
    assert result.finish_reason in ("eos", "length")
    for gen in (small, target):
        assert isinstance(gen.model.lm_head, Int8WeightLinear)
        assert not any(type(m) is torch.nn.Linear for m in gen.model.modules())


def test_int8_greedy_text_starts_like_the_unquantized_model() -> None:
    """Int8 weights change the logits a little: the first tokens of a greedy answer stay the same."""
    plain = HFGenerator(DEFAULT_TARGET_MODEL, dtype="bfloat16")
    int8 = HFGenerator(DEFAULT_TARGET_MODEL, dtype="bfloat16", quantization="int8")
    assert plain.model is not int8.model  # the load cache keeps them apart
    request = GenerateRequest(max_tokens=12, stop_at_trigger=False)
    texts = [gen.start([{"role": "user", "content": QUESTION}]).generate([], request).text for gen in (plain, int8)]
    assert texts[0] == texts[1]
