"""Wiring: the nodes of :mod:`spec_graph.graph.algorithm` joined by edges routed on ``state["route"]``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from spec_graph.graph import algorithm
from spec_graph.graph.state import SpecContext, SpecInput, SpecState


def route_start(state: SpecState, runtime: Runtime[SpecContext]) -> str:
    """1. The target writes first when the policy says so (the opening); else the small model starts.

    A policy that checks every step (``verify``) is asked before anything the small model writes.
    """
    ctx = runtime.context
    if ctx.opening is not None:
        return "opening"
    return "check" if ctx.checks_every_step else "start"


def route_after_boundary(state: SpecState) -> str:
    """3. Finished -> end; at a boundary -> classify; else the small model writes on.

    The nodes set ``route``: ``classify`` at a boundary, and after every stretch for a policy that
    checks every step; detect_boundary sets ``finish``.
    """
    route = state.get("route")
    return {"finish": "finished", "classify": "boundary"}.get(route or "", "continue")


def route_after_classify(state: SpecState) -> str:
    """4. Recap takeover, intervention, or the kept words go back to detection."""
    route = state.get("route")
    return route if route in ("takeover", "intervene") else "keep"


def recursion_limit(max_new_tokens: int) -> int:
    """A recursion limit no run within ``max_new_tokens`` can reach.

    Every round trip through the graph writes at least one kept token within three steps
    (a discarded probe is always followed by a target stretch), plus the final steps.
    """
    return 3 * max_new_tokens + 16


def build_graph(
    *,
    checkpointer: Any = None,
    compile: bool = True,
    name: str = "speculative_thinking",
    context_schema: type[Any] = SpecContext,
    input_schema: type[Any] = SpecInput,
    output_schema: type[Any] = SpecState,
    wrap: Callable[[Callable[..., Any], str], Callable[..., Any]] | None = None,
) -> Any:
    """The Speculative Thinking state graph.

    Nodes ``small_generate``, ``detect_boundary``, ``classify_step``, ``target_intervene``,
    ``reflection_takeover`` and ``finalize``; run it with ``context=SpecContext.open(...)`` holding
    the two models' sessions and ``config={"recursion_limit": recursion_limit(budget)}``.

    Args:
        checkpointer: a LangGraph checkpointer (the state is JSON-serializable).
        compile: return the compiled graph (default) or the ``StateGraph`` builder.
        name: the compiled graph's name.
        context_schema: the runtime context's type (Studio's holds plain settings).
        input_schema: what a run starts from.
        output_schema: what a run returns.
        wrap: called as ``wrap(function, name)`` on every node and router that needs the
            runtime context; what it returns is used instead (Studio opens the run's sessions so).
    """

    def wrapped(fn: Callable[..., Any]) -> Callable[..., Any]:
        return fn if wrap is None else wrap(fn, fn.__name__)

    g = StateGraph(SpecState, context_schema=context_schema, input_schema=input_schema, output_schema=output_schema)
    for node in (
        algorithm.small_generate,
        algorithm.detect_boundary,
        algorithm.classify_step,
        algorithm.target_intervene,
        algorithm.reflection_takeover,
        algorithm.finalize,
    ):
        g.add_node(node.__name__, wrapped(node))
    g.add_conditional_edges(
        START,
        wrapped(route_start),
        {"opening": "target_intervene", "start": "small_generate", "check": "classify_step"},
    )
    g.add_edge("small_generate", "detect_boundary")
    g.add_conditional_edges(
        "detect_boundary",
        route_after_boundary,
        {"finished": "finalize", "boundary": "classify_step", "continue": "small_generate"},
    )
    g.add_conditional_edges(
        "classify_step",
        route_after_classify,
        {"takeover": "reflection_takeover", "intervene": "target_intervene", "keep": "detect_boundary"},
    )
    g.add_edge("target_intervene", "detect_boundary")
    g.add_edge("reflection_takeover", "detect_boundary")
    g.add_edge("finalize", END)
    if not compile:
        return g
    return g.compile(checkpointer=checkpointer, name=name)
