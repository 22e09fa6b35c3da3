r"""A model on an OpenAI-compatible server as a :class:`~spec_graph.generators.base.Generator`.

Any engine that speaks the OpenAI completions API works: vLLM, SGLang, TGI, llama.cpp's
server, ``transformers serve``. The target then scales on that engine's tensor parallelism and
continuous batching; many runs (threads or tasks) share one :class:`RemoteGenerator` and its
connection pool, and the engine batches their requests.

What a call sends (``/v1/completions``): the conversation rendered with the model's own chat
template (from a tokenizer loaded here, or a template string given) followed by the trace text,
``max_tokens``, the trigger strings as ``stop`` when the call must stop at a boundary plus the
user's stop strings, ``temperature``/``top_p``/``seed``, and ``stream: true``. The server
re-tokenizes the whole text, so a seam where the other model's text merges with ours
(``".\\n"`` + ``"\\nWait"``) is tokenized as one piece, as :class:`~spec_graph.generators.hf.HFGenerator`
does it. With ``prompt_format="ids"`` (vLLM, SGLang) the prompt goes as token ids built exactly
as the local generator builds them.

The streamed text is checked as the local generator checks it, piece by piece (a streamed
piece is one token): the first piece that completes a trigger (also one that began in the
earlier trace) or a user stop string ends the call there, and a stop string the server strips
(vLLM, SGLang) is put back. Token ids of the written text come from the local tokenizer when
there is one (so a local model with the same tokenizer can take them as they are); without
one they are placeholders (``-1``) counted from the server's ``usage``, under a tokenizer key
unique to the server and model, so no other model mistakes them for its ids.

Faults: timeouts, connection errors, ``408``/``429`` and ``5xx`` answers and streams cut off
mid-way are retried ``retries`` times with exponential backoff, continuing from the text already
received (nothing streamed is lost or sent twice to ``on_text``); then
:class:`RemoteGeneratorError` is raised, carrying that text. Other ``4xx`` answers raise at once.
A call past its ``deadline`` returns what it has with finish ``"time"`` instead.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from spec_graph.generators import remote_retry
from spec_graph.generators.base import Capabilities, DeclaresCapabilities, GenerateRequest, Segment, Span
from spec_graph.generators.remote_call import Call, Plan
from spec_graph.generators.remote_errors import RemoteGeneratorError
from spec_graph.generators.remote_http import Server
from spec_graph.generators.remote_options import (
    API_KEY_ENV,
    BASE_URL_ENV,
    MODEL_ENV,
    Api,
    Engine,
    PromptFormat,
    RemoteOptions,
    from_env,
    normalize_base_url,
)
from spec_graph.generators.remote_tokenizer import ServedTokenizer, load_tokenizer, names_local_model
from spec_graph.generators.tokens import TraceIds, tokenizer_key
from spec_graph.generators.tool_prompt import ToolSpecs


# -- the generator -----------------------------------------------------------------------------
class RemoteGenerator(DeclaresCapabilities):
    """A model served behind an OpenAI-compatible API.

    Args:
        model: the served model's name (default: ``$SPEC_GRAPH_MODEL``, else the one model the
            server lists). When it is an embedded model name or a local folder, its tokenizer
            is loaded from there unless ``tokenizer`` says otherwise.
        base_url: e.g. ``http://gpu-box:8000/v1`` (default: ``$SPEC_GRAPH_BASE_URL``, then
            ``$OPENAI_BASE_URL``; ``/v1`` is added to a URL without a path).
        api_key: sent as a bearer token (default: ``$SPEC_GRAPH_API_KEY``, then
            ``$OPENAI_API_KEY``; none for a local server). Never logged or shown.
        tokenizer: the served model's tokenizer, to render the chat template and count tokens:
            an embedded model name, a folder, a hub id or a loaded tokenizer; ``False`` for none.
        chat_template: a Jinja chat template to use instead of the tokenizer's (needed without
            a tokenizer with ``api="completions"``).
        api: ``"completions"`` (``/v1/completions``, the default and the exact one) or
            ``"chat"`` (``/v1/chat/completions`` continuing the partial assistant message; vLLM
            and SGLang only, and their templates may strip whitespace at the end of the trace).
        prompt_format: ``"text"`` (every server) or ``"ids"``: token ids built as the local
            generator builds them (vLLM, SGLang; needs a tokenizer).
        engine: ``"vllm"`` or ``"sglang"`` to send their extra fields (``top_k``, keep the stop
            string); ``"generic"`` for none (``transformers serve`` rejects unknown fields);
            ``"auto"`` asks ``/v1/models`` who owns the model.
        stream: stream tokens (SSE). Needed for ``on_text`` as tokens come, for stopping a
            stretch at a trigger completed across the seam, and for keeping a partial answer.
        logprobs: ask for the log-probability of each written token (``Segment.logprobs``).
        timeout: seconds to wait for each read from the server (a token, when streaming).
        connect_timeout: seconds to wait for a connection.
        retries: further attempts after a timeout, a connection error, a 408/429/5xx answer
            or a cut stream.
        backoff: first wait before a retry in seconds; doubles each time, with jitter.
        max_backoff: longest wait before a retry.
        max_concurrency: most requests in flight from this generator (all runs together).
        context_window: the model's context length, when known: stretches are clipped to it
            (finish ``"context"``) instead of the server refusing them.
        extra_body: more JSON fields for every request (e.g. ``{"repetition_penalty": 1.0}``).
        headers: more HTTP headers.
        name: display name (default: the model name).
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        tokenizer: Any = None,
        chat_template: str | None = None,
        api: Api = "completions",
        prompt_format: PromptFormat = "text",
        engine: Engine = "auto",
        stream: bool = True,
        logprobs: bool = False,
        timeout: float = 120.0,
        connect_timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        max_concurrency: int | None = None,
        context_window: int | None = None,
        extra_body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        name: str | None = None,
    ) -> None:
        """Check the settings; nothing is sent until the first call."""
        url = base_url or from_env(BASE_URL_ENV)
        if not url:
            msg = f"no server given: pass base_url= or set {' or '.join(BASE_URL_ENV)}"
            raise ValueError(msg)
        self.options = RemoteOptions(
            api=api,
            prompt_format=prompt_format,
            engine=engine,
            stream=stream,
            logprobs=logprobs,
            timeout=timeout,
            connect_timeout=connect_timeout,
            retries=retries,
            backoff=backoff,
            max_backoff=max_backoff,
            max_concurrency=max_concurrency,
            context_window=context_window,
            extra_body=dict(extra_body or {}),
            name=name,
        )
        model = model or os.environ.get(MODEL_ENV) or None
        if tokenizer is None and model is not None and names_local_model(model):
            tokenizer = model  # an embedded model name or a folder: its tokenizer is here
        if tokenizer is False:
            tokenizer = None
        if prompt_format == "ids" and tokenizer is None:
            msg = "prompt_format='ids' needs the model's tokenizer (tokenizer=...)"
            raise ValueError(msg)
        self.tokens = ServedTokenizer(tokenizer, chat_template, lambda: self.name)
        """The served model's tokenizer on this side (or none)."""
        api_key = api_key or from_env(API_KEY_ENV)
        sent = {"Content-Type": "application/json", **dict(headers or {})}
        if api_key:
            sent["Authorization"] = f"Bearer {api_key}"
        self.server = Server(normalize_base_url(url), self.options, model=model, headers=sent)
        """The server: client, concurrency cap, the model's name and engine."""

    def __repr__(self) -> str:
        return f"RemoteGenerator(model={self.server.model_name!r}, base_url={self.url!r}, api={self.api!r})"

    # -- identity ----------------------------------------------------------------------------
    @property
    def model(self) -> str:
        """The served model's name (asks the server when none was given)."""
        if self.server.model_name is None:
            self.server.resolve()
        assert self.server.model_name is not None
        return self.server.model_name

    @property
    def name(self) -> str:
        """Display name."""
        return self.options.name or self.server.label

    @property
    def base_url(self) -> str:
        """The server's base URL (``.../v1``)."""
        return self.server.base_url

    @property
    def url(self) -> str:
        """The base URL without credentials (for messages)."""
        return self.server.url

    @property
    def engine(self) -> Engine:
        """``"vllm"``, ``"sglang"`` or ``"generic"`` (``"auto"`` until the server is asked)."""
        return self.server.engine

    @property
    def api(self) -> Api:
        """``"completions"`` or ``"chat"``."""
        return self.options.api

    @property
    def prompt_format(self) -> PromptFormat:
        """``"text"`` or ``"ids"``."""
        return self.options.prompt_format

    @property
    def context_window(self) -> int | None:
        """The model's context length, when given."""
        return self.options.context_window

    @property
    def capabilities(self) -> Capabilities:
        """Log-probabilities of the top tokens; the model's token ids only with a local tokenizer."""
        return Capabilities(logprobs=True, token_ids=self.tokens.given)

    # -- text <-> ids (the local tokenizer) --------------------------------------------------
    @property
    def tokenizer(self) -> Any:
        """The local tokenizer of the served model, or ``None``."""
        return self.tokens.tokenizer

    @property
    def tokenizer_key(self) -> str:
        """The local tokenizer's key (as HFGenerator computes it), else one unique to the server and model."""
        return self.tokens.key(lambda: f"remote:{self.url}#{self.model}")

    @property
    def eos_token_id(self) -> int | None:
        """The tokenizer's end-of-turn id (added to the ids of a call that ended its turn)."""
        return self.tokens.eos_token_id

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens (needs a tokenizer)."""
        return self.tokens.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``, special tokens kept (needs a tokenizer)."""
        return self.tokens.decode(ids)

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text``: exact with a tokenizer, else estimated (4 characters a token)."""
        return self.tokens.count(text)

    def render_prompt(self, messages: Sequence[Mapping[str, Any]], tools: ToolSpecs | None = None) -> str:
        """The conversation (and ``tools``) in the model's chat template, ending with the assistant's turn."""
        return self.tokens.render(messages, tools)

    # -- server ------------------------------------------------------------------------------
    def resolve(self) -> None:
        """Ask ``/v1/models`` for what was not given: the model's name and the engine."""
        self.server.resolve()

    def models(self) -> list[str]:
        """Names of the models the server lists."""
        return [str(m.get("id")) for m in self.server.models()]

    def close(self) -> None:
        """Close the HTTP client (a later call opens a new one)."""
        self.server.close()

    def __enter__(self) -> RemoteGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sessions ----------------------------------------------------------------------------
    def start(self, messages: Sequence[Mapping[str, Any]], tools: ToolSpecs | None = None) -> RemoteSession:
        """Open a session: render (and count) the prompt; nothing is sent yet."""
        return RemoteSession(self, messages, tools)


class RemoteSession(DeclaresCapabilities):
    """One run's view of a served model: the rendered prompt and the run's trace ids.

    Thread-safe: calls of one session may come from any thread; the server holds no per-run
    state, so :meth:`close` frees nothing there.
    """

    def __init__(
        self, gen: RemoteGenerator, messages: Sequence[Mapping[str, Any]], tools: ToolSpecs | None = None
    ) -> None:
        """Render the prompt with the model's chat template (``api="completions"``)."""
        self._gen = gen
        self.messages = [dict(m) for m in messages]
        self.tools = [dict(t) for t in tools] if tools else None
        self.prompt_text = gen.render_prompt(self.messages, self.tools) if gen.api == "completions" else None
        self._prompt_ids: list[int] | None = None
        self._prompt_tokens = 0
        rendered = self.prompt_text
        if rendered is None and gen.tokenizer is not None:
            with contextlib.suppress(ValueError):  # api="chat" with a tokenizer that has no template
                rendered = gen.render_prompt(self.messages, self.tools)
        if gen.tokenizer is not None and rendered is not None:
            self._prompt_ids = gen.encode(rendered)
            self._prompt_tokens = len(self._prompt_ids)
            if gen.context_window is not None and self._prompt_tokens >= gen.context_window:
                msg = (
                    f"the prompt is {self._prompt_tokens} tokens but {gen.name!r} has a context window of "
                    f"{gen.context_window}: shorten the conversation"
                )
                raise ValueError(msg)
        self._trace_ids = TraceIds(gen.encode, gen.decode, gen.tokenizer_key) if self._prompt_ids is not None else None
        self._lock = threading.Lock()
        self._calls = 0
        self.closed = False

    @property
    def capabilities(self) -> Capabilities:
        """The generator's."""
        return self._gen.capabilities

    @property
    def prompt_tokens(self) -> int:
        """Tokens of the rendered prompt (the server's count after the first call without a tokenizer)."""
        return self._prompt_tokens

    @property
    def tokenizer_key(self) -> str:
        """The generator's tokenizer key."""
        return self._gen.tokenizer_key

    def trace_ids(self, trace: Sequence[Span]) -> list[int]:
        """The trace's ids in this model's tokenizer, seams re-tokenized (needs a tokenizer)."""
        if self._trace_ids is None:
            msg = "trace_ids needs the model's tokenizer"
            raise ValueError(msg)
        with self._lock:
            return list(self._trace_ids(trace))

    def _plan(self, trace: Sequence[Span], request: GenerateRequest) -> Plan:
        """Number the call; build the prompt's ids and clip to the context window where needed."""
        with self._lock:
            self._calls += 1
            index = self._calls
        gen, base_ids = self._gen, None
        max_tokens, limited = request.max_tokens, False
        needs_ids = gen.prompt_format == "ids" or gen.context_window is not None
        if needs_ids and self._prompt_ids is not None and request.interrupted() is None:
            base_ids = self._prompt_ids + self.trace_ids(trace)
            if gen.context_window is not None and gen.context_window - len(base_ids) < max_tokens:
                max_tokens, limited = max(0, gen.context_window - len(base_ids)), True
        return Plan(index, self.messages, self.prompt_text, base_ids, max_tokens, limited, self.tools)

    def generate(self, trace: Sequence[Span], request: GenerateRequest) -> Segment:
        """Continue ``trace`` on the server; see the module doc for what is sent and checked."""
        gen = self._gen
        call = Call(gen.server, gen.tokens, gen.options, self._plan(trace, request), trace, request)
        try:
            if call.finish is None:
                remote_retry.run(call)
        finally:
            if self._prompt_tokens == 0 and call.plan.index == 1 and call.prompt_tokens is not None:
                self._prompt_tokens = call.prompt_tokens  # no tokenizer: the server's count of the first prompt
        return call.segment()

    def close(self) -> None:
        """Nothing to free on the server; later calls still work."""
        self.closed = True


__all__ = [
    "API_KEY_ENV",
    "BASE_URL_ENV",
    "MODEL_ENV",
    "RemoteGenerator",
    "RemoteGeneratorError",
    "RemoteSession",
    "TraceIds",
    "load_tokenizer",
    "normalize_base_url",
    "tokenizer_key",
]
