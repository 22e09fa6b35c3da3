"""A real ``transformers serve`` on 127.0.0.1 as the target (slow: CPU inference, ~2-4 minutes).

The server is started and stopped by fixtures (see ``serve_fixture.py``) and serves the embedded
SmolLM2 folder, the fastest model here; the local small model is the same SmolLM2, so a run with
the served target must give, token for token, what the same pair gives with both models local.
Budgets are tiny and the trigger strings fire on every comma and full stop, so that a few dozen
tokens take every hand-over path.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from serve_fixture import Served, served_model, serving_missing

from spec_graph import SpeculativeThinker, SpeculativeThinkingConfig
from spec_graph.errors import SpeculativeThinkingError
from spec_graph.generators.hf import PLAIN_CHAT_TEMPLATE, HFGenerator
from spec_graph.generators.remote import RemoteGenerator, RemoteGeneratorError
from spec_graph.models import TINY_SMALL_MODEL, TINY_TARGET_MODEL, ensure_model

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(serving_missing() is not None, reason=serving_missing() or ""),
]

QUESTION = (
    "Please reason step by step, and put your final answer within \\boxed{}. "
    "A farmer has 3 fields with 12 cows each. He sells 5 cows. How many cows are left?"
)
MESSAGES = [{"role": "user", "content": QUESTION}]
BUSY: dict[str, Any] = {
    "trigger_strings": (",", "."),
    "keyword_matching": "substring",
    "affirmation_keywords": ("we",),
    "reflection_keywords": ("number",),
    "verification_keywords": ("n",),
    "probe_tokens": 6,
    "verify_tokens": 5,
    "opening": True,
    "opening_tokens": 3,
    "negative_threshold": 10_000,
    "negative_threshold_cap": 10_000,
    "temperature": 0.0,
}
CFG = SpeculativeThinkingConfig(max_new_tokens=24, **BUSY)
FAST_RETRIES: dict[str, Any] = {"retries": 2, "backoff": 0.05, "timeout": 60.0}


@pytest.fixture(scope="module")
def server() -> Iterator[Served]:
    with served_model(ensure_model(TINY_SMALL_MODEL)) as srv:
        yield srv


@pytest.fixture(scope="module")
def small() -> HFGenerator:
    return HFGenerator(TINY_SMALL_MODEL, device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def reference(small: HFGenerator) -> Any:
    """The run with both models local (the target a second generator on the same weights)."""
    twin = HFGenerator(small.model, small.tokenizer)
    return SpeculativeThinker(small, twin, CFG).run(MESSAGES)


def served(srv: Served, **kw: Any) -> RemoteGenerator:
    return RemoteGenerator(srv.model, base_url=srv.base_url, **{**FAST_RETRIES, **kw})


def test_served_target_equals_both_local(server: Served, small: HFGenerator, reference: Any) -> None:
    target = served(server)
    assert target.tokenizer_key == small.tokenizer_key  # tokenizer loaded from the served folder
    result = SpeculativeThinker(small, target, CFG).run(MESSAGES)
    kinds = {i["kind"] for i in result.interventions}
    assert {"opening", "intervention", "verification"} <= kinds, result.interventions
    assert result.text == reference.text
    assert [(s["author"], s["text"]) for s in result.spans] == [(s["author"], s["text"]) for s in reference.spans]
    assert result.output_tokens == reference.output_tokens
    assert result.num_output_tokens <= CFG.max_new_tokens
    assert result.prefill_tokens["target"] > 0  # from the server's usage


async def test_abatch_of_eight_equals_sequential(server: Served, small: HFGenerator) -> None:
    """8 questions through the chat model's ``abatch`` against the served target, each as run alone."""
    from spec_graph.chat_model import SpeculativeThinkingChatModel

    questions = [f"What is {a} + {b}? Answer briefly." for a, b in zip(range(2, 10), range(11, 19), strict=True)]
    cfg = SpeculativeThinkingConfig(max_new_tokens=6, **{**BUSY, "opening_tokens": 4})
    llm = SpeculativeThinkingChatModel(small_model=small, target_model=served(server), config=cfg, temperature=0)
    sequential = [llm.invoke(q).content for q in questions]
    concurrent = [m.content for m in await llm.abatch(questions, config={"max_concurrency": 8})]
    assert concurrent == sequential
    assert len(set(sequential)) > 1  # the questions really differ


def test_server_killed_mid_run_keeps_the_partial_trace(small: HFGenerator, reference: Any) -> None:
    with served_model(ensure_model(TINY_SMALL_MODEL)) as srv:
        target = served(srv, retries=2)
        killed = threading.Event()

        def on_event(event: dict[str, Any]) -> None:
            # the first token of the target's verification stretch: kill the server mid-stream
            if event["type"] == "text" and event.get("reason") == "verification" and not killed.is_set():
                killed.set()
                srv.kill()

        with pytest.raises(SpeculativeThinkingError) as info:
            SpeculativeThinker(small, target, CFG).run(MESSAGES, on_event=on_event)
    assert killed.is_set()
    cause = info.value.__cause__
    assert isinstance(cause, RemoteGeneratorError) and cause.attempts == 3  # the cut stream + 2 retries
    partial = info.value.partial
    assert partial is not None and partial.finish_reason == "error" and partial.text
    assert partial.text == "".join(s["text"] for s in partial.spans)
    assert reference.text.startswith(partial.text + info.value.unsaved_text)  # nothing lost, nothing changed
    assert cause.partial_text and info.value.unsaved_text.endswith(cause.partial_text)


def test_different_tokenizers_smollm2_small_qwen_target() -> None:
    """SmolLM2 (49k BPE) writes, Qwen (152k) steps in: text-level hand-overs with seams re-tokenized."""
    small = HFGenerator(TINY_SMALL_MODEL, device="cpu", dtype="float32")
    target = HFGenerator(TINY_TARGET_MODEL, device="cpu", dtype="float32")
    assert small.tokenizer_key != target.tokenizer_key
    result = SpeculativeThinker(small, target, CFG.model_copy(update={"max_new_tokens": 12})).run(MESSAGES)
    assert result.output_tokens.get("small") and result.output_tokens.get("target")
    assert result.text == "".join(s["text"] for s in result.spans)
    assert result.num_output_tokens <= 12


def test_served_small_with_gemma_target(server: Served) -> None:
    """The served model in the small role (stopping at triggers), a third family as the local target."""
    gemma = HFGenerator("gemma-3-270m", device="cpu", dtype="float32", chat_template=PLAIN_CHAT_TEMPLATE)
    cfg = CFG.model_copy(update={"max_new_tokens": 12, "trigger_strings": (",", ".", "=")})
    result = SpeculativeThinker(served(server), gemma, cfg).run(MESSAGES)
    assert result.output_tokens.get("small") and result.output_tokens.get("target")
    assert any(s["author"] == "small" and s["boundary"] for s in result.spans)  # the server stopped at a trigger
    assert result.text == "".join(s["text"] for s in result.spans)
    assert result.num_output_tokens <= 12
