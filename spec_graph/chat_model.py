"""Speculative Thinking as a LangChain chat model: :class:`SpeculativeThinkingChatModel`.

The model wraps :class:`~spec_graph.thinker.SpeculativeThinker` (and so the speculative-thinking
state graph) behind :class:`~langchain_core.language_models.BaseChatModel`, so it goes wherever a
chat model goes: chains, LangGraph nodes, ``batch``/``abatch``, tracing.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import aclosing
from pathlib import Path
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput, ModelProfile
from langchain_core.language_models.chat_models import agenerate_from_stream, generate_from_stream
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from pydantic import ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from spec_graph._call_plan import CallPlan, base_config, check_stops, langsmith_params, merge_stops, plan_call
from spec_graph._chat_events import speculation_events
from spec_graph._chat_output import STATS_KEY, final_chunk
from spec_graph._chat_profile import chat_profile, check_model_kwargs, check_model_spec
from spec_graph._chat_run import RunChunks, astream_chunks, stream_chunks
from spec_graph._messages import convert_messages
from spec_graph._streaming import Assembler
from spec_graph._structured_output import Method, structured_output
from spec_graph.config import SpeculativeThinkingConfig
from spec_graph.config_errors import ConfigError
from spec_graph.generators.base import Generator, capabilities_of
from spec_graph.generators.precision import check_dtype, check_quantization
from spec_graph.generators.resolve import resolve_generator, spec_name
from spec_graph.policies import TriggerPolicy
from spec_graph.result import SpecResult
from spec_graph.sampling import Temperature, TopK, TopP
from spec_graph.thinker import SpeculativeThinker
from spec_graph.tools import bind_tools, finish_tools, prompt_tokens, tool_request

__all__ = ["STATS_KEY", "SpeculativeThinkingChatModel", "speculation_events"]


class SpeculativeThinkingChatModel(BaseChatModel):
    """Speculative Thinking as a LangChain chat model.

    A small model writes the answer; at every step boundary (a blank line) its next words are
    classified, and on a reflection or verification cue a larger target model writes that
    stretch instead (Speculative Thinking, COLM 2025). Both models run locally.

    Setup (from a clone of the repository; the package is not on PyPI):
        .. code-block:: bash

            python -m venv .venv && . .venv/bin/activate && pip install -e .

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
        reasoning: as in ChatOllama: ``True`` (default) moves ``<think>`` text to
            ``additional_kwargs["reasoning_content"]``; ``False`` drops it; ``None`` keeps it inline.

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

    Tool calling: ``llm.bind_tools([add], tool_choice="auto").invoke("2 + 3?").tool_calls`` (docs/chat_model.md, Tools).

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
    temperature: Temperature | None = None
    """Sampling temperature, 0 for greedy (default: the config's)."""
    max_tokens: int | None = Field(default=None, ge=1)
    """Most generated tokens, prompt excluded (default: the config's ``max_new_tokens``)."""
    top_p: TopP | None = None
    """Nucleus sampling mass (default: the config's)."""
    top_k: TopK | None = None
    """Top-k sampling, 0 for off (default: the config's)."""
    seed: int | None = None
    """Random seed for sampling (default: the config's, unseeded)."""
    stop: list[str] | None = None
    """Stop strings, added to those of each call; the text is cut before the first match."""
    streaming: bool = False
    """Whether ``invoke`` streams (callbacks then receive every token)."""
    reasoning: bool | None = True
    """ChatOllama's meaning: ``True`` (default): ``<think>`` text goes to
    ``additional_kwargs["reasoning_content"]``; ``False``: not emitted; ``None``: inline, as written."""
    model_kwargs: dict[str, Any] | None = None
    """Models given by name: keyword arguments for ``AutoModelForCausalLM.from_pretrained`` (e.g.
    ``{"attn_implementation": "sdpa"}``); a server URL: JSON fields sent in every request (e.g.
    ``{"repetition_penalty": 1.05}``); not allowed with loaded objects (default: none)."""
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

    def __init__(self, **kwargs: Any) -> None:
        """Validate the fields; a bad one is one line naming it and the valid values (:class:`ConfigError`)."""
        try:
            super().__init__(**kwargs)
        except ValidationError as exc:
            raise ConfigError.from_validation(exc) from None

    @field_validator("small_model", "target_model")
    @classmethod
    def _check_model(cls, spec: Any) -> Any:
        return check_model_spec(spec)

    @model_validator(mode="after")
    def _resolve(self) -> SpeculativeThinkingChatModel:
        """Check the config and the stop strings now (cheap: no model is loaded)."""
        from spec_graph.models import DEFAULT_SMALL_MODEL, DEFAULT_TARGET_MODEL

        self.small_model = DEFAULT_SMALL_MODEL if self.small_model is None else self.small_model
        self.target_model = DEFAULT_TARGET_MODEL if self.target_model is None else self.target_model
        check_dtype(self.dtype)
        check_quantization(self.quantization)
        self._base_config = base_config(
            self.config,
            temperature=self.temperature,
            max_new_tokens=self.max_tokens,
            top_p=self.top_p,
            top_k=self.top_k,
            seed=self.seed,
            policy=None if isinstance(self.policy, TriggerPolicy) else self.policy,  # an object goes to the thinker
        )
        check_stops(self.stop)
        check_model_kwargs(self.model_kwargs, self.small_model, self.target_model)
        return self

    def _resolve_model_profile(self) -> ModelProfile | None:
        return chat_profile(self.small_model, self.target_model, reasoning=self.reasoning)

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
            config: as the field (a config, preset name, YAML path or dict).
            device: ``"cuda"``, ``"cpu"``, ... (default: CUDA when present).
            dtype: ``"auto"`` (default), ``"float32"``, ``"bfloat16"`` or ``"float16"``.
            quantization: ``"none"`` (default) or ``"int8"``.
            preload: load both models now instead of on the first call.
            **kwargs: other fields (``temperature``, ``max_tokens``, ``stop``, ...).
        """
        cfg = dict(config) if isinstance(config, Mapping) else config
        load = {"device": device, "dtype": dtype, "quantization": quantization}
        llm = cls(small_model=small_model_id, target_model=target_model_id, config=cfg, **load, **kwargs)
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
        names = {"model_name": self.model_name, "small_model": self.small_name, "target_model": self.target_name}
        config = self._base_config.model_dump(mode="json", exclude_defaults=True)
        own = {"policy": repr(self.policy)} if isinstance(self.policy, TriggerPolicy) else {}
        return {**names, "config": config, "reasoning": self.reasoning, "model_kwargs": self.model_kwargs, **own}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        return langsmith_params(self._base_config, self.model_name, self._stops(stop), kwargs)

    def _generators(self) -> tuple[Generator, Generator]:
        """The small and target generators (built on first use; weights load when first needed)."""
        with self._lock:
            if self._gens is None:
                load: dict[str, Any] = {"device": self.device, "dtype": self.dtype, "quantization": self.quantization}
                load |= {"model_kwargs": self.model_kwargs} if self.model_kwargs else {}
                self._gens = (resolve_generator(self.small_model, **load), resolve_generator(self.target_model, **load))
            return self._gens

    def _get_thinker(self) -> SpeculativeThinker:
        small, target = self._generators()
        with self._lock:
            if self._thinker is None:
                own = self.policy if isinstance(self.policy, TriggerPolicy) else None
                self._thinker = SpeculativeThinker(small, target, self._base_config, policy=own)
            return self._thinker

    def _stops(self, stop: Sequence[str] | None) -> tuple[str, ...]:
        return merge_stops(self.stop, stop)

    def _plan(self, messages: list[BaseMessage], stop: list[str] | None, kwargs: Mapping[str, Any]) -> CallPlan:
        """Check a call's arguments and prepare it (the generators are built, no weights loaded)."""
        small = self._generators()[0] if self.reasoning is not None else None
        plan = plan_call(self._base_config, messages, self._stops(stop), kwargs, small)
        return plan.with_tools(tool_request(kwargs, self.target_name, messages), self._generators())

    # -- generation -----------------------------------------------------------------------------
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        result = generate_from_stream(self._stream(messages, stop=stop, run_manager=run_manager, **kwargs))
        return finish_tools(result, tool_request(kwargs, self.target_name, messages))

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        plan = self._plan(messages, stop, kwargs)
        to_chunks = RunChunks(plan, self.reasoning, self._final_chunk)
        yield from stream_chunks(self._get_thinker(), plan, to_chunks, run_manager)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        result = await agenerate_from_stream(self._astream(messages, stop=stop, run_manager=run_manager, **kwargs))
        return finish_tools(result, tool_request(kwargs, self.target_name, messages))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        """Native async: the run's events are awaited; cancelling the task stops the run at its next token."""
        plan, thinker = await asyncio.to_thread(lambda: (self._plan(messages, stop, kwargs), self._get_thinker()))
        to_chunks = RunChunks(plan, self.reasoning, self._final_chunk)
        async with aclosing(astream_chunks(thinker, plan, to_chunks, run_manager)) as chunks:
            async for chunk in chunks:  # closing this generator closes the run's at once
                yield chunk

    def _final_chunk(self, result: SpecResult, assembler: Assembler) -> ChatGenerationChunk:
        """Usage and response metadata, once, with ``chunk_position="last"``."""
        return final_chunk(
            result,
            assembler,
            model_name=self.model_name,
            models=(self.small_name, self.target_name),
            count_tokens=self._count_tokens,
        )

    def _count_tokens(self, author: str, text: str) -> int:
        small, target = self._generators()
        return int((small if author == "small" else target).count_tokens(text))

    # -- tokens ---------------------------------------------------------------------------------
    def get_token_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` in the target model's tokenizer (loads the target on first use)."""
        target = self._generators()[1]
        encode = getattr(target, "encode", None) if capabilities_of(target).token_ids else None
        if encode is None:
            msg = f"the target generator {type(target).__name__} has no tokenizer ids; use get_num_tokens"
            raise NotImplementedError(msg)
        return list(encode(text))

    def get_num_tokens(self, text: str) -> int:
        """Tokens of ``text`` in the target model's tokenizer."""
        return int(self._generators()[1].count_tokens(text))

    def get_num_tokens_from_messages(self, messages: list[BaseMessage], tools: Sequence[Any] | None = None) -> int:
        """Prompt tokens of ``messages`` for the target model, chat template included (``input_tokens``)."""
        return prompt_tokens(self._generators()[1], convert_messages(messages), tools)

    # -- tools and structured output ------------------------------------------------------------
    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools (functions, pydantic classes, ``BaseTool``s, dicts): see :func:`spec_graph.tools.bind_tools`."""
        return bind_tools(self, tools, model_name=self.target_name, kwargs=kwargs)

    def with_structured_output(
        self,
        schema: Mapping[str, Any] | type | None = None,
        *,
        method: Method = "json_schema",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        """A runnable whose answer is parsed as JSON into ``schema``.

        Every ``method`` asks for JSON (with the schema) in a system instruction and parses the answer;
        with local models ``"json_schema"``/``"json_mode"`` also write under its grammar (docs/structured-output.md).

        Args:
            schema: a pydantic class (the result is an instance of it, validated), a TypedDict or
                a JSON schema dict (the result is a dict); ``None`` only with ``"json_mode"``.
            method: ``"json_schema"``, ``"json_mode"`` (a grammar or ``response_format``), ``"function_calling"``.
            include_raw: return ``{"raw": AIMessage, "parsed": ..., "parsing_error": ...}``
                instead of raising on a parse error.
            strict: ``False`` lets the grammar allow properties the schema does not list.
            **kwargs: not supported.
        """
        return structured_output(self, schema, method=method, include_raw=include_raw, strict=strict, kwargs=kwargs)
