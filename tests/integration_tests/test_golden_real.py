"""Golden traces on the real tiny pair: what the graph writes, greedy, for both presets and the policies.

The scripted golden traces (``tests/unit_tests/test_golden_traces.py``) pin every branch; these pin
the same on real models (SmolLM2-135M -> Qwen2.5-Coder-0.5B, float32, greedy, a few prompts), where
tokenization seams, hand-overs and cache cropping happen for real. A change of the graph's
behaviour shows up as a diff.

Regenerate (after an intended change only):
``python tests/integration_tests/test_golden_real.py --update``.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any

import pytest

GOLDEN = Path(__file__).parent / "golden_real.json"
PROMPTS = [
    "What is 12 * 7? Think step by step.",
    "A shop sells pens at 3 dollars each. Tom buys 5 pens and pays with a 20 dollar bill. How much change?",
]
CASES: list[tuple[str, Any]] = [
    ("reasoning", "keyword"),
    ("non_reasoning", "keyword"),
    ("reasoning", "uncertainty:0.5"),
    ("non_reasoning", "loop:4+keyword"),
]
BUDGET = 80


@functools.cache
def pair() -> tuple[Any, Any]:
    from spec_graph.generators.hf import HFGenerator

    return HFGenerator("smollm2-135m-instruct", dtype="float32"), HFGenerator(
        "qwen2.5-coder-0.5b-instruct", dtype="float32"
    )


def record(preset: str, policy: Any, prompt: str) -> dict[str, Any]:
    from spec_graph import SpeculativeThinker, SpeculativeThinkingConfig

    cfg = SpeculativeThinkingConfig.preset(
        preset, temperature=0.0, policy=policy, max_new_tokens=BUDGET, opening_tokens=12
    )
    result = SpeculativeThinker(*pair(), cfg).run(prompt)
    return {
        "text": result.text,
        "spans": [[s["author"], s["reason"], s["text"]] for s in result.spans],
        "interventions": [[i["kind"], i["category"], i["char_position"], i["kept"]] for i in result.interventions],
        "output_tokens": result.output_tokens,
        "generated_tokens": result.generated_tokens,
        "finish_reason": result.finish_reason,
    }


def key(preset: str, policy: Any, prompt: str) -> str:
    return f"{preset}|{json.dumps(policy, sort_keys=True)}|{prompt}"


@pytest.mark.slow
@pytest.mark.parametrize(("preset", "policy"), CASES, ids=[f"{p}-{pol}" for p, pol in CASES])
def test_real_pair_writes_the_golden_traces(preset: str, policy: Any) -> None:
    golden = json.loads(GOLDEN.read_text())
    for prompt in PROMPTS:
        assert record(preset, policy, prompt) == golden[key(preset, policy, prompt)], (preset, policy, prompt)


if __name__ == "__main__" and "--update" in sys.argv:
    records = {key(p, pol, q): record(p, pol, q) for p, pol in CASES for q in PROMPTS}
    GOLDEN.write_text(json.dumps(records, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    print(f"wrote {GOLDEN}")
