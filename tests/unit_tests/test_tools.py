"""Tool calling on scripted generators: bind_tools checks, the prompt, every parser branch, streaming, agents."""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from pydantic import BaseModel, Field

from spec_graph._messages import convert_messages
from spec_graph.chat_model import SpeculativeThinkingChatModel
from spec_graph.generators import EOS, ScriptedGenerator
from spec_graph.tools import HermesParser, normalize_tools, parser_for, tool_request

CALL = '<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>'


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def no_doc(a: int) -> int:
    return a


class Convert(BaseModel):
    """Convert a length between units."""

    value: float = Field(description="the number")
    unit: str


@tool
def shout(text: str) -> str:
    """Upper-case the text."""
    return text.upper()


def model_for(answer: str, target: str | None = None) -> tuple[SpeculativeThinkingChatModel, ScriptedGenerator]:
    small = ScriptedGenerator.from_document(answer + EOS, name="qwen-small")
    big = ScriptedGenerator.from_document((target or answer) + EOS, name="qwen-target")
    llm = SpeculativeThinkingChatModel(small_model=small, target_model=big, temperature=0, config="non_reasoning")
    return llm, small


# -- bind_tools -------------------------------------------------------------------------------------
def test_every_kind_of_tool_is_converted() -> None:
    specs = normalize_tools([add, Convert, shout, {"name": "d", "description": "dict tool", "parameters": {}}])
    assert [s["function"]["name"] for s in specs] == ["add", "Convert", "shout", "d"]
    assert all(s["type"] == "function" for s in specs)


@pytest.mark.parametrize(
    ("tools", "kwargs", "match"),
    [
        ([no_doc], {}, "tool 'no_doc' has no description"),
        ([{"name": "d", "parameters": {}}], {}, "tool 'd' has no description"),
        ([add], {"tool_choice": "multiply"}, "tool_choice 'multiply' is not 'auto'.*add"),
        ([add], {"tool_choice": 3}, "tool_choice 3 is not"),
        ([add], {"tool_parser": "xml"}, "unknown tool_parser 'xml'; expected one of: hermes"),
        ([], {}, "needs at least one tool"),
        ([object()], {}, "tool 0 \\(object\\) cannot be used as a tool"),
    ],
)
def test_bind_tools_errors_are_one_line(tools: list[Any], kwargs: dict[str, Any], match: str) -> None:
    llm, _ = model_for("x")
    with pytest.raises(ValueError, match=match) as info:
        llm.bind_tools(tools, **kwargs)
    assert "\n" not in str(info.value)


def test_tool_choice_forms() -> None:
    names = {"tools": [add, shout]}
    assert tool_request({**names, "tool_choice": "any"}, "m").choice == "required"  # type: ignore[union-attr]
    assert tool_request({**names, "tool_choice": True}, "m").choice == "required"  # type: ignore[union-attr]
    assert tool_request({**names, "tool_choice": "none"}, "m").choice == "none"  # type: ignore[union-attr]
    fn = {"type": "function", "function": {"name": "shout"}}
    assert tool_request({**names, "tool_choice": fn}, "m").choice == "shout"  # type: ignore[union-attr]
    assert tool_request({}, "m") is None
    with pytest.raises(ValueError, match="needs tools"):
        tool_request({"tool_choice": "any"}, "m")


def test_parser_chosen_from_the_model_and_overridable() -> None:
    assert isinstance(parser_for("Qwen/Qwen2.5-Coder-1.5B-Instruct"), HermesParser)
    assert isinstance(parser_for("some-other-model"), HermesParser)  # asked for the Hermes format
    assert isinstance(parser_for("x", "hermes"), HermesParser)


# -- the parser ---------------------------------------------------------------------------------------
P = HermesParser()


def test_parse_one_call_and_text() -> None:
    answer = P.parse(f"Let me add.\n{CALL}", ["add"])
    assert answer.content == "Let me add."
    assert [(c["name"], c["args"]) for c in answer.tool_calls] == [("add", {"a": 2, "b": 3})]
    assert answer.tool_calls[0]["id"].startswith("call_")
    assert not answer.invalid


def test_parse_parallel_and_limited() -> None:
    two = CALL + "\n" + CALL.replace('"a": 2', '"a": 5')
    assert len(P.parse(two, ["add"]).tool_calls) == 2
    one = P.parse(two, ["add"], parallel=False)
    assert len(one.tool_calls) == 1
    assert one.invalid[0]["error"] is not None and "parallel_tool_calls=False" in one.invalid[0]["error"]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('<tool_call>{"name": "add", "arguments": {"a": 2</tool_call>', "not valid JSON"),
        ("<tool_call>[1, 2]</tool_call>", "expected a JSON object"),
        ('<tool_call>{"name": "add", "arguments": [1]}</tool_call>', "not a JSON object"),
        ('<tool_call>{"name": "mul", "arguments": {}}</tool_call>', "'mul' is not a bound tool; bound: add"),
    ],
)
def test_parse_invalid_calls(text: str, error: str) -> None:
    answer = P.parse(text, ["add"])
    assert not answer.tool_calls
    assert len(answer.invalid) == 1
    assert error in str(answer.invalid[0]["error"])


def test_parse_lenient_forms() -> None:
    as_string = '<tool_call>{"name": "add", "arguments": "{\\"a\\": 1, \\"b\\": 1}"}</tool_call>'
    assert P.parse(as_string, ["add"]).tool_calls[0]["args"] == {"a": 1, "b": 1}
    fenced = '<tool_call>\n```json\n{"name": "add", "parameters": {"a": 1}}\n```\n</tool_call>'
    assert P.parse(fenced, ["add"]).tool_calls[0]["args"] == {"a": 1}
    unclosed = '<tool_call>\n{"name": "add", "arguments": {}}'  # cut off before the closing tag
    assert P.parse(unclosed, ["add"]).tool_calls[0]["name"] == "add"
    assert P.parse("no calls here", ["add"]).content == "no calls here"


# -- messages -------------------------------------------------------------------------------------------
def test_messages_with_tool_calls_and_results_convert() -> None:
    call = {"name": "add", "args": {"a": 2, "b": 3}, "id": "c1"}
    dicts = convert_messages(
        [HumanMessage("q"), AIMessage("", tool_calls=[call]), ToolMessage("5", tool_call_id="c1", name="add")]
    )
    assert dicts[1] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "add", "arguments": {"a": 2, "b": 3}}}],
    }
    assert dicts[2] == {"role": "tool", "content": "5", "tool_call_id": "c1", "name": "add"}
    two = convert_messages([ToolMessage("1", tool_call_id="a"), ToolMessage("2", tool_call_id="b")])
    assert len(two) == 2  # tool results are never merged


# -- the chat model -----------------------------------------------------------------------------------
def test_invoke_parses_the_call_and_both_models_see_the_tools() -> None:
    llm, small = model_for(CALL)
    msg = llm.bind_tools([add]).invoke("What is 2 + 3?")
    assert isinstance(msg, AIMessage)
    assert msg.content == ""
    assert [(c["name"], c["args"]) for c in msg.tool_calls] == [("add", {"a": 2, "b": 3})]
    big = llm.target_model
    assert small.last_tools is not None and big.last_tools == small.last_tools
    assert small.last_tools[0]["function"]["name"] == "add"


def test_invoke_moves_invalid_calls_and_keeps_the_answer() -> None:
    text = 'Sure.\n<tool_call>{"name": "mul", "arguments": {}}</tool_call>'
    llm, _ = model_for(text)
    msg = llm.bind_tools([add]).invoke("q")
    assert msg.tool_calls == []
    assert msg.content == "Sure."
    assert msg.invalid_tool_calls[0]["name"] == "mul"
    assert "not a bound tool" in str(msg.invalid_tool_calls[0]["error"])


def test_stream_gives_tool_call_chunks_and_no_call_text() -> None:
    llm, _ = model_for(f"Adding.\n{CALL}")
    chunks = list(llm.bind_tools([add]).stream("q"))
    assert all("<tool_call>" not in str(c.content) and "arguments" not in str(c.content) for c in chunks)
    with_calls = [c for c in chunks if isinstance(c, AIMessageChunk) and c.tool_call_chunks]
    assert len(with_calls) == 1
    tcc = with_calls[0].tool_call_chunks[0]
    assert tcc["name"] == "add" and json.loads(str(tcc["args"])) == {"a": 2, "b": 3} and tcc["index"] == 0
    assert with_calls[0].response_metadata["authors"] == ["small"]
    full = chunks[0]
    for c in chunks[1:]:
        full = full + c
    assert isinstance(full, AIMessageChunk)
    assert full.content.strip() == "Adding."  # type: ignore[union-attr]
    assert [c["name"] for c in full.tool_calls] == ["add"]


def test_tool_choice_none_shows_no_tools_and_parses_nothing() -> None:
    llm, small = model_for(CALL)
    msg = llm.bind_tools([add], tool_choice="none").invoke("q")
    assert small.last_tools is None
    assert msg.tool_calls == [] and "<tool_call>" in str(msg.content)


def test_forced_choice_is_instructed_and_checked() -> None:
    llm, small = model_for("It is 5.")
    msg = llm.bind_tools([add, shout], tool_choice="add").invoke([SystemMessage("Be brief."), HumanMessage("q")])
    assert msg.tool_calls == [] and msg.content == "It is 5."  # the answer is kept
    assert msg.response_metadata["tool_choice_unmet"] is True
    assert small.last_tools is not None and [t["function"]["name"] for t in small.last_tools] == ["add"]
    forced, _ = model_for(CALL)
    ok = forced.bind_tools([add], tool_choice="any").invoke("q")
    assert ok.tool_calls and "tool_choice_unmet" not in ok.response_metadata


def test_instruction_for_forced_choice() -> None:
    req = tool_request({"tools": [add], "tool_choice": "required"}, "qwen")
    assert req is not None
    msgs = req.instruct([{"role": "user", "content": "q"}])
    assert msgs[0]["role"] == "system" and "one or more tool calls" in msgs[0]["content"]
    assert "<tool_call>" in msgs[0]["content"]


def test_parallel_tool_calls_false_streams_the_second_as_text_then_invalid() -> None:
    llm, _ = model_for(CALL + "\n" + CALL)
    msg = llm.bind_tools([add], parallel_tool_calls=False).invoke("q")
    assert len(msg.tool_calls) == 1
    assert len(msg.invalid_tool_calls) == 1 and "parallel_tool_calls=False" in str(msg.invalid_tool_calls[0]["error"])


def test_tool_results_go_back_through_the_conversation() -> None:
    llm, _ = model_for("The answer is 5.")
    call = {"name": "add", "args": {"a": 2, "b": 3}, "id": "c1"}
    history = [HumanMessage("2+3?"), AIMessage("", tool_calls=[call]), ToolMessage("5", tool_call_id="c1")]
    msg = llm.bind_tools([add]).invoke(history)
    assert msg.content == "The answer is 5." and msg.tool_calls == []


def test_token_count_with_tools() -> None:
    llm, _ = model_for("x")
    with_tools = llm.get_num_tokens_from_messages([HumanMessage("x")], tools=[add])
    assert with_tools > llm.get_num_tokens_from_messages([HumanMessage("x")])


def test_create_agent_runs_a_tool_and_answers() -> None:
    from langchain.agents import create_agent

    small = ScriptedGenerator.from_responses([CALL + EOS, "The sum is 5." + EOS], name="qwen-small")
    big = ScriptedGenerator.from_responses([CALL + EOS, "The sum is 5." + EOS], name="qwen-target")
    llm = SpeculativeThinkingChatModel(small_model=small, target_model=big, temperature=0, policy="never")
    agent = create_agent(llm, tools=[add])
    out = agent.invoke({"messages": [HumanMessage("What is 2 + 3?")]})
    kinds = [type(m).__name__ for m in out["messages"]]
    assert kinds == ["HumanMessage", "AIMessage", "ToolMessage", "AIMessage"]
    assert out["messages"][2].content == "5"
    assert out["messages"][-1].content == "The sum is 5."


# -- bare calls (no tags) ---------------------------------------------------------------------------------
BARE = '```json\n{\n  "name": "add",\n  "arguments": {"a": 2, "b": 3}\n}\n```'


def test_parse_bare_calls() -> None:
    answer = P.parse(BARE, ["add"])
    assert answer.content == "" and [c["args"] for c in answer.tool_calls] == [{"a": 2, "b": 3}]
    listed = P.parse('[{"name": "add", "arguments": {"a": 1}}, {"name": "add", "arguments": {"a": 2}}]', ["add"])
    assert len(listed.tool_calls) == 2
    assert P.parse('{"name": "mul", "arguments": {}}', ["add"]).tool_calls == []  # not bound: an answer
    assert P.parse('{"name": "add", "age": 3}', ["add"]).tool_calls == []  # other fields: an answer
    assert P.parse("{not json", ["add"]).content == "{not json"


def test_bare_call_streams_as_a_call_and_json_answers_stream_as_text() -> None:
    llm, _ = model_for(BARE)
    chunks = list(llm.bind_tools([add]).stream("q"))
    assert not any(c.content for c in chunks)
    assert [c.tool_call_chunks[0]["name"] for c in chunks if isinstance(c, AIMessageChunk) and c.tool_call_chunks] == [
        "add"
    ]
    assert llm.bind_tools([add]).invoke("q").tool_calls[0]["args"] == {"a": 2, "b": 3}
    answer, _ = model_for('{"value": 5}')
    msg = answer.bind_tools([add]).invoke("q")
    assert msg.content == '{"value": 5}' and msg.tool_calls == []


def test_a_call_repeating_an_answered_one_is_invalid() -> None:
    llm, _ = model_for('{"name": "add", "arguments": {"b": 3, "a": 2}}')  # the same call, keys reordered
    call = {"name": "add", "args": {"a": 2, "b": 3}, "id": "c1"}
    history = [HumanMessage("2+3?"), AIMessage("", tool_calls=[call]), ToolMessage("5", tool_call_id="c1")]
    msg = llm.bind_tools([add]).invoke(history)
    assert msg.tool_calls == []
    assert "already in the conversation" in str(msg.invalid_tool_calls[0]["error"])
    fresh, _ = model_for(CALL.replace('"a": 2', '"a": 7'))
    assert fresh.bind_tools([add]).invoke(history).tool_calls[0]["args"] == {"a": 7, "b": 3}


def test_arguments_to_a_tool_that_takes_none_are_dropped() -> None:
    def ping() -> str:
        """Answer pong."""
        return "pong"

    echo = '<tool_call>{"name": "ping", "arguments": {"type": "object", "properties": {}}}</tool_call>'
    llm, _ = model_for(echo)
    assert llm.bind_tools([ping]).invoke("q").tool_calls[0]["args"] == {}
    streamed = [c for c in llm.bind_tools([ping]).stream("q") if isinstance(c, AIMessageChunk) and c.tool_call_chunks]
    assert streamed[0].tool_call_chunks[0]["args"] == "{}"


def test_a_forced_choice_is_a_grammar_for_local_models() -> None:
    from spec_graph.generators.grammar import Grammar

    assert tool_request({"tools": [add]}, "qwen").forced_grammar() is None  # type: ignore[union-attr]
    named = tool_request({"tools": [add, shout], "tool_choice": "shout"}, "qwen").forced_grammar()  # type: ignore[union-attr]
    assert isinstance(named, Grammar) and "<tool_call>" in named.description
    assert isinstance(tool_request({"tools": [add, shout], "tool_choice": "any"}, "qwen").forced_grammar(), Grammar)  # type: ignore[union-attr]
    llm, _ = model_for(CALL)  # scripted models write under no grammar: the instruction alone
    assert "grammar" not in llm._plan([HumanMessage("q")], None, {"tools": [add], "tool_choice": "any"}).constraint


def test_create_agent_with_a_structured_response_format() -> None:
    from langchain.agents import create_agent

    class Answer(BaseModel):
        """The final answer."""

        value: int

    call = '<tool_call>\n{"name": "Answer", "arguments": {"value": 84}}\n</tool_call>'
    small = ScriptedGenerator.from_responses([call + EOS], name="qwen-small")
    big = ScriptedGenerator.from_responses([call + EOS], name="qwen-target")
    llm = SpeculativeThinkingChatModel(small_model=small, target_model=big, temperature=0, policy="never")
    out = create_agent(llm, tools=[], response_format=Answer).invoke({"messages": [HumanMessage("What is 12 * 7?")]})
    assert out["structured_response"] == Answer(value=84)
