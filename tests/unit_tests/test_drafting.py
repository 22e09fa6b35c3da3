"""Draft-and-verify inside the target's stretches, on scripted models with token-level access.

A scripted model continues its document; drafting on and off must write exactly the target's
text whether the small model's drafts are all accepted, all rejected, or partly accepted.
"""

from __future__ import annotations

from typing import Any

import pytest

from spec_graph import ScriptedGenerator, SpeculativeThinker, SpeculativeThinkingConfig
from spec_graph.generators import EOS, GenerateRequest
from spec_graph.generators.drafting import DraftingSession, can_draft
from spec_graph.graph import SpecContext

MESSAGES = [{"role": "user", "content": "question"}]
TARGET_DOC = " one two three four five six seven eight nine ten eleven twelve" + EOS
WORDS = TARGET_DOC.removesuffix(EOS).split()


def doc(words: list[str]) -> str:
    return "".join(f" {w}" for w in words) + EOS


def pair(small_doc: str, target_doc: str = TARGET_DOC) -> tuple[ScriptedGenerator, ScriptedGenerator]:
    small = ScriptedGenerator.from_document(small_doc, name="small", filler=" zz", supports_drafting=True)
    target = ScriptedGenerator.from_document(target_doc, name="target", filler=" yy", supports_drafting=True)
    return small, target


def drafted(small_doc: str, max_tokens: int = 100, **req: Any) -> tuple[Any, DraftingSession]:
    small, target = pair(small_doc)
    session = DraftingSession(target.start(MESSAGES), small.start(MESSAGES))
    seg = session.generate([], GenerateRequest(max_tokens=max_tokens, stop_at_trigger=False, **req))
    return seg, session


@pytest.mark.parametrize(
    ("name", "small_doc"),
    [
        ("accept all", TARGET_DOC),
        ("reject all", doc(["no"] * 13)),
        ("partial", doc([*WORDS[:3], "X", *WORDS[4:7], "Y", *WORDS[8:]])),
    ],
)
def test_greedy_drafting_writes_exactly_the_targets_text(name: str, small_doc: str) -> None:
    seg, session = drafted(small_doc)
    assert seg.text == TARGET_DOC.removesuffix(EOS) and seg.finish_reason == "eos", name
    assert seg.num_tokens == 13  # twelve words and the end of turn
    stats = session.stats
    if name == "accept all":  # every draft kept; each round adds one token of the target's
        assert stats.accepted == stats.drafted and stats.accepted + stats.rounds >= 13
    elif name == "reject all":  # nothing kept: every round writes exactly one token
        assert stats.accepted == 0 and stats.rounds == 13
    else:  # the two wrong words are rejected, the rest kept
        assert 0 < stats.accepted < stats.drafted
        assert stats.accepted + stats.rounds == 13


def test_full_acceptance_takes_fewer_target_passes_and_grows_the_draft() -> None:
    _, all_in = drafted(TARGET_DOC)
    _, none_in = drafted(doc(["no"] * 13))
    assert all_in.stats.rounds < none_in.stats.rounds
    assert all_in.k > 4  # +2 after each fully accepted draft
    assert none_in.k == 1  # -1 after each rejection, down to 1


@pytest.mark.parametrize("max_tokens", [1, 2, 5, 7])
def test_token_limit_is_exact(max_tokens: int) -> None:
    seg, _ = drafted(TARGET_DOC, max_tokens=max_tokens)
    assert seg.token_ids[:max_tokens] == seg.token_ids and seg.num_tokens == max_tokens
    assert seg.text == "".join(f" {w}" for w in WORDS[:max_tokens])
    assert seg.finish_reason == "length"


def test_stop_string_and_trigger_end_where_plain_decoding_ends() -> None:
    seg, _ = drafted(TARGET_DOC, stop=("five",))
    assert seg.finish_reason == "stop" and seg.text.endswith("five")
    triggered, _ = drafted(TARGET_DOC, triggers=(" six",))
    assert triggered.first_boundary == (6, len(" one two three four five six"))


def test_streamed_text_equals_the_segment() -> None:
    pieces: list[str] = []
    seg, _ = drafted(doc([*WORDS[:5], "X", *WORDS[6:]]), on_text=pieces.append)
    assert "".join(pieces) == seg.text


def test_statistics_requests_go_to_the_targets_own_loop() -> None:
    seg, session = drafted(TARGET_DOC, logprobs=True)
    assert seg.logprobs is not None and session.stats.rounds == 0


def test_can_draft_needs_token_level_sessions_with_one_tokenizer() -> None:
    small, target = pair(TARGET_DOC)
    assert can_draft(target.start(MESSAGES), small.start(MESSAGES))
    plain = ScriptedGenerator.from_document(TARGET_DOC)
    assert not can_draft(target.start(MESSAGES), plain.start(MESSAGES))
    other = ScriptedGenerator.from_document(TARGET_DOC, supports_drafting=True)
    other.tokenizer_key = "another"
    assert not can_draft(target.start(MESSAGES), other.start(MESSAGES))
    with pytest.raises(ValueError, match="same tokenizer"):
        DraftingSession(target.start(MESSAGES), other.start(MESSAGES))


def test_context_wraps_the_target_only_when_drafting_is_on_and_possible() -> None:
    small, target = pair(TARGET_DOC)
    on = SpecContext.open(small, target, MESSAGES, SpeculativeThinkingConfig())
    assert isinstance(on.target, DraftingSession)
    off_cfg = SpeculativeThinkingConfig(target_drafting="off")
    off = SpecContext.open(small, target, MESSAGES, off_cfg)
    assert not isinstance(off.target, DraftingSession)
    with pytest.raises(ValueError, match="target_drafting"):
        SpeculativeThinkingConfig(target_drafting="sometimes")  # type: ignore[arg-type,unused-ignore]


SMALL_DOC = " one two three\n\nWait four five\n\nsix seven eight nine ten eleven twelve" + EOS
TARGET_RUN_DOC = " one two three\n\nWait four FIVE\n\nsix seven eight nine ten eleven twelve" + EOS


@pytest.mark.parametrize("policy", ["keyword", "always", "uncertainty:0.5"])
@pytest.mark.parametrize("preset", ["reasoning", "non_reasoning"])
def test_whole_runs_are_identical_with_drafting_on_and_off(policy: str, preset: str) -> None:
    results = []
    for mode in ("auto", "off"):
        small, target = pair(SMALL_DOC, TARGET_RUN_DOC)
        cfg = SpeculativeThinkingConfig.preset(
            preset, temperature=0.0, probe_tokens=3, verify_tokens=4, target_drafting=mode, policy=policy
        )
        results.append(SpeculativeThinker(small, target, cfg).run("question", max_new_tokens=40))
    on, off = results
    assert off.draft_tokens == {}
    if policy == "always":
        assert on.draft_tokens["accepted"] > 0
    assert on.text == off.text
    assert on.output_tokens == off.output_tokens
    assert [(i["kind"], i["target_text"]) for i in on.interventions] == [
        (i["kind"], i["target_text"]) for i in off.interventions
    ]


class _Dist:
    """A target whose distribution is given: logits are log-probabilities."""

    def __init__(self, seed: int) -> None:
        import torch

        self.gen = torch.Generator().manual_seed(seed)

    def probs(self, logits: Any, req: GenerateRequest) -> Any:
        return logits.softmax(-1)

    def rng(self, req: GenerateRequest, device: Any) -> Any:
        return self.gen

    def select(self, logits: Any, req: GenerateRequest) -> int:
        return int(logits.softmax(-1).multinomial(1, generator=self.gen).item())


def test_sampling_acceptance_rule_keeps_the_targets_distribution() -> None:
    """Draft x ~ q, keep it with probability min(1, p/q), else resample from max(0, p - q): the token is ~ p."""
    import torch

    p = torch.tensor([0.5, 0.3, 0.1, 0.1])
    q = torch.tensor([0.1, 0.6, 0.2, 0.1])
    session = object.__new__(DraftingSession)
    session.target = _Dist(0)
    logits = torch.stack([p.log(), p.log()])  # position 0 judges the draft; position 1 is the bonus
    req = GenerateRequest(max_tokens=2, temperature=1.0, top_k=0, top_p=1.0)
    draw = torch.Generator().manual_seed(1)
    counts = torch.zeros(4)
    trials = 20000
    for _ in range(trials):
        x = int(q.multinomial(1, generator=draw).item())
        counts[session._verify([x], [q], logits, req)[0]] += 1
    assert torch.allclose(counts / trials, p, atol=0.015)


def test_eval_system_target_draft_needs_local_models() -> None:
    from spec_graph.eval.systems import SYSTEM_KINDS, make_system

    assert "target:draft" in SYSTEM_KINDS
    small, target = pair(TARGET_DOC)
    with pytest.raises(TypeError, match="local transformers models"):
        make_system("target:draft", small, target)


def test_report_gives_the_draft_acceptance_and_problems_per_hour(tmp_path: Any) -> None:
    from spec_graph.eval.report import summarize, write_report

    base = {"sample": 0, "correct": True, "finish_reason": "eos", "output_tokens": 10, "wall_seconds": 2.0}
    records = [
        {**base, "system": "target", "id": "a"},
        {**base, "system": "target:draft", "id": "a", "draft_tokens": {"drafted": 8, "accepted": 6}},
        {**base, "system": "target:draft", "id": "b", "draft_tokens": {"drafted": 2, "accepted": 0}},
    ]
    rows = {r["system"]: r for r in summarize(records)}
    assert "draft_acceptance" not in rows["target"]
    assert rows["target:draft"]["draft_acceptance"] == pytest.approx(0.6)
    assert rows["target"]["problems_per_hour"] == pytest.approx(1800)
    write_report(tmp_path, records, {"dataset": "x"}, plots=False)
    assert "`target:draft` 60%" in (tmp_path / "results.md").read_text()
