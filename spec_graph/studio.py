"""The speculative-thinking graph for LangGraph Studio and ``langgraph dev``.

``langgraph.json`` at the repository root points at :data:`graph`: the nodes and edges of
:func:`~spec_graph.graph.build_graph`, unchanged, with a runtime context that Studio can fill in
as JSON (:class:`StudioContext`: model names, preset, budget, sampling) instead of the two
models' live sessions that :class:`~spec_graph.graph.SpecContext` holds. Each run opens its
sessions on its first step and closes them in ``finalize``; a run resumed from a checkpoint
rebuilds them from the checkpointed text, as ``SpeculativeThinker.resume`` does.

```bash
pip install -U "langgraph-cli[inmem]"
langgraph dev            # in the repository root; opens Studio on the graph "speculative_thinking"
```

Input: ``{"messages": [{"role": "user", "content": "What is 12 * 7?"}]}``; the output's ``messages``
end with the answer, ``{"role": "assistant", "content": ...}``. Context (optional):
``{"small_model": "smollm2-135m-instruct", "target_model": "qwen2.5-coder-0.5b-instruct",
"preset": "non_reasoning", "max_new_tokens": 128}``. The first run loads the models (seconds to
minutes); later runs reuse them.
"""

from __future__ import annotations

import functools
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from langgraph.runtime import Runtime
from typing_extensions import TypedDict

from spec_graph.config import resolve_config
from spec_graph.generators.resolve import resolve_generator
from spec_graph.graph.builder import build_graph
from spec_graph.graph.state import SpecContext, SpecState
from spec_graph.models import DEFAULT_SMALL_MODEL, DEFAULT_TARGET_MODEL
from spec_graph.result import split_reasoning

__all__ = ["StudioContext", "StudioInput", "answer_message", "build_studio_graph", "graph"]


class StudioInput(TypedDict):
    """What a run starts from: the conversation, ending with the user's question."""

    messages: list[dict[str, Any]]
    """``[{"role": "user", "content": "What is 12 * 7?"}]``"""


# The output keys of SpecState, loosely typed: the server builds JSON schemas with pydantic, which
# needs typing_extensions.TypedDict (not typing.TypedDict, used by the state) before Python 3.12.
StudioOutput = TypedDict("StudioOutput", dict.fromkeys(SpecState.__annotations__, Any), total=False)  # type: ignore[misc]


@dataclass(eq=False)
class StudioContext:
    """The run's settings, as plain values Studio can edit (its "context" panel)."""

    small_model: str = DEFAULT_SMALL_MODEL
    """An embedded model name, a folder or a hub id (from Python, a ``Generator`` works too)."""
    target_model: str = DEFAULT_TARGET_MODEL
    """The model that steps in."""
    preset: str = "non_reasoning"
    """A preset (``reasoning``, ``non_reasoning``) or a YAML file; the embedded pair are instruct
    models, so ``non_reasoning`` is the default here."""
    max_new_tokens: int = 256
    """Budget of generated tokens."""
    temperature: float = 0.0
    """0 = greedy."""
    seed: int | None = None
    """Seed for sampled runs."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Any other ``SpeculativeThinkingConfig`` fields, e.g. ``{"probe_tokens": 10}``."""


_RUNS: OrderedDict[tuple[Any, ...], tuple[str, SpecContext]] = OrderedDict()
_LOCK = threading.Lock()
_MAX_RUNS = 8


def _run_key(runtime: Runtime[Any]) -> tuple[Any, ...]:
    info = getattr(runtime, "execution_info", None)
    return (id(runtime.context), getattr(info, "thread_id", None), getattr(info, "run_id", None))


def _spec_context(state: Mapping[str, Any], runtime: Runtime[Any]) -> SpecContext:
    """This run's :class:`SpecContext`: its models' sessions, opened on the run's first step."""
    settings = runtime.context
    if isinstance(settings, SpecContext):  # invoked from Python with live sessions
        return settings
    if settings is None:
        settings = StudioContext()
    elif isinstance(settings, Mapping):
        settings = StudioContext(**settings)
    messages = list(state.get("messages") or [])
    fingerprint = json.dumps(messages, sort_keys=True, default=str)
    key = _run_key(runtime)
    with _LOCK:
        entry = _RUNS.get(key)
        if entry is not None and entry[0] == fingerprint:
            _RUNS.move_to_end(key)
            return entry[1]
    if not messages:
        msg = 'the input needs messages: {"messages": [{"role": "user", "content": "..."}]}'
        raise ValueError(msg)
    config = resolve_config(
        settings.preset,
        max_new_tokens=settings.max_new_tokens,
        temperature=settings.temperature,
        seed=settings.seed,
        **settings.overrides,
    )
    ctx = SpecContext.open(
        resolve_generator(settings.small_model), resolve_generator(settings.target_model), messages, config
    )
    stale = []
    with _LOCK:
        for other in [k for k in _RUNS if k == key or (key[1] is not None and k[1] == key[1])]:
            stale.append(_RUNS.pop(other)[1])  # a thread holds one run at a time
        _RUNS[key] = (fingerprint, ctx)
        while len(_RUNS) > _MAX_RUNS:  # runs that never reached finalize (errors, abandoned)
            stale.append(_RUNS.popitem(last=False)[1][1])
    for old in stale:
        old.close()
    return ctx


def _end_run(runtime: Runtime[Any]) -> None:
    if isinstance(runtime.context, SpecContext):
        return
    with _LOCK:
        entry = _RUNS.pop(_run_key(runtime), None)
    if entry is not None:
        entry[1].close()


def answer_message(state: Mapping[str, Any]) -> dict[str, Any]:
    """The run's answer as an assistant message (the text after ``</think>`` when there is thinking)."""
    _, answer = split_reasoning("".join(s["text"] for s in state.get("spans", [])))
    return {"role": "assistant", "content": answer}


def _with_run_context(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    """``fn`` (a node or router of the graph) given the run's :class:`SpecContext`.

    ``finalize`` closes it and appends the answer to ``messages``, so that Studio's chat view shows it.
    """

    @functools.wraps(fn)
    def wrapped(state: SpecState, runtime: Runtime[Any]) -> Any:
        out = fn(state, runtime.override(context=_spec_context(state, runtime)))
        if name == "finalize":
            _end_run(runtime)
            out = {**out, "messages": [*state.get("messages", []), answer_message(state)]}
        return out

    wrapped.__annotations__ = {"state": SpecState, "runtime": Runtime, "return": Any}
    return wrapped


def build_studio_graph(name: str = "speculative_thinking") -> Any:
    """:func:`~spec_graph.graph.build_graph` with a :class:`StudioContext`.

    The same nodes and edges, each node and router that needs the runtime context wrapped so
    that it gets the run's :class:`~spec_graph.graph.SpecContext` (opened from the
    :class:`StudioContext` on the first step); the drawing is the same as the original's.
    """
    return build_graph(
        name=name,
        context_schema=StudioContext,
        input_schema=StudioInput,
        output_schema=StudioOutput,
        wrap=_with_run_context,
    )


graph = build_studio_graph()
"""The compiled graph ``langgraph.json`` names (``spec_graph/studio.py:graph``)."""
