"""Tools in the prompt: chat templates with and without ``tools``, served requests, both models of a run."""

from __future__ import annotations

import json
from typing import Any

from spec_graph import ScriptedGenerator, SpeculativeThinker
from spec_graph.generators.remote import RemoteGenerator
from spec_graph.generators.scripted import EOS
from spec_graph.generators.tool_prompt import (
    GENERIC_TOOL_INSTRUCTION,
    prepare_chat,
    template_supports_tools,
    wire_messages,
)

ADD = {
    "type": "function",
    "function": {"name": "add", "description": "Add two integers.", "parameters": {"type": "object"}},
}
CALLED = {
    "role": "assistant",
    "content": "",
    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "add", "arguments": {"a": 1}}}],
}
HISTORY: list[dict[str, Any]] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "q"},
    CALLED,
    {"role": "tool", "content": "2", "tool_call_id": "c1"},
    {"role": "tool", "content": "3", "tool_call_id": "c2"},
]
QWEN_LIKE = (
    "{% if tools %}TOOLS{% for t in tools %}{{ t.function.name }};{% endfor %}{% endif %}"
    "{% for m in messages %}[{{ m.role }}]{{ m.content }}"
    "{% for c in m.tool_calls or [] %}<call {{ c.function.name }} {{ c.function.arguments | tojson }}>{% endfor %}"
    "{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}"
)
PLAIN = "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}{% if add_generation_prompt %}[a]{% endif %}"


def test_a_template_with_tools_gets_them_and_the_history_as_is() -> None:
    msgs, shown = prepare_chat(HISTORY, [ADD], QWEN_LIKE)
    assert template_supports_tools(QWEN_LIKE) and not template_supports_tools(PLAIN)
    assert shown == [ADD] and msgs == HISTORY
    assert prepare_chat(HISTORY, None, QWEN_LIKE)[1] is None


def test_a_template_without_tools_gets_the_generic_instruction_and_text() -> None:
    msgs, shown = prepare_chat(HISTORY, [ADD], PLAIN)
    assert shown is None
    assert msgs[0]["content"].startswith("Be brief.\n\n# Tools")
    assert json.dumps(ADD) in msgs[0]["content"]
    assert GENERIC_TOOL_INSTRUCTION.split("{tools}")[1].split("{{")[0] in msgs[0]["content"]
    assert msgs[2] == {
        "role": "assistant",
        "content": '<tool_call>\n{"name": "add", "arguments": {"a": 1}}\n</tool_call>',
    }
    results = "<tool_response>\n2\n</tool_response>\n<tool_response>\n3\n</tool_response>"
    assert msgs[3] == {"role": "user", "content": results}  # consecutive results: one user turn
    no_system, _ = prepare_chat(HISTORY[1:2], [ADD], PLAIN)
    assert no_system[0]["role"] == "system" and no_system[0]["content"].startswith("# Tools")


def test_served_messages_carry_json_string_arguments() -> None:
    wired = wire_messages([CALLED])
    assert wired[0]["tool_calls"][0]["function"]["arguments"] == '{"a": 1}'
    assert CALLED["tool_calls"][0]["function"]["arguments"] == {"a": 1}  # type: ignore[index]  # not changed


def test_served_model_renders_tools_with_its_template() -> None:
    gen = RemoteGenerator("m", base_url="http://127.0.0.1:9", chat_template=QWEN_LIKE)
    assert gen.render_prompt(HISTORY, [ADD]).startswith("TOOLSadd;[system]Be brief.")
    assert '<call add {"a": 1}>' in gen.render_prompt(HISTORY, [ADD])
    session = gen.start(HISTORY, [ADD])
    assert session.prompt_text is not None and session.prompt_text.startswith("TOOLSadd;")


def test_both_models_of_a_run_see_the_same_tools() -> None:
    small = ScriptedGenerator.from_document("It is 5." + EOS, name="small")
    target = ScriptedGenerator.from_document("It is 5." + EOS, name="target")
    thinker = SpeculativeThinker(small, target, "non_reasoning")
    thinker.run("2 + 3?", tools=[ADD])
    assert small.last_tools == target.last_tools == [ADD]
    thinker.run("2 + 3?")
    assert small.last_tools is None and target.last_tools is None


def test_a_generator_without_tools_still_serves_runs_without_them() -> None:
    class Old(ScriptedGenerator):
        def start(self, messages: Any) -> Any:  # type: ignore[override]  # the protocol before tools
            return super().start(messages)

    old = Old.from_document("It is 5." + EOS)
    assert SpeculativeThinker(old, old, "non_reasoning").run("2 + 3?").answer.startswith("It is 5.")


def test_served_chat_api_sends_the_tools_to_the_server() -> None:
    import httpx

    from spec_graph.generators.base import GenerateRequest

    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        answer = {"choices": [{"index": 0, "message": {"content": "It is 5."}, "finish_reason": "stop"}]}
        return httpx.Response(200, json=answer)

    gen = RemoteGenerator("m", base_url="http://test", api="chat", engine="generic", stream=False)
    gen.server._client = httpx.Client(transport=httpx.MockTransport(handler))
    gen.start(HISTORY, [ADD]).generate([], GenerateRequest(max_tokens=8))
    assert bodies[-1]["tools"] == [ADD]
    assert bodies[-1]["messages"][2]["tool_calls"][0]["function"]["arguments"] == '{"a": 1}'
    gen.start(HISTORY[:2]).generate([], GenerateRequest(max_tokens=8))
    assert "tools" not in bodies[-1]
