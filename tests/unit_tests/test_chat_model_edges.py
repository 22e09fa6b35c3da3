"""The chat model's rough edges (issue 17): profile, model_kwargs, what a model may be, ls_* keys, Studio's messages."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from langchain_core.language_models import FakeListChatModel
from langgraph.graph import START, MessagesState, StateGraph

from spec_graph.chat_model import SpeculativeThinkingChatModel
from spec_graph.config_errors import ConfigError
from spec_graph.generators import EOS, ScriptedGenerator, resolve
from spec_graph.generators.hf_loading import load_pretrained
from spec_graph.generators.resolve import resolve_generator
from spec_graph.langgraph_node import chat_model_node, subgraph_node

ANSWER = "Let me think.\n\nSo the answer is 4."


def scripted(**kwargs: Any) -> SpeculativeThinkingChatModel:
    small = ScriptedGenerator.from_document(ANSWER + EOS, name="small")
    target = ScriptedGenerator.from_document(ANSWER + EOS, name="target")
    return SpeculativeThinkingChatModel(small_model=small, target_model=target, temperature=0, **kwargs)


# -- what a model may be ----------------------------------------------------------------------------
@pytest.mark.parametrize("field", ["small_model", "target_model"])
def test_another_chat_model_is_rejected_at_construction(field: str) -> None:
    other = FakeListChatModel(responses=["hi"])
    with pytest.raises(ConfigError, match=rf"^{field}: cannot use a FakeListChatModel .*another chat model") as err:
        SpeculativeThinkingChatModel(**{field: other})
    assert "a server URL" in str(err.value)  # names what is accepted
    assert "\n" not in str(err.value)


def test_objects_that_are_not_models_are_rejected_and_models_accepted() -> None:
    with pytest.raises(ConfigError, match="target_model: cannot use a int as a model: give an embedded model name"):
        SpeculativeThinkingChatModel(target_model=42)
    endpoint = SimpleNamespace(llm=SimpleNamespace(endpoint_url="http://x"))  # ChatHuggingFace on an endpoint
    with pytest.raises(ConfigError, match="wraps a SimpleNamespace, not a local HuggingFacePipeline"):
        SpeculativeThinkingChatModel(target_model=endpoint)
    pipe = SimpleNamespace(pipeline=SimpleNamespace(model=object(), tokenizer=object()), model_id="m")
    for ok in ("some/hub-id", Path("/tmp/x"), "http://localhost:1/v1", (object(), object()), pipe):
        SpeculativeThinkingChatModel(target_model=ok)  # nothing is loaded


# -- model_kwargs --------------------------------------------------------------------------------------
def test_model_kwargs_reach_a_served_model_as_request_fields() -> None:
    url = "http://localhost:1/v1"
    gen = resolve_generator(url, model_kwargs={"repetition_penalty": 1.05})
    assert gen.options.extra_body == {"repetition_penalty": 1.05}  # type: ignore[attr-defined]
    assert resolve_generator(url) is not gen  # another setting, another generator
    assert resolve_generator(url, model_kwargs={"repetition_penalty": 1.05}) is gen  # the same: shared


def test_model_kwargs_reach_from_pretrained_for_a_named_model() -> None:
    before = dict(resolve._GENERATORS)
    model = SpeculativeThinkingChatModel(
        small_model="smollm2-135m-instruct",
        target_model="qwen2.5-coder-0.5b-instruct",
        model_kwargs={"attn_implementation": "eager"},
    )
    assert before == resolve._GENERATORS  # construction loads nothing
    small, target = model._generators()  # built, not loaded
    assert small._model_kwargs == target._model_kwargs == {"attn_implementation": "eager"}  # type: ignore[attr-defined]
    assert small._model is None  # type: ignore[attr-defined]
    assert model._identifying_params["model_kwargs"] == {"attn_implementation": "eager"}
    with pytest.raises(ValueError, match="model_kwargs may not set dtype: use the dtype"):
        load_pretrained("smollm2-135m-instruct", model_kwargs={"dtype": "float16"})


def test_model_kwargs_with_loaded_objects_is_an_error() -> None:
    gen = ScriptedGenerator.from_document("a" + EOS)
    with pytest.raises(ConfigError, match="model_kwargs apply to models given by name, folder, hub id or server URL"):
        SpeculativeThinkingChatModel(small_model=gen, target_model=gen, model_kwargs={"attn_implementation": "sdpa"})
    with pytest.raises(ValueError, match="model_kwargs apply to models given by name or URL"):
        resolve_generator(gen, model_kwargs={"x": 1})


# -- profile -------------------------------------------------------------------------------------------
def test_profile_is_truthful_and_reads_no_weights(tmp_path: Path) -> None:
    profile = scripted().profile
    assert profile is not None
    assert profile["text_inputs"] and profile["text_outputs"] and profile["temperature"]
    assert not profile["image_inputs"] and not profile["audio_inputs"]
    assert profile["reasoning_output"] is True
    assert "max_input_tokens" not in profile  # scripted models have no context window
    for folder, window in (("a", 8192), ("b", 32768)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "config.json").write_text(json.dumps({"max_position_embeddings": window}))
    model = SpeculativeThinkingChatModel(small_model=str(tmp_path / "a"), target_model=str(tmp_path / "b"))
    assert model.profile["max_input_tokens"] == 8192  # type: ignore[index]  # the smaller window
    pair = (SimpleNamespace(config=SimpleNamespace(max_position_embeddings=2048)), object())
    assert SpeculativeThinkingChatModel(small_model=pair, target_model=str(tmp_path / "b")).profile == {
        **model.profile,  # type: ignore[dict-item]
        "max_input_tokens": 2048,
    }


def test_profile_tool_calling_and_structured_output_match_the_model() -> None:
    """The profile says tool calling exactly when bind_tools works."""
    model = scripted()
    profile = model.profile
    assert profile is not None
    try:
        model.bind_tools([{"type": "function", "function": {"name": "f", "description": "d", "parameters": {}}}])
        binds = True
    except NotImplementedError:
        binds = False
    assert profile["tool_calling"] is binds
    assert profile["structured_output"] is False  # scripted models: prompted for JSON, not constrained
    named = SpeculativeThinkingChatModel(small_model="smollm2-135m-instruct", target_model="http://localhost:1/v1")
    assert named.profile["structured_output"] is True  # type: ignore[index]  # a grammar / response_format


# -- LangGraph -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [chat_model_node, subgraph_node])
def test_both_nodes_stream_chunks_with_the_ls_keys(make: Any) -> None:
    model = scripted(max_tokens=50)
    g = StateGraph(MessagesState)
    g.add_node("think", make(model))
    g.add_edge(START, "think")
    metas = [meta for _, meta in g.compile().stream({"messages": [("user", "2+2?")]}, stream_mode="messages")]
    assert metas
    for meta in metas:
        assert meta["ls_provider"] == "spec_graph"
        assert meta["ls_model_name"] == "small+target"
        assert meta["ls_model_type"] == "chat"
        assert meta["ls_temperature"] == 0


def test_studio_output_messages_end_with_the_answer() -> None:
    from spec_graph.studio import StudioContext, build_studio_graph

    small = ScriptedGenerator.from_document("<think>\nHmm.\n</think>\n\nFour." + EOS, name="small")
    context = StudioContext(small_model=small, target_model=small, preset="reasoning")  # type: ignore[arg-type]
    question = [{"role": "user", "content": "2+2?"}]
    state = build_studio_graph().invoke({"messages": question}, context=context)
    assert state["messages"] == [*question, {"role": "assistant", "content": "Four."}]
