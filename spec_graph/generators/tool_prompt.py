"""How bound tools reach a model's prompt: its chat template's ``tools`` argument, else an instruction.

A chat template that reads a ``tools`` variable (the Qwen2.5 templates do) renders the tool
schemas, the assistant's earlier tool calls and the ``tool`` results itself. A template that does
not is given the generic instruction below as a system message, and the conversation's tool
calls and results are written out in the same ``<tool_call>``/``<tool_response>`` format, so the
two models of a pair always see the same tools whatever their templates.

Messages use the canonical form of :mod:`spec_graph._messages`: an assistant message may hold
``tool_calls`` (``[{"id", "type": "function", "function": {"name", "arguments": dict}}]``), a
``tool`` message holds a result in ``content`` (and its ``tool_call_id``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["GENERIC_TOOL_INSTRUCTION", "ToolSpecs", "prepare_chat", "template_supports_tools", "wire_messages"]

ToolSpecs = Sequence[Mapping[str, Any]]
"""Tools in the OpenAI format: ``{"type": "function", "function": {"name", "description", "parameters"}}``."""

GENERIC_TOOL_INSTRUCTION = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{tools}\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{{"name": <function-name>, "arguments": <args-json-object>}}\n</tool_call>'
)
"""The system instruction for a template without tool support (the Hermes format, as Qwen2.5's)."""

_TOOLS_VAR = re.compile(r"\btools\b")


def template_supports_tools(template: str | None) -> bool:
    """Whether a chat template reads the ``tools`` variable (and so renders tools itself)."""
    return bool(template) and _TOOLS_VAR.search(str(template)) is not None


def _call_text(call: Mapping[str, Any]) -> str:
    fn = call.get("function", call)
    args = fn.get("arguments", {})
    args = json.loads(args) if isinstance(args, str) and args.strip().startswith("{") else args
    body = json.dumps({"name": fn.get("name"), "arguments": args}, ensure_ascii=False)
    return f"<tool_call>\n{body}\n</tool_call>"


def _as_text(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Tool calls and results written out as text, for templates that know only role and content."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.get("role") == "tool":
            text = f"<tool_response>\n{m.get('content', '')}\n</tool_response>"
            if out and out[-1]["role"] == "user" and out[-1].get("_tool"):
                out[-1]["content"] += "\n" + text
            else:
                out.append({"role": "user", "content": text, "_tool": True})
        elif m.get("role") == "assistant" and m.get("tool_calls"):
            calls = "\n".join(_call_text(c) for c in m["tool_calls"])
            content = str(m.get("content") or "")
            out.append({"role": "assistant", "content": f"{content}\n{calls}" if content else calls})
        else:
            out.append({k: v for k, v in m.items() if k in ("role", "content")})
    return [{k: v for k, v in m.items() if k != "_tool"} for m in out]


def prepare_chat(
    messages: Sequence[Mapping[str, Any]], tools: ToolSpecs | None, template: str | None
) -> tuple[list[dict[str, Any]], list[Any] | None]:
    """The messages and the ``tools`` argument to render ``messages`` with ``template``.

    A template that supports tools gets the messages unchanged and the tools (``None`` when
    there are none). Any other gets the tool calls and results as text, the tools as
    :data:`GENERIC_TOOL_INSTRUCTION` in the system message, and ``None``.
    """
    if template_supports_tools(template):
        return [dict(m) for m in messages], [dict(t) for t in tools] if tools else None
    convo = _as_text(messages)
    if tools:
        listing = "\n".join(json.dumps(dict(t), ensure_ascii=False) for t in tools)
        instruction = GENERIC_TOOL_INSTRUCTION.format(tools=listing)
        if convo and convo[0]["role"] == "system":
            convo[0] = {"role": "system", "content": f"{convo[0]['content']}\n\n{instruction}"}
        else:
            convo.insert(0, {"role": "system", "content": instruction})
    return convo, None


def wire_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The messages as an OpenAI-compatible server takes them: tool-call arguments as JSON strings."""
    out: list[dict[str, Any]] = []
    for m in messages:
        item = dict(m)
        if item.get("tool_calls"):
            calls = []
            for call in item["tool_calls"]:
                fn = dict(call.get("function", {}))
                if not isinstance(fn.get("arguments"), str):
                    fn["arguments"] = json.dumps(fn.get("arguments", {}), ensure_ascii=False)
                calls.append({**call, "function": fn})
            item["tool_calls"] = calls
        out.append(item)
    return out
