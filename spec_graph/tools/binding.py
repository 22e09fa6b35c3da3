"""``bind_tools`` and the last step of a call with tools: the chat model's side of tool calling.

:func:`bind_tools` checks everything at bind time and binds the tools in the OpenAI format, so
each call reads them back with :func:`~spec_graph.tools.request.tool_request` (a tool passed
straight to ``invoke(tools=...)`` is checked there the same way). :func:`finish_tools` turns the
merged stream of a call into the message ``invoke`` returns (see :mod:`.stream`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable

from spec_graph.tools.request import ToolRequest, tool_request
from spec_graph.tools.stream import finish_message

__all__ = ["bind_tools", "finish_tools"]


def bind_tools(
    llm: BaseChatModel,
    tools: Sequence[Any],
    *,
    model_name: str,
    kwargs: dict[str, Any],
) -> Runnable[LanguageModelInput, AIMessage]:
    """The runnable behind :meth:`SpeculativeThinkingChatModel.bind_tools`: ``llm`` with the tools bound.

    Args:
        llm: the chat model.
        tools: functions, pydantic classes, ``BaseTool``s or dicts, each with a description
            (the docstring, ``description=``, or a dict's ``"description"``).
        model_name: the target model's name (it chooses the tool-call format).
        kwargs: ``tool_choice``: ``"auto"`` (default), ``"any"``/``"required"``/``True``, a tool's
            name (or an OpenAI ``{"type": "function", "function": {"name": ...}}``) or ``"none"``
            (see :mod:`spec_graph.tools.request`); ``parallel_tool_calls`` (``False``: one call a
            turn); ``tool_parser`` (a format of :data:`~spec_graph.tools.parsers.PARSERS`, default
            from ``model_name``); other call arguments are bound with them.

    Raises:
        ValueError, TypeError: no tools, a tool that cannot be converted or has no description,
            an unknown ``tool_choice`` or ``tool_parser`` (one line each).
    """
    if not tools:
        msg = "bind_tools needs at least one tool (a function, pydantic class, BaseTool or dict)"
        raise ValueError(msg)
    request = tool_request({**kwargs, "tools": tools}, model_name)
    assert request is not None  # tools were given
    return llm.bind(**{**kwargs, "tools": request.tools, "tool_choice": request.choice})


def finish_tools(result: ChatResult, request: ToolRequest | None) -> ChatResult:
    """``result`` (a merged stream) with calls that streamed as text moved to ``invalid_tool_calls``."""
    if request is None:
        return result
    generations = []
    for gen in result.generations:
        message = finish_message(gen.message, request) if isinstance(gen.message, AIMessage) else gen.message
        generations.append(ChatGeneration(message=message, generation_info=gen.generation_info))
    return ChatResult(generations=generations, llm_output=result.llm_output)
