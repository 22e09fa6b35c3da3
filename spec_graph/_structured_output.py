"""``with_structured_output`` for the chat model: JSON under a grammar (local models), or prompted and parsed.

The schema always goes into a system instruction and the answer is parsed. With
``method="json_schema"`` (or ``"json_mode"``) and local models on both sides, the run also
writes under the schema's grammar (:mod:`spec_graph.generators.grammar`): every token either
model writes is masked by it, so the answer is valid JSON for the schema. The grammar is
compiled here, so a schema xgrammar cannot compile fails at once (:class:`GrammarError`), before
any generation. With a served model the answer is prompted for, and the server is asked for
``response_format`` where it takes it (vLLM, SGLang).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from operator import itemgetter
from typing import Any, Literal, cast

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import BaseMessage, SystemMessage
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.runnables import Runnable, RunnableLambda, RunnableMap, RunnablePassthrough
from langchain_core.utils.function_calling import convert_to_json_schema
from pydantic import BaseModel

from spec_graph.generators.base import capabilities_of
from spec_graph.generators.grammar import Grammar

__all__ = ["Method", "json_instruction", "run_constraint", "structured_output"]

Method = Literal["json_schema", "json_mode", "function_calling"]


def structured_output(
    llm: BaseChatModel,
    schema: Mapping[str, Any] | type | None,
    *,
    method: Method,
    include_raw: bool,
    strict: bool | None,
    kwargs: Mapping[str, Any],
) -> Runnable[LanguageModelInput, Any]:
    """The runnable behind :meth:`SpeculativeThinkingChatModel.with_structured_output` (see there)."""
    if kwargs:
        msg = f"unsupported arguments: {sorted(kwargs)}"
        raise ValueError(msg)
    if method not in ("json_schema", "json_mode", "function_calling"):
        msg = f"unknown method {method!r}; use 'json_schema', 'json_mode' or 'function_calling'"
        raise ValueError(msg)
    if schema is None and method != "json_mode":
        msg = "schema must be given unless method='json_mode'"
        raise ValueError(msg)
    parser: Runnable[Any, Any]
    json_schema: dict[str, Any] | None
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        parser = PydanticOutputParser(pydantic_object=schema)
        json_schema = schema.model_json_schema()
    else:
        parser = JsonOutputParser()
        json_schema = None if schema is None else convert_to_json_schema(cast("Any", schema))
    add_instruction = _instruction_step(llm, json_instruction(json_schema))
    constraint = run_constraint(llm, json_schema, strict) if method != "function_calling" else {}
    bound = add_instruction | llm.bind(
        ls_structured_output_format={"kwargs": {"method": method, "strict": strict}, "schema": json_schema},
        **constraint,
    )
    if not include_raw:
        return bound | parser
    parser_assign = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
    parser_none = RunnablePassthrough.assign(parsed=lambda _: None)
    with_fallback = parser_assign.with_fallbacks([parser_none], exception_key="parsing_error")
    return RunnableMap(raw=bound) | with_fallback


def run_constraint(llm: Any, json_schema: dict[str, Any] | None, strict: bool | None) -> dict[str, Any]:
    """The run's ``grammar`` (both models local) or ``response_format`` (a served model) for a JSON answer.

    Raises:
        GrammarError: with local models, a schema the grammar library cannot compile.
    """
    generators = getattr(llm, "_generators", None)
    models = generators() if callable(generators) else ()
    if models and all(capabilities_of(m).grammar for m in models):
        return {
            "grammar": Grammar.json_schema(json_schema, strict=strict is not False) if json_schema else Grammar.json()
        }
    if json_schema is None:
        return {"response_format": {"type": "json_object"}}
    name = re.sub(r"[^a-zA-Z0-9_-]", "_", str(json_schema.get("title") or "answer"))[:64]
    spec = {"name": name, "schema": json_schema, "strict": strict is not False}
    return {"response_format": {"type": "json_schema", "json_schema": spec}}


def json_instruction(json_schema: dict[str, Any] | None) -> str:
    """The system instruction asking for JSON (conforming to ``json_schema`` when given)."""
    if json_schema is None:
        return "Answer with one valid JSON object only, no other text."
    return (
        "Answer with one JSON object that conforms to this JSON schema, and no other text:\n"
        f"{json.dumps(json_schema, ensure_ascii=False)}"
    )


def _instruction_step(llm: BaseChatModel, instruction: str) -> Runnable[LanguageModelInput, list[BaseMessage]]:
    """A step that turns any model input into messages led by a system message holding ``instruction``."""
    convert: Callable[[LanguageModelInput], Any] = llm._convert_input

    def prepend(value: LanguageModelInput) -> list[BaseMessage]:
        return [SystemMessage(content=instruction), *convert(value).to_messages()]

    return RunnableLambda(prepend)
