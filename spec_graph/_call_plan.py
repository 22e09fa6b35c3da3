"""What one call of the chat model runs with: per-call overrides, stop strings, messages, config.

The chat model checks a call's arguments here before anything runs, so that a typo in a keyword
argument or an empty stop string fails at once with a message naming the valid choices.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from langchain_core.language_models import LangSmithParams
from langchain_core.messages import BaseMessage

from spec_graph._messages import convert_messages
from spec_graph._streaming import THINK_START
from spec_graph.config import SpeculativeThinkingConfig, resolve_config
from spec_graph.generators.base import capabilities_of
from spec_graph.tools import TOOL_KWARGS, ToolRequest

__all__ = [
    "PROVIDER",
    "CallPlan",
    "base_config",
    "call_overrides",
    "check_stops",
    "langsmith_params",
    "merge_stops",
    "plan_call",
]

PROVIDER = "spec_graph"
"""The provider name reported to LangChain and LangSmith."""

_CALL_ALIASES = {"max_tokens": "max_new_tokens"}
_IGNORED_CALL_KWARGS = {"stream", "model", "ls_structured_output_format", "structured_output_format", *TOOL_KWARGS}
_CONSTRAINT_KWARGS = ("grammar", "response_format")
"""Passed to the run as they are (set by ``with_structured_output``, see :mod:`spec_graph._structured_output`)."""


@dataclass
class CallPlan:
    """One call, ready to run."""

    messages: list[dict[str, Any]]
    """The conversation as ``{"role", "content"}`` dicts."""
    stop: tuple[str, ...]
    """The model's stop strings, then the call's."""
    overrides: dict[str, Any]
    """Config fields set for this call."""
    config: SpeculativeThinkingConfig
    """The model's config with ``overrides`` applied."""
    in_reasoning: bool
    """Whether the rendered prompt already opens ``<think>``."""
    tools: ToolRequest | None = None
    """The call's bound tools (``None`` without tools); ``messages`` already hold its instruction."""
    constraint: dict[str, Any] = field(default_factory=dict)
    """The run's ``grammar`` / ``response_format``, where the call sets them."""

    @property
    def run_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of the thinker's run: the overrides, and the tools the models see."""
        shown = self.tools.prompt_tools() if self.tools is not None else []
        return {**self.overrides, **self.constraint, **({"tools": shown} if shown else {})}

    def with_tools(self, tools: ToolRequest | None, models: Sequence[object] = ()) -> CallPlan:
        """This plan with the call's tools and the instruction a forcing ``tool_choice`` adds.

        When every one of ``models`` can write under a grammar (local models), a forcing choice
        is also the run's grammar (one call of a callable tool, in the parser's tags).
        """
        if tools is None:
            return self
        grammar = tools.forced_grammar() if models and all(capabilities_of(m).grammar for m in models) else None
        constraint = {**self.constraint, "grammar": grammar} if grammar and "grammar" not in self.constraint else {}
        return replace(
            self, messages=tools.instruct(self.messages), tools=tools, constraint=constraint or self.constraint
        )


def plan_call(
    base: SpeculativeThinkingConfig,
    messages: list[BaseMessage],
    stops: tuple[str, ...],
    kwargs: Mapping[str, Any],
    small: Any = None,
) -> CallPlan:
    """Check a call's arguments and prepare it.

    Args:
        base: the model's config; the call's keyword arguments are applied to it.
        messages: the conversation.
        stops: the model's and the call's stop strings.
        kwargs: the call's keyword arguments.
        small: the small generator, to see whether its prompt opens ``<think>`` (``None``: no
            reasoning split, so no need to look).
    """
    overrides = call_overrides(kwargs)
    cfg = resolve_config(base, **overrides) if overrides else base
    check_stops(stops)
    dicts = convert_messages(messages)
    render = getattr(small, "render_prompt", None)
    in_reasoning = render is not None and str(render(dicts)).rstrip().endswith(THINK_START)
    constraint = {k: kwargs[k] for k in _CONSTRAINT_KWARGS if kwargs.get(k) is not None}
    return CallPlan(dicts, stops, overrides, cfg, in_reasoning, constraint=constraint)


def base_config(config: Any, **fields: Any) -> SpeculativeThinkingConfig:
    """The model's config: ``config`` with the fields set on the model applied.

    ``config`` is a config, a preset name, a YAML path, a dict or ``None``; ``fields`` that are
    ``None`` are left out. Raises for a bad value.
    """
    return resolve_config(config, **{k: v for k, v in fields.items() if v is not None})


def call_overrides(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The config fields a call's keyword arguments set (``max_tokens`` is ``max_new_tokens``).

    LangChain's own arguments (``stream``, ``model``, ``ls_*``, structured-output tags) and
    ``None`` values are left out.

    Raises:
        TypeError: for an argument that is not a config field, naming the valid ones.
    """
    overrides: dict[str, Any] = {}
    fields = SpeculativeThinkingConfig.model_fields
    for key, value in kwargs.items():
        if key in _IGNORED_CALL_KWARGS or key in _CONSTRAINT_KWARGS or key.startswith("ls_") or value is None:
            continue
        name = _CALL_ALIASES.get(key, key)
        if name not in fields:
            msg = (
                f"unexpected argument {key!r}; per call, pass max_tokens or SpeculativeThinkingConfig "
                f"fields ({', '.join(sorted(fields))})"
            )
            raise TypeError(msg)
        overrides[name] = value
    return overrides


def merge_stops(own: Sequence[str] | None, call: Sequence[str] | None) -> tuple[str, ...]:
    """The model's stop strings, then the call's, each once."""
    return tuple(dict.fromkeys([*(own or ()), *(call or ())]))


def check_stops(stops: Sequence[str] | None) -> None:
    """Raise ``ValueError`` for an empty stop string (it would stop before the first character)."""
    if any(not s for s in stops or ()):
        msg = "stop strings must not be empty"
        raise ValueError(msg)


def langsmith_params(
    config: SpeculativeThinkingConfig, model_name: str, stops: Sequence[str], kwargs: Mapping[str, Any]
) -> LangSmithParams:
    """The LangSmith tracing parameters of a call: provider, model, temperature, budget, stops."""
    temperature = kwargs.get("temperature")
    max_tokens = kwargs.get("max_tokens")
    params = LangSmithParams(
        ls_provider=PROVIDER,
        ls_model_name=str(kwargs.get("model") or model_name),
        ls_model_type="chat",
        ls_temperature=float(config.temperature if temperature is None else temperature),
        ls_max_tokens=int(config.max_new_tokens if max_tokens is None else max_tokens),
    )
    if stops:
        params["ls_stop"] = list(stops)
    return params
