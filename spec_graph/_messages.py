"""LangChain messages to the ``{"role", "content"}`` dicts the generators' chat templates take.

The models behind :class:`~spec_graph.chat_model.SpeculativeThinkingChatModel` are text-only:
system, human, AI and tool messages with text content are accepted; anything else raises an error
that says what to do instead. Tool calls and results take the form the Qwen2.5 templates (and
OpenAI-compatible servers) expect: an assistant message holds ``tool_calls`` (``[{"id", "type":
"function", "function": {"name", "arguments": dict}}]``), a ``tool`` message holds the result
in ``content`` with its ``tool_call_id`` and ``name``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

__all__ = ["convert_messages", "message_text"]

_ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "ai": "assistant",
    "tool": "tool",
}
_SKIPPED_BLOCKS = {"reasoning", "thinking", "redacted_thinking", "tool_use", "tool_call", "tool_call_chunk"}
"""Blocks of an earlier answer's thinking (not fed back to the models, as chat templates do) and
tool-call blocks (the message's ``tool_calls`` carry them)."""
_MEDIA_BLOCKS = {"image", "image_url", "input_image", "audio", "input_audio", "video", "file", "document", "pdf"}


def message_text(message: BaseMessage, index: int = 0) -> str:
    """The text of ``message``: a string as is, a list of text blocks joined.

    Reasoning blocks are left out. Images, audio, files and other non-text blocks raise
    ``ValueError``: the local models read text only.
    """
    content = message.content
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
            continue
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append(str(block.get("text", "")))
        elif kind in _SKIPPED_BLOCKS:
            continue
        elif kind in _MEDIA_BLOCKS:
            msg = (
                f"message {index} ({message.type}) holds a {kind!r} block; the speculative-thinking models "
                "are text-only: pass text content (describe the media in words)"
            )
            raise ValueError(msg)
        else:
            msg = f"message {index} ({message.type}) holds an unsupported content block of type {kind!r}; pass text"
            raise ValueError(msg)
    return "".join(parts)


def _role(message: BaseMessage, index: int) -> str:
    if isinstance(message, SystemMessage):
        return "system"
    if isinstance(message, HumanMessage):
        return "user"
    if isinstance(message, AIMessage):
        return "assistant"
    if isinstance(message, (ToolMessage, FunctionMessage)):
        return "tool"
    if isinstance(message, ChatMessage):
        role = _ROLES.get(message.role.lower())
        if role is None:
            msg = f"message {index} has role {message.role!r}; expected one of {sorted(_ROLES)}"
            raise ValueError(msg)
        return role
    msg = f"message {index} has unsupported type {type(message).__name__} ({message.type!r})"
    raise ValueError(msg)


def _tool_fields(message: BaseMessage) -> dict[str, Any]:
    """The tool-call fields of a message: an AI message's ``tool_calls``, a tool result's id and name."""
    if isinstance(message, AIMessage) and message.tool_calls:
        calls = [
            {"id": c.get("id"), "type": "function", "function": {"name": c["name"], "arguments": dict(c["args"])}}
            for c in message.tool_calls
        ]
        return {"tool_calls": calls}
    if isinstance(message, ToolMessage):
        return {"tool_call_id": message.tool_call_id, **({"name": message.name} if message.name else {})}
    if isinstance(message, FunctionMessage):
        return {"name": message.name}
    return {}


def convert_messages(messages: Sequence[BaseMessage], *, merge_consecutive: bool = True) -> list[dict[str, Any]]:
    """LangChain messages as ``{"role": "system"|"user"|"assistant"|"tool", "content": str}`` dicts.

    Args:
        messages: system, human, AI and tool messages (``ChatMessage`` with one of those roles
            too); an AI message's ``tool_calls`` are kept (its ``invalid_tool_calls`` are not:
            they never ran), ``name`` fields of other messages are ignored.
        merge_consecutive: join consecutive messages of the same role with a blank line, since
            some chat templates insist on alternating roles (tool results and messages with
            tool calls are never merged).

    Raises:
        ValueError: for non-text content, unknown roles, or an empty list.
    """
    if not messages:
        msg = "the message list is empty: give at least one human message"
        raise ValueError(msg)
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, BaseMessage):
            msg = f"message {i} is a {type(message).__name__}, not a LangChain message"
            raise TypeError(msg)
        role, text, fields = _role(message, i), message_text(message, i), _tool_fields(message)
        last = out[-1] if out else None
        if merge_consecutive and last and last["role"] == role != "tool" and not fields and "tool_calls" not in last:
            last["content"] = f"{last['content']}\n\n{text}" if last["content"] else text
        else:
            out.append({"role": role, "content": text, **fields})
    return out
