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

import asyncio
import contextlib
import math
import os
import re
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import httpx

from spec_graph.generators.base import GenerateRequest, Segment, Span
from spec_graph.generators.remote_call import Call, RemoteGeneratorError
from spec_graph.generators.tokens import TraceIds, tokenizer_key

BASE_URL_ENV = ("SPEC_GRAPH_BASE_URL", "OPENAI_BASE_URL")
"""Environment variables read, in order, when no ``base_url`` is given."""
API_KEY_ENV = ("SPEC_GRAPH_API_KEY", "OPENAI_API_KEY")
"""Environment variables read, in order, when no ``api_key`` is given."""
MODEL_ENV = "SPEC_GRAPH_MODEL"
"""Environment variable naming the served model when no ``model`` is given."""

Engine = Literal["auto", "generic", "vllm", "sglang"]
Api = Literal["completions", "chat"]
PromptFormat = Literal["text", "ids"]

_PIECE_RE = re.compile(r"\n+|\s?[^\s]+|\s")
_TOKENIZERS: dict[str, Any] = {}
_TOKENIZERS_LOCK = threading.Lock()


# -- tokenizers --------------------------------------------------------------------------------
def _local_model_path(name: str) -> str | None:
    """The local folder of an embedded model name or an existing folder, else ``None``."""
    from spec_graph import models

    if models.is_embedded(name):
        return str(models.ensure_model(name))
    path = Path(name).expanduser()
    return str(path) if path.is_dir() else None


def _names_local_model(name: str) -> bool:
    from spec_graph import models

    return models.is_embedded(name) or Path(name).expanduser().is_dir()


def load_tokenizer(spec: str | os.PathLike[str]) -> Any:
    """A tokenizer (loaded once per process) from an embedded model name, a folder or a hub id."""
    path = _local_model_path(str(spec)) or str(spec)
    with _TOKENIZERS_LOCK:
        if path not in _TOKENIZERS:
            from transformers import AutoTokenizer

            _TOKENIZERS[path] = AutoTokenizer.from_pretrained(path)
        return _TOKENIZERS[path]


def _strip_userinfo(url: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def normalize_base_url(url: str) -> str:
    """``http://host:8000`` -> ``http://host:8000/v1``; a URL with a path is kept (minus a final ``/``)."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    if urlsplit(url).path in ("", "/"):
        url += "/v1"
    return url


# -- the generator -----------------------------------------------------------------------------
class RemoteGenerator:
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
        url = base_url or next((os.environ[k] for k in BASE_URL_ENV if os.environ.get(k)), None)
        if not url:
            msg = f"no server given: pass base_url= or set {' or '.join(BASE_URL_ENV)}"
            raise ValueError(msg)
        if api not in ("completions", "chat"):
            msg = f"api must be 'completions' or 'chat', got {api!r}"
            raise ValueError(msg)
        if prompt_format not in ("text", "ids"):
            msg = f"prompt_format must be 'text' or 'ids', got {prompt_format!r}"
            raise ValueError(msg)
        if engine not in ("auto", "generic", "vllm", "sglang"):
            msg = f"engine must be 'auto', 'generic', 'vllm' or 'sglang', got {engine!r}"
            raise ValueError(msg)
        if retries < 0 or timeout <= 0 or connect_timeout <= 0 or backoff < 0:
            msg = "retries and backoff must be >= 0, timeouts > 0"
            raise ValueError(msg)
        if max_concurrency is not None and max_concurrency < 1:
            msg = f"max_concurrency must be >= 1, got {max_concurrency}"
            raise ValueError(msg)
        self.base_url = normalize_base_url(url)
        self.url = _strip_userinfo(self.base_url)
        """The base URL without credentials (for messages)."""
        self._api_key = api_key or next((os.environ[k] for k in API_KEY_ENV if os.environ.get(k)), None)
        self._model = model or os.environ.get(MODEL_ENV) or None
        if tokenizer is None and self._model is not None and _names_local_model(self._model):
            tokenizer = self._model  # an embedded model name or a folder: its tokenizer is here
        if tokenizer is False:
            tokenizer = None
        self._tokenizer_spec = tokenizer
        self._tokenizer: Any = None if isinstance(tokenizer, str | os.PathLike) else tokenizer
        if prompt_format == "ids" and tokenizer is None:
            msg = "prompt_format='ids' needs the model's tokenizer (tokenizer=...)"
            raise ValueError(msg)
        self.chat_template = chat_template
        self.api, self.prompt_format, self.engine = api, prompt_format, engine
        self.stream, self.logprobs = stream, logprobs
        self.timeout, self.connect_timeout = timeout, connect_timeout
        self.retries, self.backoff, self.max_backoff = retries, backoff, max_backoff
        self.max_concurrency = max_concurrency
        self.context_window = context_window
        self.extra_body = dict(extra_body or {})
        self._headers = {"Content-Type": "application/json", **dict(headers or {})}
        if self._api_key:
            self._headers["Authorization"] = f"Bearer {self._api_key}"
        self._name = name
        self._lock = threading.Lock()
        self._tok_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_concurrency) if max_concurrency else None
        self._client: httpx.Client | None = None
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )
        self._aslots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )
        self._resolved = engine != "auto" and self._model is not None

    def __repr__(self) -> str:
        return f"RemoteGenerator(model={self._model!r}, base_url={self.url!r}, api={self.api!r})"

    # -- identity ----------------------------------------------------------------------------
    @property
    def model(self) -> str:
        """The served model's name (asks the server when none was given)."""
        if self._model is None:
            self.resolve()
        assert self._model is not None
        return self._model

    @property
    def name(self) -> str:
        """Display name."""
        return self._name or self._model or self.url

    @property
    def tokenizer(self) -> Any:
        """The local tokenizer of the served model, or ``None``."""
        if self._tokenizer is None and self._tokenizer_spec is not None:
            self._tokenizer = load_tokenizer(self._tokenizer_spec)
        return self._tokenizer

    @property
    def tokenizer_key(self) -> str:
        """The local tokenizer's key (as HFGenerator computes it), else one unique to the server and model."""
        tok = self.tokenizer
        if tok is not None:
            return tokenizer_key(tok)
        return f"remote:{self.url}#{self.model}"

    @property
    def eos_token_id(self) -> int | None:
        """The tokenizer's end-of-turn id (added to the ids of a call that ended its turn)."""
        tok = self.tokenizer
        return None if tok is None else tok.eos_token_id

    # -- text <-> ids ------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens (needs a tokenizer)."""
        tok = self.tokenizer
        if tok is None:
            msg = f"{self.name!r} has no local tokenizer (pass tokenizer=)"
            raise ValueError(msg)
        with self._tok_lock:
            return list(tok(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``, special tokens kept (needs a tokenizer)."""
        with self._tok_lock:
            return str(self.tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False))

    def pieces(self, text: str) -> list[str]:
        """``text`` split into tokens (the local tokenizer's, else word-like pieces)."""
        if self.tokenizer is not None:
            with self._tok_lock:
                enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            ends = sorted({e for _, e in enc["offset_mapping"] if 0 < e <= len(text)})
            if ends:
                if ends[-1] != len(text):
                    ends.append(len(text))
                return [text[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=True)]
        return _PIECE_RE.findall(text) or ([text] if text else [])

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text``: exact with a tokenizer, else estimated (4 characters a token)."""
        if self.tokenizer is not None:
            return len(self.encode(text))
        return math.ceil(len(text) / 4)

    def render_prompt(self, messages: Sequence[Mapping[str, Any]]) -> str:
        """The conversation in the model's chat template, ending with the assistant's turn."""
        tok = self.tokenizer
        template = self.chat_template or getattr(tok, "chat_template", None)
        if not template:
            msg = (
                f"{self.name!r} needs a chat template to render the prompt: pass tokenizer= (a tokenizer "
                "with a chat template), chat_template=, or api='chat' to let the server render it"
            )
            raise ValueError(msg)
        convo = [dict(m) for m in messages]
        if tok is not None:
            with self._tok_lock:
                return str(
                    tok.apply_chat_template(convo, chat_template=template, tokenize=False, add_generation_prompt=True)
                )
        from transformers.utils.chat_template_utils import render_jinja_template

        rendered = render_jinja_template([convo], chat_template=template, add_generation_prompt=True)[0]
        return str(rendered[0])

    # -- server ------------------------------------------------------------------------------
    def _http_timeout(self, deadline: float | None) -> httpx.Timeout:
        """Per-read and connect timeouts, shortened so that a wait never outlasts the deadline."""
        read, connect = self.timeout, self.connect_timeout
        if deadline is not None:
            left = max(0.05, deadline - time.monotonic() + 0.05)
            read, connect = min(read, left), min(connect, left)
        return httpx.Timeout(read, connect=connect)

    def _limits(self) -> httpx.Limits:
        n = self.max_concurrency or 256
        return httpx.Limits(max_connections=n, max_keepalive_connections=n)

    @property
    def client(self) -> httpx.Client:
        """The shared synchronous HTTP client (thread-safe, pooled)."""
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(headers=self._headers, limits=self._limits(), timeout=self.timeout)
            return self._client

    def aclient(self) -> httpx.AsyncClient:
        """The asynchronous HTTP client of the running event loop."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if loop not in self._aclients:
                self._aclients[loop] = httpx.AsyncClient(
                    headers=self._headers, limits=self._limits(), timeout=self.timeout
                )
            return self._aclients[loop]

    def _aslot(self) -> asyncio.Semaphore | None:
        if not self.max_concurrency:
            return None
        loop = asyncio.get_running_loop()
        with self._lock:
            if loop not in self._aslots:
                self._aslots[loop] = asyncio.Semaphore(self.max_concurrency)
            return self._aslots[loop]

    def _apply_models(self, payload: Mapping[str, Any]) -> None:
        entries = [m for m in payload.get("data", []) if isinstance(m, Mapping)]
        if self._model is None:
            ids = [str(m.get("id")) for m in entries]
            if len(ids) != 1:
                msg = f"{self.url} serves {len(ids)} models {ids}: pass model= (or set {MODEL_ENV})"
                raise ValueError(msg)
            self._model = ids[0]
        if self.engine == "auto":
            owner = next((str(m.get("owned_by", "")) for m in entries if m.get("id") == self._model), "")
            self.engine = owner if owner in ("vllm", "sglang") else "generic"  # type: ignore[assignment]
        self._resolved = True

    def resolve(self) -> None:
        """Ask ``/v1/models`` for what was not given: the model's name and the engine."""
        if self._resolved:
            return
        resp = self.client.get(f"{self.base_url}/models", timeout=self._http_timeout(None))
        resp.raise_for_status()
        self._apply_models(resp.json())

    async def aresolve(self) -> None:
        """:meth:`resolve` without blocking the event loop."""
        if self._resolved:
            return
        resp = await self.aclient().get(f"{self.base_url}/models", timeout=self._http_timeout(None))
        resp.raise_for_status()
        self._apply_models(resp.json())

    def models(self) -> list[str]:
        """Names of the models the server lists."""
        resp = self.client.get(f"{self.base_url}/models", timeout=self._http_timeout(None))
        resp.raise_for_status()
        return [str(m.get("id")) for m in resp.json().get("data", [])]

    def close(self) -> None:
        """Close the synchronous client (the async ones close with :meth:`aclose`)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close this event loop's async client and the synchronous one."""
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._aclients.pop(loop, None)
        if client is not None:
            await client.aclose()
        self.close()

    def __enter__(self) -> RemoteGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sessions ----------------------------------------------------------------------------
    def start(self, messages: Sequence[Mapping[str, Any]]) -> RemoteSession:
        """Open a session: render (and count) the prompt; nothing is sent yet."""
        return RemoteSession(self, messages)


class RemoteSession:
    """One run's view of a served model: the rendered prompt and the run's trace ids.

    Thread-safe: calls of one session may come from any thread (or task, with
    :meth:`agenerate`); the server holds no per-run state, so :meth:`close` frees nothing there.
    """

    def __init__(self, gen: RemoteGenerator, messages: Sequence[Mapping[str, Any]]) -> None:
        """Render the prompt with the model's chat template (``api="completions"``)."""
        self._gen = gen
        self.messages = [dict(m) for m in messages]
        self.prompt_text = gen.render_prompt(self.messages) if gen.api == "completions" else None
        self._prompt_ids: list[int] | None = None
        self._prompt_tokens = 0
        rendered = self.prompt_text
        if rendered is None and gen.tokenizer is not None:
            with contextlib.suppress(ValueError):  # api="chat" with a tokenizer that has no template
                rendered = gen.render_prompt(self.messages)
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

    def _plan(self, trace: Sequence[Span], request: GenerateRequest) -> Call:
        with self._lock:
            self._calls += 1
            index = self._calls
        return Call(self, trace, request, index)

    def generate(self, trace: Sequence[Span], request: GenerateRequest) -> Segment:
        """Continue ``trace`` on the server; see the module doc for what is sent and checked."""
        call = self._plan(trace, request)
        if call.finish is None:
            call.run_sync()
        return call.segment()

    async def agenerate(self, trace: Sequence[Span], request: GenerateRequest) -> Segment:
        """:meth:`generate` on the event loop (``on_text`` is called from the loop)."""
        call = self._plan(trace, request)
        if call.finish is None:
            await call.run_async()
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
