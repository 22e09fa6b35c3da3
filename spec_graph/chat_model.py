"""Speculative Thinking as a LangChain chat model: :class:`SpeculativeThinkingChatModel`.

The model wraps :class:`~spec_graph.thinker.SpeculativeThinker` (and so the speculative-thinking
state graph) behind :class:`~langchain_core.language_models.BaseChatModel`, so it goes wherever a
chat model goes: chains, LangGraph nodes, ``batch``/``abatch``, tracing.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any, Literal, NoReturn, cast

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.messages import AIMessageChunk, BaseMessage, SystemMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableLambda, RunnableMap, RunnablePassthrough
from langchain_core.utils.function_calling import convert_to_json_schema
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from spec_graph._messages import convert_messages
from spec_graph._streaming import THINK_START, Assembler
from spec_graph.config import SpeculativeThinkingConfig, resolve_config
from spec_graph.generators.base import Generator
from spec_graph.generators.precision import check_dtype, check_quantization
from spec_graph.generators.resolve import resolve_generator, spec_name
from spec_graph.policies import TriggerPolicy
from spec_graph.thinker import THINK_END, SpecResult, SpeculativeThinker

__all__ = ["SpeculativeThinkingChatModel", "speculation_events"]

PROVIDER = "spec_graph"
STATS_KEY = "speculative_thinking"
"""The ``response_metadata`` key holding the speculation statistics (final chunk only)."""
_FINISH = {"eos": "stop", "stop": "stop", "length": "length", "time": "time"}
_CALL_ALIASES = {"max_tokens": "max_new_tokens"}
_IGNORED_CALL_KWARGS = {"stream", "model", "ls_structured_output_format", "structured_output_format"}
_TOOLS_MESSAGE = (
    "SpeculativeThinkingChatModel does not support tool calling: the algorithm hands the pen between "
    "a small and a large model on keywords of free-form reasoning text ('wait', 'verify', ...), which "
    "would split and corrupt tool-call JSON, and the small local models behind it do not call tools "
    "reliably. Use it as a reasoning step instead (a LangGraph node whose answer a tool-calling model "
    "acts on, see spec_graph.langgraph_node), or with_structured_output() for JSON answers."
)


# -- intervention events for LangGraph -------------------------------------------------------------
@dataclass(frozen=True)
class _EventSink:
    callback: Callable[[dict[str, Any]], None]
    types: frozenset[str]


_EVENT_SINK: ContextVar[_EventSink | None] = ContextVar("spec_graph_event_sink", default=None)


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
    token = _EVENT_SINK.set(_EventSink(callback, frozenset(types)))
    try:
        yield
    finally:
        _EVENT_SINK.reset(token)


# -- the chat model --------------------------------------------------------------------------------
@dataclass
class _CallPlan:
    messages: list[dict[str, Any]]
    stop: tuple[str, ...]
    overrides: dict[str, Any]
    config: SpeculativeThinkingConfig
    in_reasoning: bool


class SpeculativeThinkingChatModel(BaseChatModel):
    """Speculative Thinking as a LangChain chat model.

    A small model writes the answer; at every step boundary (a blank line) its next words are
    classified, and on a reflection or verification cue a larger target model writes that
    stretch instead (Speculative Thinking, COLM 2025). Both models run locally.

    Setup:
        .. code-block:: bash

            pip install spec-graph

    Key init args — models:
        small_model: the model that writes by default: an embedded name
            (``"smollm2-135m-instruct"``), a folder, a hub id, a ``Generator``, a
            ``(model, tokenizer)`` pair, a ``HuggingFacePipeline`` or a ``ChatHuggingFace``.
        target_model: the model that steps in, same kinds.
        config: a ``SpeculativeThinkingConfig``, a preset name (``"reasoning"``,
            ``"non_reasoning"``), a YAML path or a dict of its fields.

    Key init args — generation:
        temperature: 0 is greedy; default: the config's (0.6).
        max_tokens: budget of generated tokens; default: the config's ``max_new_tokens``.
        stop: strings that end the answer (cut before the match).
        reasoning: ``True`` (default) moves ``<think>`` text to
            ``additional_kwargs["reasoning_content"]``; ``False``/``None`` keep it inline.

    Instantiate:
        .. code-block:: python

            from spec_graph.chat_model import SpeculativeThinkingChatModel

            llm = SpeculativeThinkingChatModel(
                small_model="smollm2-135m-instruct",
                target_model="qwen2.5-coder-0.5b-instruct",
                config="non_reasoning",
                temperature=0,
                max_tokens=256,
            )

    Invoke:
        .. code-block:: python

            msg = llm.invoke("What is 12 * 7?")
            msg.content  # the answer
            msg.usage_metadata  # {"input_tokens": 31, "output_tokens": 57, "total_tokens": 88}
            msg.response_metadata["speculative_thinking"]  # tokens per model, interventions, ...

    Stream:
        .. code-block:: python

            for chunk in llm.stream("What is 12 * 7?"):
                print(chunk.content, chunk.response_metadata.get("authors"))

    Reuse a loaded pipeline:
        .. code-block:: python

            from langchain_huggingface import HuggingFacePipeline

            hf = HuggingFacePipeline(pipeline=my_pipeline)
            llm = SpeculativeThinkingChatModel(small_model=hf, target_model=big_hf)

    Tool calling:
        Not supported: :meth:`bind_tools` raises ``NotImplementedError`` (see there).

    Structured output:
        .. code-block:: python

            class Answer(BaseModel):
                value: int

            llm.with_structured_output(Answer).invoke("What is 12 * 7?")  # Answer(value=84)
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="ignore", protected_namespaces=())

    small_model: Any = Field(default=None)
    """The model that writes (default ``"smollm2-135m-instruct"``); never copied or reloaded."""
    target_model: Any = Field(default=None)
    """The model that intervenes (default ``"qwen2.5-coder-0.5b-instruct"``)."""
    config: SpeculativeThinkingConfig | str | Path | dict[str, Any] | None = None
    """Algorithm parameters: a config, a preset name, a YAML path or a dict (default: reasoning preset)."""
    policy: Any = None
    """When the target writes (default: the config's, the paper's keyword rule): a short name
    such as ``"uncertainty:0.5"``, ``"entropy:2.5"``, ``"regex:<pattern>"``, ``"never"`` or
    ``"always"``, a dict with ``kind``, or your own :class:`~spec_graph.policies.TriggerPolicy`."""
    model: str | None = None
    """Display name reported as ``model_name`` (default ``"<small>+<target>"``)."""
    temperature: float | None = Field(default=None, ge=0)
    """Sampling temperature, 0 for greedy (default: the config's)."""
    max_tokens: int | None = Field(default=None, ge=1)
    """Most generated tokens, prompt excluded (default: the config's ``max_new_tokens``)."""
    top_p: float | None = Field(default=None, gt=0, le=1)
    """Nucleus sampling mass (default: the config's)."""
    top_k: int | None = Field(default=None, ge=0)
    """Top-k sampling, 0 for off (default: the config's)."""
    seed: int | None = None
    """Random seed for sampling (default: the config's, unseeded)."""
    stop: list[str] | None = None
    """Stop strings, added to those of each call; the text is cut before the first match."""
    streaming: bool = False
    """Whether ``invoke`` streams (callbacks then receive every token)."""
    reasoning: bool | None = True
    """``True``: ``<think>`` text goes to ``additional_kwargs["reasoning_content"]``; ``False``/``None``: inline."""
    device: str | None = None
    """Device for models given by name (default: CUDA when present, else CPU)."""
    dtype: str | None = None
    """Dtype for models given by name: ``auto`` (default; bfloat16 on a GPU and on a CPU with bf16
    instructions, else float32), ``float32``, ``bfloat16`` or ``float16``."""
    quantization: str | None = None
    """Weights of models given by name: ``none`` (default) or ``int8`` (~1.9× faster decoding on a CPU)."""

    _base_config: SpeculativeThinkingConfig = PrivateAttr()
    _gens: tuple[Generator, Generator] | None = PrivateAttr(default=None)
    _thinker: SpeculativeThinker | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @model_validator(mode="after")
    def _resolve(self) -> SpeculativeThinkingChatModel:
        """Check the config and the stop strings now (cheap: no model is loaded)."""
        from spec_graph.models import DEFAULT_SMALL_MODEL, DEFAULT_TARGET_MODEL

        if self.small_model is None:
            self.small_model = DEFAULT_SMALL_MODEL
        if self.target_model is None:
            self.target_model = DEFAULT_TARGET_MODEL
        check_dtype(self.dtype)
        check_quantization(self.quantization)
        overrides = {
            "temperature": self.temperature,
            "max_new_tokens": self.max_tokens,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "seed": self.seed,
            "policy": None if isinstance(self.policy, TriggerPolicy) else self.policy,
        }
        self._base_config = resolve_config(self.config, **{k: v for k, v in overrides.items() if v is not None})
        if any(not s for s in self.stop or ()):
            msg = "stop strings must not be empty"
            raise ValueError(msg)
        return self

    @classmethod
    def from_model_ids(
        cls,
        small_model_id: str,
        target_model_id: str,
        *,
        config: SpeculativeThinkingConfig | str | Mapping[str, Any] | None = None,
        device: str | None = None,
        dtype: str | None = None,
        quantization: str | None = None,
        preload: bool = False,
        **kwargs: Any,
    ) -> SpeculativeThinkingChatModel:
        """Build the model from two model ids (embedded names, folders or hub ids).

        Like ``HuggingFacePipeline.from_model_id``, but for the pair. Loaded models are shared
        with every other user of the same id, device, dtype and quantization in the process.

        Args:
            small_model_id: the model that writes.
            target_model_id: the model that intervenes.
            config: algorithm parameters (config, preset name, YAML path or dict).
            device: ``"cuda"``, ``"cpu"``, ... (default: CUDA when present).
            dtype: ``"auto"`` (default), ``"float32"``, ``"bfloat16"`` or ``"float16"``.
            quantization: ``"none"`` (default) or ``"int8"``.
            preload: load both models now instead of on the first call.
            **kwargs: other fields (``temperature``, ``max_tokens``, ``stop``, ...).
        """
        llm = cls(
            small_model=small_model_id,
            target_model=target_model_id,
            config=dict(config) if isinstance(config, Mapping) else config,
            device=device,
            dtype=dtype,
            quantization=quantization,
            **kwargs,
        )
        if preload:
            for gen in llm._generators():
                _ = getattr(gen, "model", None)
        return llm

    # -- plumbing -------------------------------------------------------------------------------
    @property
    def _llm_type(self) -> str:
        return "speculative-thinking-chat"

    @property
    def small_name(self) -> str:
        """Display name of the small model."""
        return spec_name(self.small_model)

    @property
    def target_name(self) -> str:
        """Display name of the target model."""
        return spec_name(self.target_model)

    @property
    def model_name(self) -> str:
        """The ``model_name`` reported in responses and traces."""
        return self.model or f"{self.small_name}+{self.target_name}"

    @property
    def resolved_config(self) -> SpeculativeThinkingConfig:
        """The algorithm configuration with this instance's overrides applied."""
        return self._base_config

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "small_model": self.small_name,
            "target_model": self.target_name,
            "config": self._base_config.model_dump(mode="json", exclude_defaults=True),
            "reasoning": self.reasoning,
            **({"policy": repr(self.policy)} if isinstance(self.policy, TriggerPolicy) else {}),
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        cfg = self._base_config
        params = LangSmithParams(
            ls_provider=PROVIDER,
            ls_model_name=str(kwargs.get("model") or self.model_name),
            ls_model_type="chat",
            ls_temperature=float(_first(kwargs.get("temperature"), cfg.temperature)),
            ls_max_tokens=int(_first(kwargs.get("max_tokens"), cfg.max_new_tokens)),
        )
        if stops := self._stops(stop):
            params["ls_stop"] = list(stops)
        return params

    def _generators(self) -> tuple[Generator, Generator]:
        """The small and target generators (built on first use; weights load when first needed)."""
        with self._lock:
            if self._gens is None:
                load = {"device": self.device, "dtype": self.dtype, "quantization": self.quantization}
                self._gens = (
                    resolve_generator(self.small_model, **load),
                    resolve_generator(self.target_model, **load),
                )
            return self._gens

    def _get_thinker(self) -> SpeculativeThinker:
        small, target = self._generators()
        with self._lock:
            if self._thinker is None:
                own = self.policy if isinstance(self.policy, TriggerPolicy) else None
                self._thinker = SpeculativeThinker(small, target, self._base_config, policy=own)
            return self._thinker

    def _stops(self, stop: Sequence[str] | None) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*(self.stop or ()), *(stop or ())]))

    def _plan(self, messages: list[BaseMessage], stop: list[str] | None, kwargs: Mapping[str, Any]) -> _CallPlan:
        overrides: dict[str, Any] = {}
        fields = SpeculativeThinkingConfig.model_fields
        for key, value in kwargs.items():
            if key in _IGNORED_CALL_KWARGS or key.startswith("ls_") or value is None:
                continue
            name = _CALL_ALIASES.get(key, key)
            if name not in fields:
                msg = (
                    f"unexpected argument {key!r}; per call, pass max_tokens or SpeculativeThinkingConfig "
                    f"fields ({', '.join(sorted(fields))})"
                )
                raise TypeError(msg)
            overrides[name] = value
        cfg = resolve_config(self._base_config, **overrides) if overrides else self._base_config
        stops = self._stops(stop)
        if any(not s for s in stops):
            msg = "stop strings must not be empty"
            raise ValueError(msg)
        dicts = convert_messages(messages)
        in_reasoning = False
        if self.reasoning:
            render = getattr(self._generators()[0], "render_prompt", None)
            in_reasoning = render is not None and str(render(dicts)).rstrip().endswith(THINK_START)
        return _CallPlan(dicts, stops, overrides, cfg, in_reasoning)

    # -- generation -----------------------------------------------------------------------------
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        from langchain_core.language_models.chat_models import generate_from_stream

        return generate_from_stream(self._stream(messages, stop=stop, run_manager=run_manager, **kwargs))

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        plan = self._plan(messages, stop, kwargs)
        thinker = self._get_thinker()
        sink = _EVENT_SINK.get()
        assembler = Assembler(plan.stop, split=bool(self.reasoning), in_reasoning=plan.in_reasoning)
        events = thinker.stream(plan.messages, stop=plan.stop, **plan.overrides)
        try:
            for event in events:
                kind = event.get("type")
                if sink is not None and kind in sink.types:
                    sink.callback(event)
                if kind == "text":
                    chunks = assembler.feed(str(event["author"]), str(event["text"]))
                elif kind == "result":
                    result: SpecResult = event["result"]
                    chunks = [*assembler.finish(result), self._final_chunk(result, assembler)]
                else:
                    continue
                for chunk in chunks:
                    if run_manager:
                        run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                    yield chunk
        finally:
            close = getattr(events, "close", None)
            if close is not None:  # stops the run at its next token if we stopped early
                close()

    def _final_chunk(self, result: SpecResult, assembler: Assembler) -> ChatGenerationChunk:
        """Usage and response metadata, once, with ``chunk_position="last"``."""
        input_tokens = int(result.prompt_tokens.get("target", result.prompt_tokens.get("small", 0)))
        output_tokens = int(result.num_output_tokens)
        totals = {"input_tokens": input_tokens, "output_tokens": output_tokens}
        usage = cast("UsageMetadata", {**totals, "total_tokens": input_tokens + output_tokens})
        if assembler.think.saw_reasoning:
            usage["output_token_details"] = {"reasoning": self._reasoning_tokens(result, assembler.think.mode)}
        message = AIMessageChunk(
            content="",
            usage_metadata=usage,
            response_metadata={
                "model_name": self.model_name,
                "finish_reason": _FINISH.get(result.finish_reason, result.finish_reason),
                "model_provider": PROVIDER,
                STATS_KEY: self._stats(result),
            },
            chunk_position="last",
        )
        return ChatGenerationChunk(message=message)

    def _reasoning_tokens(self, result: SpecResult, mode: str) -> int:
        """Kept tokens written before ``</think>`` (all of them when the run ended while thinking)."""
        end = result.text.find(THINK_END)
        if end < 0 or mode in ("reasoning", "reasoning_lead"):
            return int(result.num_output_tokens)
        small, target = self._generators()
        tokens, pos = 0, 0
        for span in result.spans:
            start, pos = pos, pos + len(span["text"])
            if span["author"] == "injected" or start >= end:
                continue
            if pos <= end:
                tokens += len(span["token_ids"])
            else:
                gen = small if span["author"] == "small" else target
                tokens += gen.count_tokens(span["text"][: end - start])
        return min(tokens, int(result.num_output_tokens))

    def _stats(self, result: SpecResult) -> dict[str, Any]:
        kinds = Counter(i["kind"] for i in result.interventions)
        categories = Counter(i["category"] for i in result.interventions if i["kind"] == "intervention")
        return {
            "small_model": self.small_name,
            "target_model": self.target_name,
            "finish_reason": result.finish_reason,
            "output_tokens": dict(result.output_tokens),
            "generated_tokens": dict(result.generated_tokens),
            "prefill_tokens": dict(result.prefill_tokens),
            "prompt_tokens": dict(result.prompt_tokens),
            "interventions": dict(categories),
            "openings": kinds["opening"],
            "verifications": kinds["verification"],
            "takeovers": kinds["takeover"],
            "fallbacks": [dict(f) for f in result.fallbacks],
            "target_share": result.target_share,
            "model_seconds": dict(result.model_seconds),
            "wall_seconds": result.wall_seconds,
            "tokens_per_second": result.tokens_per_second,
            "spans": [{"author": s["author"], "reason": s["reason"], "chars": len(s["text"])} for s in result.spans],
        }

    # -- tokens ---------------------------------------------------------------------------------
    def get_token_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` in the target model's tokenizer (loads the target on first use)."""
        target = self._generators()[1]
        encode = getattr(target, "encode", None)
        if encode is None:
            msg = f"the target generator {type(target).__name__} has no tokenizer ids; use get_num_tokens"
            raise NotImplementedError(msg)
        return list(encode(text))

    def get_num_tokens(self, text: str) -> int:
        """Tokens of ``text`` in the target model's tokenizer."""
        return int(self._generators()[1].count_tokens(text))

    def get_num_tokens_from_messages(self, messages: list[BaseMessage], tools: Sequence[Any] | None = None) -> int:
        """Prompt tokens of ``messages`` for the target model, chat template included.

        This is the number reported as ``usage_metadata["input_tokens"]``.
        """
        if tools:
            raise NotImplementedError(_TOOLS_MESSAGE)
        session = self._generators()[1].start(convert_messages(messages))
        try:
            return int(session.prompt_tokens)
        finally:
            session.close()

    # -- tools and structured output ------------------------------------------------------------
    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> NoReturn:
        """Not supported: raises ``NotImplementedError`` explaining why and what to do instead."""
        raise NotImplementedError(_TOOLS_MESSAGE)

    def with_structured_output(  # type: ignore[override]
        self,
        schema: Mapping[str, Any] | type | None = None,
        *,
        method: Literal["json_schema", "json_mode", "function_calling"] = "json_schema",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        """A runnable whose answer is parsed as JSON into ``schema``.

        There is no constrained decoding and no tool calling: every ``method`` asks for JSON
        in a system instruction (with the schema) and parses the answer (code fences allowed).

        Args:
            schema: a pydantic class (the result is an instance of it, validated), a TypedDict or
                a JSON schema dict (the result is a dict); ``None`` only with ``"json_mode"``.
            method: accepted for compatibility; all methods prompt for JSON.
            include_raw: return ``{"raw": AIMessage, "parsed": ..., "parsing_error": ...}``
                instead of raising on a parse error.
            strict: accepted for compatibility; pydantic schemas are always validated.
            **kwargs: not supported.
        """
        if kwargs:
            msg = f"unsupported arguments: {sorted(kwargs)}"
            raise ValueError(msg)
        if method not in ("json_schema", "json_mode", "function_calling"):
            msg = f"unknown method {method!r}; use 'json_schema', 'json_mode' or 'function_calling'"
            raise ValueError(msg)
        if schema is None and method != "json_mode":
            msg = "schema must be given unless method='json_mode'"
            raise ValueError(msg)
        parser: Runnable[Any, Any]
        if isinstance(schema, type) and issubclass(schema, BaseModel):
            parser = PydanticOutputParser(pydantic_object=schema)
            json_schema: dict[str, Any] | None = schema.model_json_schema()
        else:
            parser = JsonOutputParser()
            json_schema = None if schema is None else convert_to_json_schema(cast(Any, schema))
        instruction = _json_instruction(json_schema)
        add_instruction: Runnable[Any, list[BaseMessage]] = RunnableLambda(
            lambda x: _prepend_system(self._convert_input(x).to_messages(), instruction)
        )
        llm = add_instruction | self.bind(
            ls_structured_output_format={"kwargs": {"method": method, "strict": strict}, "schema": json_schema}
        )
        if not include_raw:
            return llm | parser
        parser_assign = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
        parser_none = RunnablePassthrough.assign(parsed=lambda _: None)
        with_fallback = parser_assign.with_fallbacks([parser_none], exception_key="parsing_error")
        return RunnableMap(raw=llm) | with_fallback


def _first(value: Any, default: Any) -> Any:
    return default if value is None else value


def _json_instruction(json_schema: dict[str, Any] | None) -> str:
    import json

    if json_schema is None:
        return "Answer with one valid JSON object only, no other text."
    return (
        "Answer with one JSON object that conforms to this JSON schema, and no other text:\n"
        f"{json.dumps(json_schema, ensure_ascii=False)}"
    )


def _prepend_system(messages: list[BaseMessage], instruction: str) -> list[BaseMessage]:
    return [SystemMessage(content=instruction), *messages]
