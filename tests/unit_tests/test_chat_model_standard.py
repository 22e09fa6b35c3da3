"""LangChain's standard unit tests for SpeculativeThinkingChatModel (no weights are loaded)."""

from __future__ import annotations

from typing import Any

from langchain_tests.unit_tests import ChatModelUnitTests

from spec_graph.chat_model import SpeculativeThinkingChatModel


class TestSpeculativeThinkingChatModelStandard(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[SpeculativeThinkingChatModel]:
        return SpeculativeThinkingChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {
            "small_model": "smollm2-135m-instruct",
            "target_model": "qwen2.5-coder-0.5b-instruct",
            "config": "reasoning",
        }

    @property
    def has_tool_calling(self) -> bool:
        return True  # bind_tools: the Qwen/Hermes <tool_call> format, parsed into tool_calls

    @property
    def has_tool_choice(self) -> bool:
        return True  # "auto", "any"/"required", a tool's name, "none" (a forced call is instructed)

    @property
    def has_structured_output(self) -> bool:
        return True  # JSON prompting + parsing, every method

    @property
    def supports_model_override(self) -> bool:
        return False  # `model` is a display name; the models are fixed at construction
