"""Resume, cancellation and memory on a real model (slow)."""

from __future__ import annotations

import gc
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from langgraph.checkpoint.memory import InMemorySaver

from spec_graph import SpeculativeThinker, SpeculativeThinkingConfig
from spec_graph.errors import SpeculativeThinkingError
from spec_graph.generators.base import GenerateRequest, Segment, Span
from spec_graph.generators.hf import HFGenerator, HFSession
from spec_graph.models import TINY_SMALL_MODEL

pytestmark = pytest.mark.slow

QUESTION = (
    "Please reason step by step, and put your final answer within \\boxed{}. "
    "A farmer has 3 fields with 12 cows each. He sells 5 cows. How many cows are left?"
)
# Keywords that fire on ordinary text so that short runs hand over several times.
CFG = SpeculativeThinkingConfig(
    keyword_matching="substring",
    affirmation_keywords=("we",),
    reflection_keywords=("number",),
    verification_keywords=("find",),
    probe_tokens=5,
    verify_tokens=4,
    negative_threshold=2,
    recap_tokens=6,
    recap_tokens_cap=8,
    max_new_tokens=110,
    temperature=0,
)


@pytest.fixture(scope="module")
def model() -> HFGenerator:
    return HFGenerator(TINY_SMALL_MODEL, device="cpu", dtype="float32")


class Crashing:
    """A generator that delegates to a real one and raises at its ``fail_at``-th call."""

    def __init__(self, inner: HFGenerator, fail_at: int) -> None:
        self.inner, self.fail_at, self.calls = inner, fail_at, 0
        self.name, self.tokenizer_key = inner.name, inner.tokenizer_key

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def start(self, messages: Sequence[Mapping[str, Any]]) -> HFSession:
        session = self.inner.start(messages)
        outer = self
        original = session.generate

        def generate(trace: Sequence[Span], request: GenerateRequest) -> Segment:
            outer.calls += 1
            if outer.calls == outer.fail_at:
                raise RuntimeError("process killed")
            return original(trace, request)

        session.generate = generate  # type: ignore[method-assign]
        return session


def test_resume_after_a_crash_gives_the_uninterrupted_text(model: HFGenerator) -> None:
    twin = HFGenerator(model.model, model.tokenizer)
    reference = SpeculativeThinker(model, twin, CFG).run(QUESTION)
    assert {i["kind"] for i in reference.interventions} >= {"intervention"}

    saver = InMemorySaver()
    crashing = SpeculativeThinker(Crashing(model, fail_at=4), twin, CFG, checkpointer=saver)
    with pytest.raises(SpeculativeThinkingError) as info:
        crashing.run(QUESTION, thread_id="job-1")
    assert info.value.partial is not None and 0 < info.value.partial.num_output_tokens < reference.num_output_tokens

    # A fresh thinker and fresh generators: the caches are rebuilt from the checkpointed text.
    fresh_small = HFGenerator(model.model, model.tokenizer)
    fresh_target = HFGenerator(model.model, model.tokenizer)
    resumed = SpeculativeThinker(fresh_small, fresh_target, CFG, checkpointer=saver).resume("job-1")
    assert resumed.text == reference.text
    assert resumed.output_tokens == reference.output_tokens
    assert resumed.finish_reason == reference.finish_reason


def test_cancelled_stream_releases_the_model_lock(model: HFGenerator) -> None:
    thinker = SpeculativeThinker(model, model, CFG.model_copy(update={"max_new_tokens": 200}))
    stream = thinker.stream(QUESTION)
    for i, _event in enumerate(stream):
        if i == 5:
            break
    stream.close()
    lock = model.lock
    acquired = threading.Event()

    def grab() -> None:
        with lock:
            acquired.set()

    worker = threading.Thread(target=grab)
    worker.start()
    worker.join(timeout=10)
    assert acquired.is_set(), "the cancelled run must release the model within a token or two"
    again = thinker.run(QUESTION, max_new_tokens=20)  # the next call is unaffected
    assert again.num_output_tokens == 20


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    pytest.skip("no /proc/self/status on this platform")
    return 0.0


def test_memory_stays_flat_over_50_runs(model: HFGenerator) -> None:
    twin = HFGenerator(model.model, model.tokenizer)
    thinker = SpeculativeThinker(model, twin, CFG.model_copy(update={"max_new_tokens": 4}))
    for _ in range(3):  # warm-up: allocator pools, lazy imports
        thinker.run(QUESTION)
    gc.collect()
    before = _rss_mib()
    cuda_before = torch.cuda.memory_allocated() if torch.cuda.is_available() else 0
    texts = {thinker.run(QUESTION).text for _ in range(50)}
    gc.collect()
    growth = _rss_mib() - before
    assert len(texts) == 1  # runs are independent: same input, same greedy text
    assert growth < 64, f"RSS grew by {growth:.1f} MiB over 50 runs"
    if torch.cuda.is_available():
        assert torch.cuda.memory_allocated() - cuda_before < 16 * 2**20
