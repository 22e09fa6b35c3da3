"""The chat model's run events for LangGraph: :func:`speculation_events` routes them to a callback.

A context variable holds the callback, so every model call made inside the block (in this
thread or task) forwards its events without being passed anything.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

__all__ = ["EventSink", "current_sink", "speculation_events"]


@dataclass(frozen=True)
class EventSink:
    """Where a run's events go: ``callback``, for the event ``types`` asked for."""

    callback: Callable[[dict[str, Any]], None]
    types: frozenset[str]


_EVENT_SINK: ContextVar[EventSink | None] = ContextVar("spec_graph_event_sink", default=None)


def current_sink() -> EventSink | None:
    """The sink set by the innermost enclosing :func:`speculation_events`, if any."""
    return _EVENT_SINK.get()


@contextlib.contextmanager
def speculation_events(
    callback: Callable[[dict[str, Any]], None], types: Collection[str] = ("intervention",)
) -> Iterator[None]:
    """Send the run's events to ``callback`` for every model call made inside the block.

    Events are the thinker's (``{"type": "intervention", "kind", "category", ...}`` and, if asked
    for, ``{"type": "text", "author", "reason", "text"}``). In a LangGraph node, pass
    ``langgraph.config.get_stream_writer()`` to see them in ``stream_mode="custom"``;
    :func:`spec_graph.langgraph_node.chat_model_node` does this for you.

    Args:
        callback: called with each event, in the thread that consumes the model's stream.
        types: event types to forward (``"intervention"``, ``"text"``).
    """
    token = _EVENT_SINK.set(EventSink(callback, frozenset(types)))
    try:
        yield
    finally:
        _EVENT_SINK.reset(token)
