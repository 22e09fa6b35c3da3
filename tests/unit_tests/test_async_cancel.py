"""Native async and real cancellation: a cancelled call stops its run within one decode step.

The models are scripted with a per-token cost (a few milliseconds of busy CPU, counted), so a
run that went on after its caller gave up would show as tokens written and CPU time spent in
the idle window after the cancel.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from spec_graph.chat_model import SpeculativeThinkingChatModel
from spec_graph.generators import EOS, ScriptedGenerator
from spec_graph.thinker import SpeculativeThinker

STEP_S = 0.004
"""CPU seconds each scripted token costs (a decode step)."""
IDLE_S = 0.3
"""The idle window measured after a cancel."""


class Meter:
    """Counts the tokens the scripted models write; each costs ``STEP_S`` of busy CPU."""

    def __init__(self) -> None:
        self.tokens = 0

    def __call__(self, _token: str) -> float:
        self.tokens += 1
        end = time.process_time() + STEP_S
        while time.process_time() < end:
            pass
        return 1.0


def slow_model(meter: Meter, **kwargs: Any) -> SpeculativeThinkingChatModel:
    doc = " word" * 5000 + EOS  # no step boundary: the small model writes until stopped
    small = ScriptedGenerator.from_document(doc, name="small", confidence=meter)
    target = ScriptedGenerator.from_document(doc, name="target", confidence=meter)
    return SpeculativeThinkingChatModel(
        small_model=small, target_model=target, policy="never", temperature=0, max_tokens=5000, **kwargs
    )


def run_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "spec-graph-run" and t.is_alive()]


def assert_idle_after_cancel(meter: Meter) -> None:
    """No run thread is left, no token is written and (almost) no CPU is spent in an idle window."""
    assert run_threads() == []
    tokens, cpu = meter.tokens, time.process_time()
    time.sleep(IDLE_S)
    assert meter.tokens == tokens, "the run went on after the cancel"
    assert time.process_time() - cpu < IDLE_S / 4  # a run going on would spend ~all of it


async def first_chunk_seconds(model: SpeculativeThinkingChatModel) -> float:
    t0 = time.perf_counter()
    stream = model.astream("q", max_tokens=3)
    async for _ in stream:
        break
    await stream.aclose()
    return time.perf_counter() - t0


async def test_wait_for_cancels_ainvoke_within_a_decode_step() -> None:
    meter = Meter()
    model = slow_model(meter)
    t0 = time.perf_counter()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(model.ainvoke("q"), 0.2)
    assert time.perf_counter() - t0 < 0.2 + 0.25  # wait_for returned once the run stopped
    assert meter.tokens > 0  # it was running
    assert_idle_after_cancel(meter)
    assert await first_chunk_seconds(model) < 0.25  # the models are free: the next call starts at once


async def test_task_cancel_stops_astream() -> None:
    meter = Meter()
    model = slow_model(meter)
    seen = asyncio.Event()

    async def consume() -> None:
        async for _ in model.astream("q"):
            seen.set()

    task = asyncio.create_task(consume())
    await seen.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert_idle_after_cancel(meter)
    assert await first_chunk_seconds(model) < 0.25


async def test_closed_astream_stops_the_run() -> None:
    meter = Meter()
    model = slow_model(meter)
    stream = model.astream("q")
    count = 0
    async for _ in stream:
        count += 1
        if count == 5:
            break
    await stream.aclose()
    # LangChain's astream does not close our generator itself: the event loop finalizes it on
    # its next turns, and the run stops at its next token after that.
    for _ in range(100):
        if not run_threads():
            break
        await asyncio.sleep(STEP_S)
    assert_idle_after_cancel(meter)


async def test_the_event_loop_is_not_blocked_while_a_run_writes() -> None:
    meter = Meter()
    model = slow_model(meter)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    tick = asyncio.create_task(ticker())
    await model.ainvoke("q", max_tokens=60)
    tick.cancel()
    assert ticks >= 3  # the loop ran other tasks while the model wrote (60 tokens, ~0.25 s)


def test_closed_sync_stream_stops_the_run() -> None:
    meter = Meter()
    model = slow_model(meter)
    stream = model.stream("q")
    for i, _ in enumerate(stream):
        if i == 5:
            break
    stream.close()
    assert_idle_after_cancel(meter)
    t0 = time.perf_counter()
    assert model.invoke("q", max_tokens=3).content
    assert time.perf_counter() - t0 < 0.25


def test_thinker_stream_close_waits_for_the_run() -> None:
    meter = Meter()
    doc = " word" * 5000 + EOS
    gen = ScriptedGenerator.from_document(doc, confidence=meter)
    thinker = SpeculativeThinker(gen, gen, config={"policy": "never", "max_new_tokens": 5000})
    events = thinker.stream("q")
    next(events)
    events.close()
    assert_idle_after_cancel(meter)


async def test_thinker_astream_result_and_errors() -> None:
    gen = ScriptedGenerator.from_document("Four." + EOS)
    thinker = SpeculativeThinker(gen, gen, config={"policy": "never"})
    events = [e async for e in thinker.astream("q")]
    assert events[-1]["type"] == "result"
    assert events[-1]["result"].text == "Four."
    assert "".join(e["text"] for e in events if e["type"] == "text") == "Four."
    with pytest.raises(ValueError, match="empty"):
        async for _ in thinker.astream(""):
            pass
    assert run_threads() == []
