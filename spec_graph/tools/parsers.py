"""Tool-call formats: a parser per format turns a model's answer into tool calls.

A parser finds the calls a model wrote in its answer text, checks each against the bound tools
and splits the answer into ``content`` (the text around the calls), valid calls and invalid ones
(malformed JSON, a name that is not bound, more calls than ``parallel_tool_calls`` allows). It
never raises on a model's text: whatever it cannot use lands in ``invalid`` with the reason.

The first format is Hermes/Qwen (``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``,
what the Qwen2.5 chat templates ask for, and what the generic instruction asks other models
for). Small models often drop the tags: an answer that is nothing but such a JSON object (or a
list of them, code fences allowed) naming a bound tool is read as calls too (a *bare* call; a
JSON answer that names no bound tool stays text). :func:`parser_for` picks a parser from a
model's name; a ``tool_parser`` name overrides it.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, cast

from langchain_core.messages import InvalidToolCall, ToolCall
from langchain_core.messages.tool import invalid_tool_call, tool_call

__all__ = ["PARSERS", "HermesParser", "ParsedAnswer", "ToolCallParser", "parser_for"]


@dataclass
class ParsedAnswer:
    """An answer split into text and tool calls."""

    content: str
    """The text outside the calls (stripped)."""
    tool_calls: list[ToolCall] = field(default_factory=list)
    invalid: list[InvalidToolCall] = field(default_factory=list)
    """Calls that cannot run, each with ``error`` saying why."""


def new_call_id() -> str:
    """A fresh tool-call id (the models write none)."""
    return f"call_{uuid.uuid4().hex[:24]}"


_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


class ToolCallParser:
    """A tool-call format whose calls are JSON objects between an opening and a closing tag."""

    name = "base"
    open_tag = ""
    close_tag = ""

    def blocks(self, text: str) -> tuple[str, list[str]]:
        """``text`` without its call blocks, and the blocks' inner texts (an unclosed last one too)."""
        parts: list[str] = []
        blocks: list[str] = []
        pos = 0
        while (start := text.find(self.open_tag, pos)) >= 0:
            parts.append(text[pos:start])
            end = text.find(self.close_tag, start + len(self.open_tag))
            if end < 0:  # cut off (budget) or never closed: the rest is the block
                blocks.append(text[start + len(self.open_tag) :])
                pos = len(text)
                break
            blocks.append(text[start + len(self.open_tag) : end])
            pos = end + len(self.close_tag)
        parts.append(text[pos:])
        return "".join(parts), blocks

    def call(self, block: str, bound: Collection[str], call_id: str | None = None) -> ToolCall | InvalidToolCall:
        """One block as a tool call, or an invalid one saying why."""
        raw = block.strip()
        fenced = _FENCE.match(raw)
        raw = fenced.group(1) if fenced else raw
        call_id = call_id or new_call_id()
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            return invalid_tool_call(name=None, args=raw, id=call_id, error=f"not valid JSON ({exc.msg})")
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            error = 'expected a JSON object {"name": ..., "arguments": {...}}'
            return invalid_tool_call(name=None, args=raw, id=call_id, error=error)
        name = data["name"]
        args: Any = data.get("arguments", data.get("parameters", {}))
        if isinstance(args, str):  # some models write the arguments as a JSON string
            with contextlib.suppress(json.JSONDecodeError):
                args = json.loads(args) if args.strip() else {}
        args_text = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
        if not isinstance(args, dict):
            error = f"the arguments of {name!r} are not a JSON object"
            return invalid_tool_call(name=name, args=args_text, id=call_id, error=error)
        if name not in bound:
            error = f"{name!r} is not a bound tool; bound: {', '.join(sorted(bound)) or 'none'}"
            return invalid_tool_call(name=name, args=args_text, id=call_id, error=error)
        return tool_call(name=name, args=args, id=call_id)

    def bare_calls(self, text: str, bound: Collection[str]) -> list[ToolCall] | None:
        """The calls when ``text`` is only a call object or a list of them (tags left out), else ``None``."""
        raw = text.strip()
        fenced = _FENCE.match(raw)
        try:
            data = json.loads(fenced.group(1) if fenced else raw)
        except json.JSONDecodeError:
            return None
        items = data if isinstance(data, list) else [data]
        if not items or not all(isinstance(d, dict) and d.get("name") in bound for d in items):
            return None
        if not all(set(d) <= {"name", "arguments", "parameters"} for d in items):
            return None  # an answer that happens to hold a "name" field, not a call
        calls = [self.call(json.dumps(d), bound) for d in items]
        if any(c.get("type") != "tool_call" for c in calls):
            return None
        return [cast("ToolCall", c) for c in calls]

    def parse(self, text: str, bound: Collection[str], *, parallel: bool = True) -> ParsedAnswer:
        """Split ``text`` into content, valid calls and invalid calls."""
        content, blocks = self.blocks(text)
        bare = None if blocks else self.bare_calls(text, bound)
        if bare is not None:
            content, blocks = "", [json.dumps({"name": c["name"], "arguments": c["args"]}) for c in bare]
        answer = ParsedAnswer(content.strip())
        for block in blocks:
            item = self.call(block, bound)
            if item.get("type") == "invalid_tool_call":
                answer.invalid.append(cast("InvalidToolCall", item))
                continue
            call = cast("ToolCall", item)
            if answer.tool_calls and not parallel:
                error = "parallel_tool_calls=False: only the first call of a turn runs"
                args = json.dumps(call["args"], ensure_ascii=False)
                answer.invalid.append(invalid_tool_call(name=call["name"], args=args, id=call["id"], error=error))
            else:
                answer.tool_calls.append(call)
        return answer


class HermesParser(ToolCallParser):
    """Hermes/Qwen2.5: ``<tool_call>{"name": "f", "arguments": {...}}</tool_call>``, one block per call."""

    name = "hermes"
    open_tag = "<tool_call>"
    close_tag = "</tool_call>"


PARSERS: dict[str, type[ToolCallParser]] = {"hermes": HermesParser}
"""Tool-call formats by name (the ``tool_parser`` field and argument)."""
_BY_MODEL = (("qwen", "hermes"), ("hermes", "hermes"))
"""Model-name fragments and their formats; any other model is asked for the Hermes format too."""


def parser_for(model_name: str, override: str | None = None) -> ToolCallParser:
    """The parser for a model: ``override`` when given, else the format its name suggests (Hermes by default).

    Raises:
        ValueError: for an unknown ``override``, naming the formats.
    """
    if override is not None:
        if override not in PARSERS:
            msg = f"unknown tool_parser {override!r}; expected one of: {', '.join(sorted(PARSERS))}"
            raise ValueError(msg)
        return PARSERS[override]()
    lowered = model_name.lower()
    name = next((fmt for fragment, fmt in _BY_MODEL if fragment in lowered), "hermes")
    return PARSERS[name]()
