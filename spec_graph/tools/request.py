"""A call's tools, checked once: what ``bind_tools`` binds and what a run with tools needs.

:func:`tool_request` validates the tools and ``tool_choice`` (one line naming the problem and
the fix, at bind time), and the :class:`ToolRequest` it returns knows which tools the models see,
the instruction a forcing ``tool_choice`` adds, and how the answer is parsed.

``tool_choice``: ``"auto"`` (default) lets the model choose; ``"any"``/``"required"``/``True``
ask for at least one call; a tool's name (or ``{"type": "function", "function": {"name": ...}}``)
asks for that tool, and only that tool is shown; ``"none"`` shows no tools (the answer is text).
A forcing choice is an instruction in the system message, checked after the run: when no call
came, the answer is returned as it is (text, no ``invalid_tool_calls``) with
``response_metadata["tool_choice_unmet"] = True``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ToolCall, ToolMessage
from langchain_core.messages.tool import invalid_tool_call
from langchain_core.utils.function_calling import convert_to_openai_tool

from spec_graph.generators.base import Generator
from spec_graph.generators.grammar import Grammar, GrammarError
from spec_graph.tools.parsers import ParsedAnswer, ToolCallParser, parser_for

__all__ = ["TOOL_KWARGS", "ToolRequest", "normalize_tools", "prompt_tokens", "tool_request"]

TOOL_KWARGS = ("tools", "tool_choice", "parallel_tool_calls", "tool_parser")
"""The call arguments that belong to tools (taken out before the config overrides are read)."""


def normalize_tools(tools: Sequence[Any]) -> list[dict[str, Any]]:
    """Tools (functions, pydantic classes, ``BaseTool``s, dicts) in the OpenAI format, checked.

    Raises:
        ValueError: for a tool that cannot be converted or one with no description.
    """
    if isinstance(tools, (str, bytes, Mapping)) or not isinstance(tools, Sequence):
        msg = f"tools must be a list of tools, got {type(tools).__name__}"
        raise TypeError(msg)
    out: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        try:
            spec = convert_to_openai_tool(tool)
        except Exception as exc:  # langchain's own errors vary by tool kind
            msg = f"tool {i} ({type(tool).__name__}) cannot be used as a tool: {exc}".splitlines()[0]
            raise ValueError(msg) from exc
        fn = spec.get("function", {})
        name = fn.get("name")
        if not name:
            msg = f"tool {i} has no name"
            raise ValueError(msg)
        if not str(fn.get("description") or "").strip():
            msg = (
                f"tool {name!r} has no description: the model picks tools by their descriptions; give the "
                "function or class a docstring (or a BaseTool description=, or a dict 'description')"
            )
            raise ValueError(msg)
        out.append(dict(spec))
    return out


def _choice(tool_choice: Any, names: Sequence[str]) -> str:
    """``tool_choice`` as ``"auto"``, ``"required"``, ``"none"`` or a bound tool's name."""
    if tool_choice is None or tool_choice == "auto":
        return "auto"
    if tool_choice is True or tool_choice in ("any", "required"):
        return "required"
    if tool_choice is False or tool_choice == "none":
        return "none"
    name = tool_choice
    if isinstance(tool_choice, Mapping):
        name = tool_choice.get("function", {}).get("name") or tool_choice.get("name")
    if isinstance(name, str) and name in names:
        return name
    msg = (
        f"tool_choice {tool_choice!r} is not 'auto', 'any', 'required', 'none' or a bound tool's name "
        f"({', '.join(names)})"
    )
    raise ValueError(msg)


@dataclass(frozen=True)
class ToolRequest:
    """The tools of one call, checked."""

    tools: list[dict[str, Any]]
    """All bound tools, OpenAI format."""
    choice: str
    """``"auto"``, ``"required"``, ``"none"`` or the name of the tool that must be called."""
    parallel: bool
    """Whether one turn may hold several calls (else the first runs, the rest are invalid)."""
    parser: ToolCallParser
    answered: frozenset[str] = frozenset()
    """The calls already made and answered in the conversation (:func:`call_key`): the same call
    again is invalid (small models tend to repeat a call instead of answering from its result)."""

    @property
    def names(self) -> list[str]:
        """The bound tools' names."""
        return [t["function"]["name"] for t in self.tools]

    @property
    def forced(self) -> bool:
        """Whether ``tool_choice`` asks for a call."""
        return self.choice not in ("auto", "none")

    def prompt_tools(self) -> list[dict[str, Any]]:
        """The tools the models see: none for ``"none"``, the named one for a name, else all."""
        if self.choice == "none":
            return []
        if self.forced and self.choice != "required":
            return [t for t in self.tools if t["function"]["name"] == self.choice]
        return list(self.tools)

    def instruct(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``messages`` with the instruction a forcing ``tool_choice`` adds to the system message."""
        if not self.forced:
            return messages
        tag = self.parser.open_tag
        what = "one or more tool calls" if self.choice == "required" else f"a call to the tool {self.choice!r}"
        if not self.parallel:
            what = "exactly one tool call" if self.choice == "required" else what
        text = f"Answer now with {what} ({tag} blocks) and no other text."
        if messages and messages[0]["role"] == "system":
            return [{**messages[0], "content": f"{messages[0]['content']}\n\n{text}"}, *messages[1:]]
        return [{"role": "system", "content": text}, *messages]

    @property
    def callable_names(self) -> list[str]:
        """The names a call may use: the forced tool's, else all bound ones."""
        return [self.choice] if self.forced and self.choice != "required" else self.names

    def clean(self, call: ToolCall) -> ToolCall:
        """``call`` with the arguments dropped when its tool takes none (small models echo the schema)."""
        spec = next((t for t in self.tools if t["function"]["name"] == call["name"]), None)
        params = (spec or {}).get("function", {}).get("parameters") or {}
        return {**call, "args": {}} if spec is not None and not params.get("properties") else call

    def forced_grammar(self) -> Grammar | None:
        """For a forcing ``tool_choice``: the grammar of one call to a callable tool, in the parser's tags.

        ``None`` when nothing is forced, or when the tools' schemas cannot be compiled (then the
        instruction alone asks for the call).
        """
        if not self.forced:
            return None
        calls = []
        for spec in self.tools:
            fn = spec["function"]
            if fn["name"] not in self.callable_names:
                continue
            params = fn.get("parameters") or {"type": "object"}
            schema = {
                "type": "object",
                "properties": {"name": {"const": fn["name"]}, "arguments": params},
                "required": ["name", "arguments"],
            }
            begin, end = f"{self.parser.open_tag}\n", f"\n{self.parser.close_tag}"
            try:
                calls.append(Grammar.tagged_json(schema, begin=begin, end=end))
            except GrammarError:
                return None
        return Grammar.any_of(*calls) if len(calls) > 1 else (calls[0] if calls else None)

    def repeats(self, call: ToolCall) -> str | None:
        """Why ``call`` cannot run because it repeats an answered one (``None`` when it is new)."""
        if call_key(call["name"], call["args"]) not in self.answered:
            return None
        return (
            f"repeats the call {call['name']}({json.dumps(call['args'])}), whose result is already in the conversation"
        )

    def parse(self, text: str) -> ParsedAnswer:
        """The answer's content and calls (none parsed with ``tool_choice="none"``); repeats are invalid."""
        if self.choice == "none":
            return ParsedAnswer(text)
        answer = self.parser.parse(text, self.callable_names, parallel=self.parallel)
        answer.tool_calls = [self.clean(c) for c in answer.tool_calls]
        for call in [c for c in answer.tool_calls if self.repeats(c)]:
            answer.tool_calls.remove(call)
            args = json.dumps(call["args"], ensure_ascii=False)
            answer.invalid.append(
                invalid_tool_call(name=call["name"], args=args, id=call["id"], error=self.repeats(call))
            )
        return answer


def call_key(name: str, args: Mapping[str, Any]) -> str:
    """A call's identity: its name and arguments (key order ignored)."""
    return f"{name}:{json.dumps(args, sort_keys=True, ensure_ascii=False)}"


def answered_calls(messages: Sequence[BaseMessage]) -> frozenset[str]:
    """The :func:`call_key` of every call in ``messages`` whose result is in them too."""
    results = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
    return frozenset(
        call_key(c["name"], c["args"])
        for m in messages
        if isinstance(m, AIMessage)
        for c in m.tool_calls
        if c.get("id") in results
    )


def tool_request(
    kwargs: Mapping[str, Any], model_name: str, messages: Sequence[BaseMessage] = ()
) -> ToolRequest | None:
    """The :class:`ToolRequest` of a call's keyword arguments and conversation, or ``None`` without tools.

    Raises:
        ValueError, TypeError: bad tools, ``tool_choice`` or ``tool_parser`` (one line each).
    """
    tools = kwargs.get("tools")
    if not tools:
        if kwargs.get("tool_choice") not in (None, "auto", "none", False):
            msg = f"tool_choice {kwargs['tool_choice']!r} needs tools: bind_tools([...], tool_choice=...)"
            raise ValueError(msg)
        return None
    specs = normalize_tools(tools)
    names = [t["function"]["name"] for t in specs]
    parser = parser_for(model_name, kwargs.get("tool_parser"))
    parallel = kwargs.get("parallel_tool_calls")
    return ToolRequest(
        specs, _choice(kwargs.get("tool_choice"), names), parallel is not False, parser, answered_calls(messages)
    )


def prompt_tokens(gen: Generator, messages: Sequence[Mapping[str, Any]], tools: Sequence[Any] | None) -> int:
    """Tokens of ``gen``'s prompt for ``messages`` with ``tools`` (any kind, checked) in it.

    ``tools`` is passed to ``start`` only when there are some (a generator of your own may take none).
    """
    with closing(gen.start(messages, tools=normalize_tools(tools)) if tools else gen.start(messages)) as session:
        return int(session.prompt_tokens)
