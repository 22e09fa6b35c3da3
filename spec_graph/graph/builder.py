"""Wiring: the nodes of :mod:`spec_graph.graph.nodes` joined by conditional edges."""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from spec_graph.graph import nodes
from spec_graph.graph.state import SpecContext, SpecInput, SpecState
from spec_graph.policies import checks_every_step


def route_start(state: SpecState, runtime: Runtime[SpecContext]) -> str:
    """1. The target writes first when the policy says so (the opening); else the small model starts."""
    ctx = runtime.context
    first = None if state.get("opening_done") else ctx.trigger_policy.start(ctx.config)
    if first is not None:
        return "opening"
    return "check" if checks_every_step(ctx.trigger_policy) else "start"


def route_after_boundary(state: SpecState, runtime: Runtime[SpecContext]) -> str:
    """3. Finished -> end; at a boundary -> classify; else keep writing.

    A policy that checks every step (``verify``) is asked before anything the small model writes.
    """
    if state.get("finish_reason"):
        return "finished"
    if state.get("boundary") or checks_every_step(runtime.context.trigger_policy):
        return "boundary"
    return "continue"


def route_after_classify(state: SpecState) -> str:
    """4. Recap takeover, intervention, or the kept neutral probe goes back to detection."""
    decision = state.get("decision")
    return decision if decision in ("takeover", "intervene") else "keep"


def recursion_limit(max_new_tokens: int) -> int:
    """A recursion limit no run within ``max_new_tokens`` can reach.

    Every round trip through the graph writes at least one kept token within three steps
    (a discarded probe is always followed by a target stretch), plus the final steps.
    """
    return 3 * max_new_tokens + 16


def build_graph(*, checkpointer: Any = None, compile: bool = True, name: str = "speculative_thinking") -> Any:
    """The Speculative Thinking state graph.

    Nodes ``small_generate``, ``detect_boundary``, ``classify_step``, ``target_intervene``,
    ``reflection_takeover`` and ``finalize``; run it with ``context=SpecContext(...)`` holding
    the two models' sessions and ``config={"recursion_limit": recursion_limit(budget)}``.

    Args:
        checkpointer: a LangGraph checkpointer (the state is JSON-serializable).
        compile: return the compiled graph (default) or the ``StateGraph`` builder.
        name: the compiled graph's name.
    """
    g = StateGraph(SpecState, context_schema=SpecContext, input_schema=SpecInput, output_schema=SpecState)
    for node in (
        nodes.small_generate,
        nodes.detect_boundary,
        nodes.classify_step,
        nodes.target_intervene,
        nodes.reflection_takeover,
        nodes.finalize,
    ):
        g.add_node(node.__name__, node)
    g.add_conditional_edges(
        START, route_start, {"opening": "target_intervene", "start": "small_generate", "check": "classify_step"}
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
