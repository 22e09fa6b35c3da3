"""Tool calling for :class:`~spec_graph.chat_model.SpeculativeThinkingChatModel`.

``bind_tools`` checks the tools and ``tool_choice`` (:mod:`.request`); both models see the
tools in their prompts (:mod:`spec_graph.generators.tool_prompt`); a parser per tool-call format
reads the answer (:mod:`.parsers`), as it streams too (:mod:`.stream`).
"""

from spec_graph.tools.binding import bind_tools, finish_tools
from spec_graph.tools.parsers import PARSERS, HermesParser, ParsedAnswer, ToolCallParser, parser_for
from spec_graph.tools.request import TOOL_KWARGS, ToolRequest, normalize_tools, prompt_tokens, tool_request
from spec_graph.tools.stream import UNMET_KEY, ToolCallStream, finish_message

__all__ = [
    "PARSERS",
    "TOOL_KWARGS",
    "UNMET_KEY",
    "HermesParser",
    "ParsedAnswer",
    "ToolCallParser",
    "ToolCallStream",
    "ToolRequest",
    "bind_tools",
    "finish_message",
    "finish_tools",
    "normalize_tools",
    "parser_for",
    "prompt_tokens",
    "tool_request",
]
