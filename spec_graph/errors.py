"""Errors a run can end with; each carries what was written before it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spec_graph.result import SpecResult


class SpeculativeThinkingError(RuntimeError):
    """A run failed part-way (a model error, out of memory, a server gone...).

    ``partial`` is the result up to the last completed graph step: its text, spans, token
    counts and interventions (finish reason ``"error"``); ``unsaved_text`` is what the failing
    step had streamed before it failed. The original exception is ``__cause__``.
    """

    def __init__(self, message: str, *, partial: SpecResult | None = None, unsaved_text: str = "") -> None:
        super().__init__(message)
        self.partial = partial
        self.unsaved_text = unsaved_text


class RunCancelledError(SpeculativeThinkingError):
    """The run was cancelled (its consumer stopped listening or its task was cancelled)."""


def describe(exc: BaseException) -> str:
    """``Type: message`` of an exception, for error messages."""
    return f"{type(exc).__name__}: {exc}"


__all__ = ["RunCancelledError", "SpeculativeThinkingError", "describe"]
