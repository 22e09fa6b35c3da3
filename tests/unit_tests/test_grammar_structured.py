"""``with_structured_output`` under a grammar (local models) and with ``response_format`` (served)."""

from __future__ import annotations

import json
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from spec_graph import ScriptedGenerator, SpeculativeThinkingChatModel
from spec_graph._structured_output import run_constraint
from spec_graph.generators import GenerateRequest
from spec_graph.generators.grammar import Grammar, GrammarError
from spec_graph.generators.remote import RemoteGenerator
from tests.unit_tests.test_grammar import tiny

MESSAGES = [{"role": "user", "content": "q"}]


class Place(BaseModel):
    city: Literal["Paris", "Rome"]
    zone: Literal[1, 2, 3]


class Person(BaseModel):
    role: Literal["admin", "user"]
    ok: bool
    place: Place


def local_model(**kw: Any) -> SpeculativeThinkingChatModel:
    return SpeculativeThinkingChatModel(small_model=tiny(11, name="small"), target_model=tiny(12, name="target"), **kw)


def test_a_local_pair_answers_under_the_schemas_grammar() -> None:
    model = local_model(policy="uncertainty:0.9", max_tokens=300)
    person = model.with_structured_output(Person, method="json_schema").invoke("Who?")
    assert isinstance(person, Person)
    raw = model.with_structured_output(Person.model_json_schema(), include_raw=True).invoke("Who?")
    assert raw["parsing_error"] is None and Person.model_validate(raw["parsed"])
    authors = raw["raw"].response_metadata.get("authors", [])
    assert "target" in authors  # the target wrote a stretch under the grammar too


def test_json_mode_gives_json() -> None:
    value = local_model(max_tokens=200).with_structured_output(None, method="json_mode").invoke("Anything")
    assert json.loads(json.dumps(value)) == value


def test_a_schema_the_grammar_cannot_compile_fails_when_bound() -> None:
    with pytest.raises(GrammarError, match="Unsupported type"):
        bad = {"title": "x", "type": "object", "properties": {"a": {"type": "frobnicate"}}}
        local_model().with_structured_output(bad, method="json_schema")


def test_a_scripted_or_served_model_is_asked_for_response_format() -> None:
    small, target = ScriptedGenerator.from_document('{"role": "admin"}'), ScriptedGenerator.from_document("")
    model = SpeculativeThinkingChatModel(small_model=small, target_model=target)
    constraint = run_constraint(model, Person.model_json_schema(), None)
    assert constraint["response_format"]["type"] == "json_schema"
    spec = constraint["response_format"]["json_schema"]
    assert spec["name"] == "Person" and spec["strict"] is True and spec["schema"]["title"] == "Person"
    assert run_constraint(model, None, None) == {"response_format": {"type": "json_object"}}
    assert model.with_structured_output({"type": "object", "title": "T"}, method="json_schema").invoke("q") == {
        "role": "admin"
    }
    assert isinstance(run_constraint(local_model(), Person.model_json_schema(), None)["grammar"], Grammar)


@pytest.mark.parametrize(("engine", "sent"), [("vllm", True), ("sglang", True), ("generic", False)])
def test_the_server_gets_response_format_where_it_takes_it(engine: str, sent: bool) -> None:
    import httpx

    bodies: list[dict[str, Any]] = []
    stream = 'data: {"choices": [{"index": 0, "text": "{}", "finish_reason": "stop"}]}\n\ndata: [DONE]\n\n'

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, text=stream)

    template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    gen = RemoteGenerator("m", base_url="http://test", chat_template=template, engine=engine)  # type: ignore[arg-type]
    gen.server._client = httpx.Client(transport=httpx.MockTransport(handler))
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    session = gen.start(MESSAGES)
    session.generate([], GenerateRequest(max_tokens=5, response_format=fmt))
    assert ("response_format" in bodies[-1]) == sent
    if sent:
        assert bodies[-1]["response_format"] == fmt
    prior = {"author": "small", "reason": "x", "text": '{"a', "token_ids": [], "tokenizer": None, "boundary": False}
    session.generate([prior], GenerateRequest(max_tokens=5, response_format=fmt))  # type: ignore[list-item]
    assert "response_format" not in bodies[-1]  # mid-answer: the server's guide would start over
