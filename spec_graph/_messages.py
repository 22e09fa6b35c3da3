"""LangChain messages to the ``{"role", "content"}`` dicts the generators' chat templates take.

The models behind :class:`~spec_graph.chat_model.SpeculativeThinkingChatModel` are text-only and
the model declares no tool calling, so only system, human and AI messages with text content are
accepted; anything else raises an error that says what to do instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ChatMessage, HumanMessage, SystemMessage

__all__ = ["TOOLS_MESSAGE", "convert_messages", "message_text"]

TOOLS_MESSAGE = (
    "SpeculativeThinkingChatModel does not support tool calling: the algorithm hands the pen between "
    "a small and a large model on keywords of free-form reasoning text ('wait', 'verify', ...), which "
    "would split and corrupt tool-call JSON, and the small local models behind it do not call tools "
    "reliably. Use it as a reasoning step instead (a LangGraph node whose answer a tool-calling model "
    "acts on, see spec_graph.langgraph_node), or with_structured_output() for JSON answers."
)
"""Why :meth:`~spec_graph.chat_model.SpeculativeThinkingChatModel.bind_tools` raises, and what to do instead."""

_ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "ai": "assistant",
}
_SKIPPED_BLOCKS = {"reasoning", "thinking", "redacted_thinking"}
"""Blocks of an earlier answer's thinking: not fed back to the models (as chat templates do)."""
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
        if message.tool_calls or message.invalid_tool_calls:
            msg = (
                f"message {index} is an AI message with tool calls; SpeculativeThinkingChatModel does not "
                "support tool calling (see docs/chat_model.md): use it as a reasoning step without tools"
            )
            raise ValueError(msg)
        return "assistant"
    if isinstance(message, ChatMessage):
        role = _ROLES.get(message.role.lower())
        if role is None:
            msg = f"message {index} has role {message.role!r}; expected one of {sorted(_ROLES)}"
            raise ValueError(msg)
        return role
    if message.type in {"tool", "function"}:
        msg = (
            f"message {index} is a {message.type} message; SpeculativeThinkingChatModel does not support "
            "tool calling (see docs/chat_model.md): pass the tool's result as text in a human message"
        )
        raise ValueError(msg)
    msg = f"message {index} has unsupported type {type(message).__name__} ({message.type!r})"
    raise ValueError(msg)


def convert_messages(messages: Sequence[BaseMessage], *, merge_consecutive: bool = True) -> list[dict[str, Any]]:
    """LangChain messages as ``{"role": "system"|"user"|"assistant", "content": str}`` dicts.

    Args:
        messages: system, human and AI messages (``ChatMessage`` with one of those roles too);
            ``name`` fields are ignored.
        merge_consecutive: join consecutive messages of the same role with a blank line, since
            some chat templates insist on alternating roles.

    Raises:
        ValueError: for tool messages, AI messages with tool calls, non-text content, unknown
            roles, or an empty list.
    """
    if not messages:
        msg = "the message list is empty: give at least one human message"
        raise ValueError(msg)
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, BaseMessage):
            msg = f"message {i} is a {type(message).__name__}, not a LangChain message"
            raise TypeError(msg)
        role, text = _role(message, i), message_text(message, i)
        if merge_consecutive and out and out[-1]["role"] == role:
            out[-1]["content"] = f"{out[-1]['content']}\n\n{text}" if out[-1]["content"] else text
        else:
            out.append({"role": role, "content": text})
    return out
