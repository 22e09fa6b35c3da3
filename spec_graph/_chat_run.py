"""One chat-model call: the thinker's events turned into LangChain chunks, the same for sync and async.

:class:`RunChunks` is the one parser of a run's events (text pieces through the
:class:`~spec_graph._streaming.Assembler`, the result into the last chunk, events to the
:func:`~spec_graph._chat_events.speculation_events` sink). :func:`stream_chunks` and
:func:`astream_chunks` drive it from :meth:`SpeculativeThinker.stream` and
:meth:`SpeculativeThinker.astream`: leaving either early (a closed iterator, a cancelled task)
cancels the run at its next token and returns only once the run has stopped.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Iterator
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.outputs import ChatGenerationChunk

from spec_graph._call_plan import CallPlan
from spec_graph._chat_events import current_sink
from spec_graph._streaming import Assembler
from spec_graph.thinker import SpecResult, SpeculativeThinker
from spec_graph.tools import ToolCallStream

__all__ = ["FinalChunk", "RunChunks", "astream_chunks", "stream_chunks"]

FinalChunk = Callable[[SpecResult, Assembler], ChatGenerationChunk]
"""Builds the last chunk (usage, metadata) of a finished run."""


class RunChunks:
    """Turns one run's events into chunks; forwards them to the enclosing event sink."""

    def __init__(self, plan: CallPlan, reasoning: bool | None, final: FinalChunk) -> None:
        """Read the sink now (in the caller's context: thread or task)."""
        self.sink = current_sink()
        self.assembler = Assembler(plan.stop, reasoning=reasoning, in_reasoning=plan.in_reasoning)
        self.final = final
        self.tools = ToolCallStream(plan.tools) if plan.tools is not None else None

    def __call__(self, event: dict[str, Any]) -> list[ChatGenerationChunk]:
        """The chunks one event makes (none for an intervention)."""
        kind = event.get("type")
        if self.sink is not None and kind in self.sink.types:
            self.sink.callback(event)
        if kind == "text":
            return self._tool_calls(self.assembler.feed(str(event["author"]), str(event["text"])))
        if kind == "result":
            result: SpecResult = event["result"]
            rest = self._tool_calls(self.assembler.finish(result))
            return [*rest, *(self.tools.finish() if self.tools else []), self.final(result, self.assembler)]
        return []

    def _tool_calls(self, chunks: list[ChatGenerationChunk]) -> list[ChatGenerationChunk]:
        """With tools bound, the text of tool calls as ``tool_call_chunks`` (see :mod:`spec_graph.tools.stream`)."""
        return [c for chunk in chunks for c in self.tools.feed(chunk)] if self.tools else chunks


def stream_chunks(
    thinker: SpeculativeThinker,
    plan: CallPlan,
    to_chunks: RunChunks,
    run_manager: CallbackManagerForLLMRun | None,
) -> Iterator[ChatGenerationChunk]:
    """The call's chunks as the run writes them (the run happens in a worker thread)."""
    events = thinker.stream(plan.messages, stop=plan.stop, **plan.run_kwargs)
    try:
        for event in events:
            for chunk in to_chunks(event):
                if run_manager:
                    run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
    finally:
        close = getattr(events, "close", None)
        if close is not None:  # stops the run at its next token and waits for it, if we stopped early
            close()


async def astream_chunks(
    thinker: SpeculativeThinker,
    plan: CallPlan,
    to_chunks: RunChunks,
    run_manager: AsyncCallbackManagerForLLMRun | None,
) -> AsyncGenerator[ChatGenerationChunk, None]:
    """:func:`stream_chunks` for asyncio: events are awaited; a cancelled task cancels the run."""
    events = thinker.astream(plan.messages, stop=plan.stop, **plan.run_kwargs)
    try:
        async for event in events:
            for chunk in to_chunks(event):
                if run_manager:
                    await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:  # cancels the run and waits (one decode step at most) for it to stop
            await aclose()
