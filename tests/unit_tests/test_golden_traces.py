"""Golden traces: what the graph writes today, for every policy and both presets, on many scripts.

Each case runs a small and a target scripted model that write position-dependent words (they
agree at most positions, like a same-family pair) with keyword cues, step boundaries, uncertain
tokens and an end of turn; the record holds the text, who wrote which span and why, the
interventions and the counters. A change to the graph's behaviour shows up here as a diff.

Regenerate (after an intended change only): ``python tests/unit_tests/test_golden_traces.py --update``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from spec_graph import ScriptedGenerator, SpeculativeThinker, SpeculativeThinkingConfig
from spec_graph.generators import EOS
from spec_graph.generators.scripted import scripted_tokens

GOLDEN = Path(__file__).parent / "golden_traces.json"
WORDS = [" We", " add", " 3", " and", " 4", " so", " the", " sum", " is", " 7.", " Wait,", " check", " yes",
         " verify", " again", " hmm", " answer", " alternatively", " confident", "\n\n"]  # fmt: skip
UNSURE = {"add": 0.3, "sum": 0.45, "Wait,": 0.6, "answer": 0.2}
CASES = [
    ("reasoning", "keyword"),
    ("non_reasoning", "keyword"),
    ("reasoning", "uncertainty:0.5"),
    ("reasoning", {"kind": "uncertainty", "threshold": 0.5, "scope": "probe"}),
    ("reasoning", "regex:check|verify"),
    ("reasoning", "never"),
    ("reasoning", "always"),
    ("reasoning", "verify:0.5"),
    ("reasoning", "verify:1.0"),
    ("reasoning", "verify:0.3:0.5"),
    ("reasoning", "step-entropy:0.6"),
    ("reasoning", "loop:4"),
    ("reasoning", "loop:4+verify:0.5"),
    ("reasoning", "keyword+verify:0.5"),
    ("reasoning", {"kind": "keyword", "choose_large": False}),
    ("reasoning", {"kind": "keyword", "think_prompt": " Hmm,"}),
    ("non_reasoning", {"kind": "keyword", "choose_large": False}),
]
# Cases whose "policy" is a dict with "kind": "keyword" and other keys: config overrides for the
# keyword rule (the choose-by-sentiment branch, the think prompt).
OVERRIDES = ("choose_large", "think_prompt")
SEEDS = range(8)


def _h(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:4], "big")


def word(seed: int, model: str, pos: int, length: int) -> str:
    """The word a model writes at token position ``pos``: shared most of the time, its own else."""
    if pos >= length:
        return EOS
    if model == "small" and seed % 2 and pos > 24:  # odd seeds: the small model loops
        return "\n\n" if pos % 6 == 0 else WORDS[pos % 6]
    own = _h(seed, model, pos) % 10 < 3  # the models disagree at ~30 % of positions
    return WORDS[_h(seed, model if own else "shared", pos) % len(WORDS)]


def model(seed: int, name: str, length: int) -> ScriptedGenerator:
    def script(trace: str, _i: int) -> str:
        pos = len(scripted_tokens(trace))
        return "".join(word(seed, name, p, length) for p in range(pos, pos + 64))

    return ScriptedGenerator(script, name=name, confidence=UNSURE, supports_drafting=True)


def record(preset: str, policy: Any, seed: int) -> dict[str, Any]:
    length = 40 + _h(seed, "length") % 40
    overrides: dict[str, Any] = {}
    if isinstance(policy, dict) and any(k in policy for k in OVERRIDES):
        overrides = {k: v for k, v in policy.items() if k in OVERRIDES}
        policy = {k: v for k, v in policy.items() if k not in OVERRIDES}
    small, target = model(seed, "small", length), model(seed, "target", length)
    cfg = SpeculativeThinkingConfig.preset(
        preset,
        temperature=0.0,
        probe_tokens=4,
        verify_tokens=6,
        recap_tokens=8,
        negative_threshold=2,
        opening_tokens=10,
        policy=policy,
        **overrides,
    )
    result = SpeculativeThinker(small, target, cfg).run("question", max_new_tokens=60)
    return {
        "text": result.text,
        "spans": [[s["author"], s["reason"], s["text"]] for s in result.spans],
        "interventions": [
            [i["kind"], i["category"], i["char_position"], i["kept"], i["target_text"]] for i in result.interventions
        ],
        "output_tokens": result.output_tokens,
        "generated_tokens": result.generated_tokens,
        "finish_reason": result.finish_reason,
    }


def key(preset: str, policy: Any, seed: int) -> str:
    return f"{preset}|{json.dumps(policy, sort_keys=True)}|{seed}"


def all_records() -> dict[str, Any]:
    return {key(p, pol, s): record(p, pol, s) for p, pol in CASES for s in SEEDS}


@pytest.mark.parametrize(("preset", "policy"), CASES, ids=[f"{p}-{pol}" for p, pol in CASES])
def test_graph_writes_the_golden_traces(preset: str, policy: Any) -> None:
    golden = json.loads(GOLDEN.read_text())
    for seed in SEEDS:
        assert record(preset, policy, seed) == golden[key(preset, policy, seed)], (preset, policy, seed)


def test_golden_traces_cover_every_branch() -> None:
    golden = json.loads(GOLDEN.read_text())
    kinds = {i[0] for r in golden.values() for i in r["interventions"]}
    categories = {i[1] for r in golden.values() for i in r["interventions"]}
    assert {"opening", "intervention", "verification", "takeover"} <= kinds
    assert {"rejected", "uncertain", "step_entropy", "forced", "pattern", "always", "reflection"} <= categories
    looped = [r for k, r in golden.items() if "loop" in k and any(i[0] == "takeover" for i in r["interventions"])]
    assert looped
    assert {r["finish_reason"] for r in golden.values()} >= {"eos", "length"}


if __name__ == "__main__" and "--update" in sys.argv:
    GOLDEN.write_text(json.dumps(all_records(), indent=0, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
