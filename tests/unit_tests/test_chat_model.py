"""SpeculativeThinkingChatModel on scripted generators: output conventions, streaming, stop, tools."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
)
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGenerationChunk, GenerationChunk
from langchain_core.prompts import ChatPromptTemplate
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from pydantic import BaseModel

from spec_graph import _streaming as parser
from spec_graph._messages import convert_messages
from spec_graph.chat_model import SpeculativeThinkingChatModel, speculation_events
from spec_graph.generators import EOS, ScriptedGenerator, resolve
from spec_graph.generators.resolve import resolve_generator
from spec_graph.langgraph_node import chat_model_node, subgraph_node
from spec_graph.thinker import split_reasoning

PLAIN_SMALL = "Let me think.\n\nWait, maybe not.\n\nSo the answer is 4."
PLAIN_TARGET = "Let me think.\n\nWait, let me check: 2+2=4.\n\nSo the answer is 4."
THINKING = "<think>\nLet me think.\n\nWait, 2+2 is 4.\n</think>\n\nThe answer is 4."


def scripted(small_doc: str, target_doc: str | None = None, **kwargs: Any) -> SpeculativeThinkingChatModel:
    small = ScriptedGenerator.from_document(small_doc + EOS, name="small")
    target = ScriptedGenerator.from_document((target_doc or small_doc) + EOS, name="target")
    return SpeculativeThinkingChatModel(small_model=small, target_model=target, **{"temperature": 0, **kwargs})


def collect(model: SpeculativeThinkingChatModel, prompt: Any = "q", **kwargs: Any) -> list[AIMessageChunk]:
    return list(model.stream(prompt, **kwargs))


def aggregate(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    full = chunks[0]
    for c in chunks[1:]:
        full = full + c
    return full


# -- construction -----------------------------------------------------------------------------------
def test_construction_loads_nothing() -> None:
    before = dict(resolve._GENERATORS)
    model = SpeculativeThinkingChatModel(small_model="smollm2-135m-instruct", target_model="some/hub-id", api_key="x")
    assert before == resolve._GENERATORS  # generators are built on the first call only
    assert model._thinker is None
    assert model._gens is None
    assert model.model_name == "smollm2-135m-instruct+some/hub-id"
    assert SpeculativeThinkingChatModel().small_name == "qwen2.5-coder-0.5b-instruct"  # the default pair


def test_objects_are_not_copied() -> None:
    small = ScriptedGenerator.from_document("a" + EOS)
    pipe = SimpleNamespace(pipeline=SimpleNamespace(model=object(), tokenizer=object()), model_id="m")
    model = SpeculativeThinkingChatModel(small_model=small, target_model=pipe)
    assert model.small_model is small
    assert model.target_model is pipe
    assert model.target_name == "m"


def test_config_and_fields() -> None:
    model = SpeculativeThinkingChatModel(config="non_reasoning", temperature=0, max_tokens=7, top_k=3, seed=1)
    cfg = model.resolved_config
    assert (cfg.not_reasoning, cfg.opening, cfg.temperature, cfg.max_new_tokens, cfg.top_k, cfg.seed) == (
        True,
        True,
        0.0,
        7,
        3,
        1,
    )
    assert SpeculativeThinkingChatModel(config={"probe_tokens": 5}).resolved_config.probe_tokens == 5
    with pytest.raises(ValueError, match="unknown preset"):
        SpeculativeThinkingChatModel(config="nope")
    with pytest.raises(ValueError, match="empty"):
        SpeculativeThinkingChatModel(stop=[""])


def test_from_model_ids() -> None:
    model = SpeculativeThinkingChatModel.from_model_ids(
        "smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct", config="non_reasoning", device="cpu", max_tokens=9
    )
    assert (model.small_model, model.target_model, model.device, model.max_tokens) == (
        "smollm2-135m-instruct",
        "qwen2.5-coder-0.5b-instruct",
        "cpu",
        9,
    )
    assert model._thinker is None


def test_identifying_and_ls_params() -> None:
    model = scripted(PLAIN_SMALL, max_tokens=50, stop=["x"])
    params = model._identifying_params
    assert json.loads(json.dumps(params)) == params
    assert params["small_model"] == "small"
    assert params["config"] == {"temperature": 0.0, "max_new_tokens": 50}
    ls = model._get_ls_params(stop=["y"])
    assert ls["ls_provider"] == "spec_graph"
    assert ls["ls_model_name"] == "small+target"
    assert (ls["ls_temperature"], ls["ls_max_tokens"], ls["ls_stop"]) == (0.0, 50, ["x", "y"])
    assert model._get_ls_params(model="other")["ls_model_name"] == "other"
    assert model._llm_type == "speculative-thinking-chat"


# -- resolving models ------------------------------------------------------------------------------
def test_resolve_generator_reuses_loaded_objects() -> None:
    lm, tok = SimpleNamespace(name_or_path="lm"), object()
    hf_pipeline = SimpleNamespace(pipeline=SimpleNamespace(model=lm, tokenizer=tok), model_id="lm-id")
    for spec in (hf_pipeline, SimpleNamespace(llm=hf_pipeline, tokenizer=tok), (lm, tok)):
        gen = resolve_generator(spec)
        assert gen.model is lm  # type: ignore[attr-defined]
        assert gen.tokenizer is tok  # type: ignore[attr-defined]
    assert resolve_generator("smollm2-135m-instruct") is resolve_generator("smollm2-135m-instruct")
    scripted_gen = ScriptedGenerator.from_document("x")
    assert resolve_generator(scripted_gen) is scripted_gen
    with pytest.raises(TypeError, match="not a local HuggingFacePipeline"):
        resolve_generator(SimpleNamespace(llm=SimpleNamespace(endpoint_url="http://x")))
    with pytest.raises(TypeError, match="cannot use"):
        resolve_generator(42)


# -- invoke ----------------------------------------------------------------------------------------
def test_invoke_content_usage_metadata() -> None:
    model = scripted(PLAIN_SMALL, PLAIN_TARGET)
    msg = model.invoke("What is 2+2?")
    assert isinstance(msg, AIMessage)
    assert msg.content == PLAIN_TARGET  # "Wait" at the boundary: the target wrote the rest
    usage = msg.usage_metadata
    assert usage is not None
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert "output_token_details" not in usage  # no thinking
    meta = msg.response_metadata
    assert meta["model_name"] == "small+target"
    assert meta["model_provider"] == "spec_graph"
    assert meta["finish_reason"] == "stop"
    stats = meta["speculative_thinking"]
    assert stats["interventions"] == {"reflection": 1}
    assert stats["output_tokens"]["small"] + stats["output_tokens"]["target"] == usage["output_tokens"]
    assert stats["finish_reason"] == "eos"
    assert 0 < stats["target_share"] < 1
    assert set(stats["model_seconds"]) == {"small", "target"}
    assert [s["author"] for s in stats["spans"]] == ["small", "target"]
    assert usage["input_tokens"] == model.get_num_tokens_from_messages([HumanMessage("What is 2+2?")])


def test_length_finish_and_call_overrides() -> None:
    model = scripted(PLAIN_SMALL, PLAIN_TARGET)
    msg = model.invoke("q", max_tokens=3)
    assert msg.response_metadata["finish_reason"] == "length"
    assert msg.usage_metadata["output_tokens"] == 3  # type: ignore[index]
    assert msg.content == "Let me think."
    assert model.invoke("q", probe_tokens=2).content  # any config field per call
    with pytest.raises(TypeError, match="unexpected argument 'bogus'"):
        model.invoke("q", bogus=1)


def test_conversation_messages() -> None:
    model = scripted(PLAIN_SMALL)
    msgs = [SystemMessage("s"), HumanMessage("hi", name="bob"), AIMessage("hello"), HumanMessage("2+2?")]
    assert model.invoke(msgs).content == PLAIN_SMALL


# -- streaming -------------------------------------------------------------------------------------
def test_stream_chunks_authors_and_last_chunk() -> None:
    model = scripted(PLAIN_SMALL, PLAIN_TARGET)
    chunks = collect(model)
    assert len(chunks) > 3
    *pieces, last = chunks
    assert last.chunk_position == "last"
    assert last.usage_metadata is not None
    assert last.response_metadata["model_name"] == "small+target"
    author = None
    authors = []  # each chunk's author: named where it changes
    for c in pieces:
        assert c.usage_metadata is None
        assert "model_name" not in c.response_metadata
        named = c.response_metadata.get("authors")
        assert named is None or (named in (["small"], ["target"]) and named[0] != author)
        author = named[0] if named else author
        authors.append(author)
    assert authors[0] == "small"
    assert authors[-1] == "target"
    full = aggregate(chunks)
    assert full.content == PLAIN_TARGET
    turns = [a for i, a in enumerate(authors) if i == 0 or a != authors[i - 1]]
    assert full.response_metadata["authors"] == turns  # each turn of the pen once, not one per chunk
    assert len(turns) < len(pieces)
    assert full.response_metadata["model_name"] == "small+target"  # set once, not concatenated
    assert full.response_metadata["finish_reason"] == "stop"
    invoked = model.invoke("q")
    assert invoked.content == full.content
    assert invoked.usage_metadata == full.usage_metadata


async def test_astream_and_ainvoke() -> None:
    model = scripted(PLAIN_SMALL, PLAIN_TARGET)
    chunks = [c async for c in model.astream("q")]
    assert chunks[-1].chunk_position == "last"
    assert aggregate(chunks).content == PLAIN_TARGET
    assert (await model.ainvoke("q")).content == PLAIN_TARGET


def test_injected_text_has_its_author() -> None:
    cfg = {"negative_threshold": 1, "negative_threshold_cap": 1, "recap_tokens": 3, "probe_tokens": 3}
    small = "Step one.\n\nWait, no.\n\nWait, again.\n\nDone."
    model = scripted(small, small, config=cfg, max_tokens=20)
    chunks = collect(model)
    authors = {a for c in chunks[:-1] for a in c.response_metadata.get("authors", [])}
    assert "injected" in authors
    stats = chunks[-1].response_metadata["speculative_thinking"]
    assert stats["takeovers"] >= 1


def test_callbacks_receive_every_chunk() -> None:
    class Recorder(BaseCallbackHandler):
        def __init__(self) -> None:
            self.tokens: list[tuple[str, Any]] = []

        def on_llm_new_token(
            self,
            token: str | list[str | dict[str, Any]],
            *,
            chunk: GenerationChunk | ChatGenerationChunk | None = None,
            run_id: UUID,
            parent_run_id: UUID | None = None,
            tags: list[str] | None = None,
            **kwargs: Any,
        ) -> None:
            assert isinstance(token, str)
            self.tokens.append((token, chunk))

    for streaming in (False, True):  # _generate (run_manager in _stream) and the base's streaming path
        rec = Recorder()
        model = scripted(PLAIN_SMALL, PLAIN_TARGET, streaming=streaming)
        msg = model.invoke("q", config={"callbacks": [rec]})
        assert all(chunk is not None for _, chunk in rec.tokens)
        assert "".join(t for t, _ in rec.tokens) == msg.content
        assert len(rec.tokens) > 3


# -- reasoning ---------------------------------------------------------------------------------------
def test_reasoning_goes_to_reasoning_content() -> None:
    model = scripted(THINKING)
    chunks = collect(model)
    for c in chunks:
        assert not (c.content and c.additional_kwargs.get("reasoning_content"))  # never mixed
    full = aggregate(chunks)
    reasoning, answer = split_reasoning(THINKING)
    assert full.content == answer
    assert full.additional_kwargs["reasoning_content"] == reasoning
    msg = model.invoke("q")
    assert msg.content == answer
    assert [b["type"] for b in msg.content_blocks] == ["reasoning", "text"]
    details = msg.usage_metadata["output_token_details"]  # type: ignore[index]
    assert 0 < details["reasoning"] < msg.usage_metadata["output_tokens"]  # type: ignore[index]


def test_reasoning_output_version_v1_and_chain() -> None:
    model = scripted(THINKING, output_version="v1")
    msg = model.invoke("q")
    assert [b["type"] for b in msg.content] == ["reasoning", "text"]  # type: ignore[index]
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | scripted(THINKING) | StrOutputParser()
    assert chain.invoke({"q": "2+2?"}) == "The answer is 4."


def test_reasoning_none_is_inline_and_false_is_not_emitted() -> None:
    """ChatOllama's meaning: None leaves the text as written; False drops the reasoning."""
    msg = scripted(THINKING, reasoning=None).invoke("q")
    assert msg.content == THINKING
    assert "reasoning_content" not in msg.additional_kwargs
    model = scripted(THINKING, reasoning=False)
    chunks = collect(model)
    assert all("reasoning_content" not in c.additional_kwargs for c in chunks)
    msg = model.invoke("q")
    assert msg.content == split_reasoning(THINKING)[1]
    assert "reasoning_content" not in msg.additional_kwargs
    assert [b["type"] for b in msg.content_blocks] == ["text"]
    assert msg.usage_metadata["output_token_details"]["reasoning"] > 0  # type: ignore[index]  # still counted
    plain = scripted(PLAIN_SMALL, reasoning=False).invoke("q")  # no thinking: untouched
    assert plain.content == PLAIN_SMALL


def test_reasoning_profile_follows_the_field() -> None:
    assert scripted(THINKING).profile["reasoning_output"] is True  # type: ignore[index]
    assert scripted(THINKING, reasoning=None).profile["reasoning_output"] is False  # type: ignore[index]
    assert scripted(THINKING, reasoning=False).profile["reasoning_output"] is False  # type: ignore[index]


def test_template_that_opens_thinking() -> None:
    class Thinking(ScriptedGenerator):
        def render_prompt(self, messages: Any) -> str:
            return "<|user|>q<|assistant|><think>\n"

    doc = "Hmm, 2+2.\n\nIt is 4.\n</think>\n\nFour." + EOS
    gen = Thinking(ScriptedGenerator.from_document(doc).script, name="thinking")
    model = SpeculativeThinkingChatModel(small_model=gen, target_model=gen, temperature=0)
    msg = model.invoke("q")
    assert msg.content == "Four."
    assert msg.additional_kwargs["reasoning_content"] == "Hmm, 2+2.\n\nIt is 4."


def test_reasoning_cut_by_budget_stays_reasoning() -> None:
    msg = scripted(THINKING).invoke("q", max_tokens=4)
    assert msg.content == ""
    assert msg.additional_kwargs["reasoning_content"]
    usage = msg.usage_metadata
    assert usage["output_token_details"]["reasoning"] == usage["output_tokens"]  # type: ignore[index]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8])
def test_splitter_matches_split_reasoning(size: int) -> None:
    texts = [THINKING, "  <think>a</think>b", "<thi", "<think>x</thi", "plain </think> text", "a\n\n<think>b"]
    for text in texts:
        asm = parser.Assembler((), reasoning=True, in_reasoning=False)
        chunks = []
        for i in range(0, len(text), size):
            chunks += asm.feed("small", text[i : i + size])
        chunks += parser.chunks(asm.think.flush())
        reasoning = "".join(str(c.message.additional_kwargs.get("reasoning_content", "")) for c in chunks)
        content = "".join(str(c.message.content) for c in chunks)
        if text.lstrip().startswith("<think>") and "</think>" in text:
            assert (reasoning, content) == split_reasoning(text), text
        elif text.lstrip().startswith("<think>"):
            assert (reasoning, content) == ("x</thi", ""), text  # cut while thinking: all reasoning
        else:
            assert (reasoning, content) == ("", text), text  # no thinking: untouched


# -- stop ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stop", ["answer is", "\n\nSo", "r is 4", "k.\n\nW"])
def test_stop_cuts_before_match_and_never_streams_it(stop: str) -> None:
    model = scripted(PLAIN_SMALL, PLAIN_TARGET)
    expected = PLAIN_TARGET[: PLAIN_TARGET.index(stop)]
    chunks = collect(model, stop=[stop])
    emitted = "".join(str(c.content) for c in chunks)
    assert emitted == expected
    assert chunks[-1].response_metadata["finish_reason"] == "stop"
    assert model.invoke("q", stop=[stop]).content == expected


def test_stop_from_instance_and_call_are_merged() -> None:
    model = scripted(PLAIN_SMALL, PLAIN_TARGET, stop=["answer"])
    assert model.invoke("q").content == PLAIN_TARGET[: PLAIN_TARGET.index("answer")]
    assert model.invoke("q", stop=["check"]).content == PLAIN_TARGET[: PLAIN_TARGET.index("check")]
    with pytest.raises(ValueError, match="empty"):
        model.invoke("q", stop=[""])


def test_stop_filter_holds_back_prefixes() -> None:
    f = parser.StopFilter(["STOP"])
    assert f.feed("small", "abc S") == [("small", "abc ")]
    assert f.feed("target", "T") == []
    assert f.feed("target", "x") == [("small", "S"), ("target", "Tx")]
    assert f.feed("small", "ST") == []
    assert f.feed("small", "OP tail") == []
    assert f.stopped


# -- concurrency -----------------------------------------------------------------------------------
def test_batch_and_threads_equal_sequential() -> None:
    model = scripted(PLAIN_SMALL, PLAIN_TARGET)
    prompts: list[LanguageModelInput] = [f"question {i}" for i in range(8)]
    sequential = [model.invoke(p).content for p in prompts]
    assert [m.content for m in model.batch(prompts, config={"max_concurrency": 8})] == sequential
    with ThreadPoolExecutor(8) as pool:
        assert [m.content for m in pool.map(model.invoke, prompts)] == sequential
    assert [m.content for m in asyncio.run(model.abatch(prompts))] == sequential


# -- events ----------------------------------------------------------------------------------------
def test_speculation_events_context() -> None:
    events: list[dict[str, Any]] = []
    model = scripted(PLAIN_SMALL, PLAIN_TARGET)
    with speculation_events(events.append, types=("intervention", "text")):
        model.invoke("q")
    model.invoke("q")  # outside the block: nothing more
    kinds = [e["type"] for e in events]
    assert kinds.count("intervention") == 1
    assert "text" in kinds


# -- tools and structured output -------------------------------------------------------------------
def test_bind_tools_without_tools_is_a_clear_error() -> None:  # tool calling: tests/unit_tests/test_tools.py
    with pytest.raises(ValueError, match="needs at least one tool"):
        scripted(PLAIN_SMALL).bind_tools([])


class Answer(BaseModel):
    value: int
    unit: str


def test_structured_output_pydantic() -> None:
    model = scripted('```json\n{"value": 84, "unit": "apples"}\n```')
    result = model.with_structured_output(Answer).invoke("12 * 7 apples?")
    assert result == Answer(value=84, unit="apples")
    as_dict = model.with_structured_output(Answer.model_json_schema(), method="json_mode").invoke("q")
    assert as_dict == {"value": 84, "unit": "apples"}


def test_structured_output_sends_the_schema() -> None:
    seen: list[list[dict[str, Any]]] = []

    class Recording(ScriptedGenerator):
        def start(self, messages: Any) -> Any:
            seen.append([dict(m) for m in messages])
            return super().start(messages)

    gen = Recording(ScriptedGenerator.from_document('{"value": 1, "unit": "u"}' + EOS).script)
    model = SpeculativeThinkingChatModel(small_model=gen, target_model=gen, temperature=0)
    assert model.with_structured_output(Answer).invoke("q") == Answer(value=1, unit="u")
    assert seen[0][0]["role"] == "system"
    assert '"value"' in seen[0][0]["content"]


def test_structured_output_include_raw_and_errors() -> None:
    model = scripted("not json at all")
    out = model.with_structured_output(Answer, include_raw=True).invoke("q")
    assert isinstance(out["raw"], AIMessage)
    assert out["parsed"] is None
    assert out["parsing_error"] is not None
    with pytest.raises(ValueError, match="schema must be given"):
        model.with_structured_output(None)
    with pytest.raises(ValueError, match="unknown method"):
        model.with_structured_output(Answer, method="xml")  # type: ignore[arg-type]


# -- messages --------------------------------------------------------------------------------------
def test_convert_messages() -> None:
    msgs: list[BaseMessage] = [
        SystemMessage("a"),
        SystemMessage([{"type": "text", "text": "b"}]),
        HumanMessage(["x", {"type": "text", "text": "y"}]),
        AIMessage([{"type": "reasoning", "reasoning": "r"}, {"type": "text", "text": "z"}]),
        ChatMessage(role="developer", content="d"),
    ]
    assert convert_messages(msgs) == [
        {"role": "system", "content": "a\n\nb"},
        {"role": "user", "content": "xy"},
        {"role": "assistant", "content": "z"},
        {"role": "system", "content": "d"},
    ]
    assert len(convert_messages([HumanMessage("a"), HumanMessage("b")], merge_consecutive=False)) == 2


@pytest.mark.parametrize(
    ("message", "match"),
    [
        (HumanMessage([{"type": "image_url", "image_url": {"url": "x"}}]), "text-only"),
        (HumanMessage([{"type": "weird"}]), "unsupported content block"),
        (ChatMessage(role="critic", content="x"), "role 'critic'"),
    ],
)
def test_convert_messages_errors(message: BaseMessage, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        convert_messages([message])
    with pytest.raises(ValueError, match="empty"):
        convert_messages([])


def test_token_counting_with_scripted_target() -> None:
    model = scripted(PLAIN_SMALL)
    assert model.get_num_tokens("a b c") == 3
    with pytest.raises(NotImplementedError):
        model.get_token_ids("a b c")
    with pytest.raises(ValueError, match="no description"):
        model.get_num_tokens_from_messages([HumanMessage("x")], tools=[{"name": "f"}])


# -- LangGraph -------------------------------------------------------------------------------------
def _parent(node: Any) -> Any:
    g = StateGraph(MessagesState)
    g.add_node("think", node)
    g.add_edge(START, "think")
    return g.compile(checkpointer=InMemorySaver())


@pytest.mark.parametrize("make", [chat_model_node, subgraph_node])
def test_langgraph_nodes_stream_messages_and_events(make: Any) -> None:
    model = scripted(PLAIN_SMALL, PLAIN_TARGET, max_tokens=30)
    app = _parent(make(model))
    tokens, events = [], []
    config = {"configurable": {"thread_id": make.__name__}, "recursion_limit": 4}  # the inner graph needs more
    for mode, data in app.stream({"messages": [("user", "2+2?")]}, config, stream_mode=["messages", "custom"]):
        if mode == "messages":
            chunk, meta = data
            assert meta["langgraph_node"] == "think"
            tokens.append(chunk)
        else:
            events.append(data)
    final = app.get_state(config).values["messages"]
    assert [type(m).__name__ for m in final] == ["HumanMessage", "AIMessage"]
    assert final[-1].content == PLAIN_TARGET
    assert "".join(str(t.content) for t in tokens) == PLAIN_TARGET
    assert len(tokens) > 3
    assert [e["kind"] for e in events] == ["intervention"]
    reference = model.invoke("2+2?")
    assert final[-1].usage_metadata == reference.usage_metadata
    assert (
        final[-1].response_metadata["speculative_thinking"]["output_tokens"]
        == (reference.response_metadata["speculative_thinking"]["output_tokens"])
    )


async def test_chat_model_node_async() -> None:
    model = scripted(PLAIN_SMALL, PLAIN_TARGET)
    app = _parent(chat_model_node(model))
    config = {"configurable": {"thread_id": "a"}}
    seen = [
        item async for item in app.astream({"messages": [("user", "q")]}, config, stream_mode=["messages", "custom"])
    ]
    assert any(mode == "custom" for mode, _ in seen)
    assert "".join(str(d[0].content) for mode, d in seen if mode == "messages") == PLAIN_TARGET


def test_subgraph_node_shows_inner_nodes() -> None:
    model = scripted(PLAIN_SMALL, PLAIN_TARGET)
    app = _parent(subgraph_node(model))
    config = {"configurable": {"thread_id": "s"}}
    names = set()
    for ns, update in app.stream({"messages": [("user", "q")]}, config, stream_mode="updates", subgraphs=True):
        if ns:
            names.update(update)
    assert {"small_generate", "classify_step", "target_intervene", "finalize"} <= names


def test_subgraph_node_uses_the_models_policy_object_and_can_be_cancelled() -> None:
    import threading

    from spec_graph.errors import RunCancelledError
    from spec_graph.langgraph_node import CANCEL_KEY
    from spec_graph.policies import AlwaysPolicy

    model = scripted(PLAIN_SMALL, PLAIN_TARGET, policy=AlwaysPolicy())
    out = _parent(subgraph_node(model)).invoke({"messages": [("user", "q")]}, {"configurable": {"thread_id": "p"}})
    message = out["messages"][-1]
    assert message.content == PLAIN_TARGET  # the target alone: the policy object was used
    assert set(message.response_metadata["authors"]) == {"target"}
    cancel = threading.Event()
    cancel.set()
    config = {"configurable": {"thread_id": "c", CANCEL_KEY: cancel}}
    with pytest.raises(RunCancelledError):
        _parent(subgraph_node(scripted(PLAIN_SMALL, PLAIN_TARGET))).invoke({"messages": [("user", "q")]}, config)


def test_node_needs_messages() -> None:
    with pytest.raises(ValueError, match="no messages"):
        chat_model_node(scripted(PLAIN_SMALL)).invoke({"messages": []})


@pytest.mark.parametrize(("kwargs", "field"), [({"temperature": -1}, "temperature"), ({"top_p": 2}, "top_p")])
def test_a_bad_constructor_value_is_one_line_naming_the_field(kwargs: dict[str, Any], field: str) -> None:
    from pydantic import ValidationError

    from spec_graph.config_errors import ConfigError

    with pytest.raises(ConfigError) as info:
        SpeculativeThinkingChatModel(**kwargs)
    assert isinstance(info.value, ValidationError)  # still what LangChain's conventions expect
    assert "\n" not in str(info.value) and field in str(info.value)
