"""SpeculativeThinkingChatModel on the real embedded models: reuse, chains, LangGraph, concurrency.

SmolLM2-135M plays both roles where speed matters (a 2-core CPU writes ~10 tokens/s with it).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langgraph.graph import START, MessagesState, StateGraph
from pydantic import BaseModel

from spec_graph.chat_model import SpeculativeThinkingChatModel
from spec_graph.langgraph_node import chat_model_node, subgraph_node
from spec_graph.models import TINY_SMALL_MODEL, TINY_TARGET_MODEL

pytestmark = pytest.mark.slow

SMOL = TINY_SMALL_MODEL
EVERY_BOUNDARY = {"not_reasoning": True, "probe_tokens": 6}
"""Intervene at every blank line, so both roles write even in short answers."""


def smol_pair(**kwargs: Any) -> SpeculativeThinkingChatModel:
    return SpeculativeThinkingChatModel(
        small_model=SMOL, target_model=SMOL, **{"temperature": 0, "dtype": "float32", **kwargs}
    )


def test_pipeline_objects_are_reused_not_reloaded() -> None:
    transformers = pytest.importorskip("transformers")
    lch = pytest.importorskip("langchain_huggingface")
    from spec_graph.generators import hf, hf_loading

    lm, tok = hf.load_pretrained(SMOL, dtype="float32")
    loaded = dict(hf_loading._LOADED)
    pipe = transformers.pipeline("text-generation", model=lm, tokenizer=tok)
    llm = lch.HuggingFacePipeline(pipeline=pipe)
    chat = lch.ChatHuggingFace(llm=llm, tokenizer=tok)
    model = SpeculativeThinkingChatModel(small_model=llm, target_model=chat, temperature=0, max_tokens=12)
    assert model.small_model is llm
    assert model.target_model is chat
    msg = model.invoke("Hello")
    small, target = model._generators()
    assert small.model is lm  # type: ignore[attr-defined]
    assert target.model is lm  # type: ignore[attr-defined]
    assert small.tokenizer is tok  # type: ignore[attr-defined]
    assert target.tokenizer is tok  # type: ignore[attr-defined]
    assert dict(hf_loading._LOADED) == loaded  # nothing else was loaded
    assert msg.content == smol_pair(max_tokens=12).invoke("Hello").content  # same weights, same text


def test_both_models_write_and_report() -> None:
    config = {**EVERY_BOUNDARY, "opening": True, "opening_tokens": 6}
    model = SpeculativeThinkingChatModel(
        small_model=SMOL, target_model=TINY_TARGET_MODEL, config=config, temperature=0, max_tokens=20
    )
    chunks = list(model.stream("Name two colors."))
    authors = {c.response_metadata["authors"][0] for c in chunks[:-1] if c.response_metadata.get("authors")}
    assert {"small", "target"} <= authors
    last = chunks[-1]
    stats = last.response_metadata["speculative_thinking"]
    assert stats["output_tokens"]["target"] > 0
    assert stats["output_tokens"]["small"] > 0
    assert stats["openings"] == 1
    assert last.usage_metadata["output_tokens"] == sum(stats["output_tokens"].values())  # type: ignore[index]
    messages = [HumanMessage("Name two colors.")]
    assert last.usage_metadata["input_tokens"] == model.get_num_tokens_from_messages(messages)  # type: ignore[index]
    target_tok = model._generators()[1].tokenizer  # type: ignore[attr-defined]
    assert model.get_token_ids("hello world") == target_tok("hello world", add_special_tokens=False)["input_ids"]


def test_chain_returns_only_the_answer() -> None:
    model = smol_pair(max_tokens=16)
    prompt = ChatPromptTemplate.from_messages([("system", "Answer briefly."), ("human", "{question}")])
    answer = (prompt | model | StrOutputParser()).invoke({"question": "What is the capital of France?"})
    assert isinstance(answer, str)
    assert answer
    msg = model.invoke(prompt.format_messages(question="What is the capital of France?"))
    assert answer == msg.content
    assert "<think>" not in answer


@pytest.mark.parametrize("make", [chat_model_node, subgraph_node])
def test_langgraph_streams_tokens_in_messages_mode(make: Any) -> None:
    model = smol_pair(max_tokens=16, config=EVERY_BOUNDARY)
    g = StateGraph(MessagesState)
    g.add_node("think", make(model))
    g.add_edge(START, "think")
    app = g.compile()
    tokens, events, final = [], [], None
    stream = app.stream(
        {"messages": [("user", "List two fruits, one per paragraph.")]},
        {"recursion_limit": 5},
        stream_mode=["messages", "custom", "values"],
    )
    for mode, data in stream:
        if mode == "messages":
            tokens.append(data[0])
        elif mode == "custom":
            events.append(data)
        else:
            final = data
    assert final is not None
    answer = final["messages"][-1]
    assert answer.content
    assert len(tokens) > 2
    assert "".join(str(t.content) for t in tokens) == answer.content
    assert all(e["type"] == "intervention" for e in events)


def test_concurrent_calls_equal_sequential() -> None:
    model = smol_pair(max_tokens=10, config=EVERY_BOUNDARY)
    prompts = [
        "Name a fruit.",
        "Say hello.",
        "What is 2 + 3?",
        "Name a color.",
        "List two animals, one per paragraph.",
        "Name a planet.",
        "What is the capital of Italy?",
        "Give a word that rhymes with cat.",
    ]

    def outcome(msg: Any) -> tuple[Any, ...]:
        return msg.content, msg.response_metadata["speculative_thinking"]["output_tokens"]

    sequential = [outcome(model.invoke(p)) for p in prompts]
    gathered = asyncio.run(model.abatch(prompts, config={"max_concurrency": 8}))
    assert [outcome(m) for m in gathered] == sequential
    with ThreadPoolExecutor(8) as pool:
        assert [outcome(m) for m in pool.map(model.invoke, prompts)] == sequential


class City(BaseModel):
    name: str
    country: str


def test_structured_output_with_a_json_capable_model() -> None:
    qwen = TINY_TARGET_MODEL  # SmolLM2-135M rarely writes JSON; Qwen2.5-Coder-0.5B does
    model = SpeculativeThinkingChatModel(small_model=qwen, target_model=qwen, temperature=0, max_tokens=32)
    city = model.with_structured_output(City).invoke("What is the capital of France?")
    assert isinstance(city, City)
    assert city.name == "Paris"


async def test_a_cancelled_ainvoke_stops_and_frees_the_models() -> None:
    """Issue 17: wait_for cancels the run within a decode step; the process goes idle; the next call starts at once."""
    import resource
    import threading
    import time

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    llm = SpeculativeThinkingChatModel(
        small_model=TINY_SMALL_MODEL, target_model=TINY_TARGET_MODEL, config="non_reasoning", temperature=0
    )
    await llm.ainvoke("Hi", max_tokens=2)  # load both models first
    t0 = time.perf_counter()
    await llm.ainvoke("Hi", max_tokens=2)
    short_call = time.perf_counter() - t0
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(llm.ainvoke("Write a long story about a dragon.", max_tokens=400), 1.5)
    assert not [t for t in threading.enumerate() if t.name == "spec-graph-run" and t.is_alive()]
    before = cpu()
    await asyncio.sleep(1.0)
    assert cpu() - before < 0.3  # the run went on: it would spend ~1 CPU-second per second or more
    t0 = time.perf_counter()
    await llm.ainvoke("Hi", max_tokens=2)
    assert time.perf_counter() - t0 < 3 * short_call + 1.0  # the models were free


def test_model_kwargs_reach_from_pretrained() -> None:
    llm = smol_pair(max_tokens=4, model_kwargs={"attn_implementation": "eager"})
    assert llm.invoke("Hello").content
    small, _ = llm._generators()
    assert small.model.config._attn_implementation == "eager"  # type: ignore[attr-defined]
