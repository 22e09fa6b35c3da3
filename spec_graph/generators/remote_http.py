"""The HTTP side of a served model: the pooled client, the concurrency cap, ``/v1/models``, one request.

An answer is read as JSON payloads; a streamed one's server-sent events are parsed by ``httpx-sse``.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import httpx
from httpx_sse import EventSource, SSEError, connect_sse

from spec_graph.generators.remote_errors import RetryableAttempt, check_status
from spec_graph.generators.remote_options import MODEL_ENV, Engine, RemoteOptions, strip_userinfo

__all__ = ["Server"]

Payload = Mapping[str, Any]


class Server:
    """An OpenAI-compatible server and the model asked for there (both settled on first use).

    Thread-safe: one client (a connection pool) serves every thread; at most
    ``options.max_concurrency`` requests are in flight at once.
    """

    def __init__(self, base_url: str, options: RemoteOptions, *, model: str | None, headers: Mapping[str, str]) -> None:
        """``base_url``: normalized (``.../v1``); ``headers``: every request's (credentials included)."""
        self.base_url = base_url
        self.url = strip_userinfo(base_url)
        """The base URL without credentials (for messages)."""
        self.options = options
        self.model_name = model
        """The served model's name: as given, else asked from ``/v1/models`` by :meth:`resolve`."""
        self.engine: Engine = options.engine
        self._headers = dict(headers)
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(options.max_concurrency) if options.max_concurrency else None
        self._client: httpx.Client | None = None
        self._resolved = options.engine != "auto" and model is not None

    @property
    def label(self) -> str:
        """The model's name when known, else the URL (for messages; asks nothing)."""
        return self.model_name or self.url

    # -- the client --------------------------------------------------------------------------
    @property
    def client(self) -> httpx.Client:
        """The shared synchronous HTTP client (thread-safe, pooled)."""
        with self._lock:
            if self._client is None:
                n = self.options.max_concurrency or 256
                limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
                self._client = httpx.Client(headers=self._headers, limits=limits, timeout=self.options.timeout)
            return self._client

    def timeout(self, deadline: float | None) -> httpx.Timeout:
        """Per-read and connect timeouts, shortened so that a wait never outlasts the deadline."""
        read, connect = self.options.timeout, self.options.connect_timeout
        if deadline is not None:
            left = max(0.05, deadline - time.monotonic() + 0.05)
            read, connect = min(read, left), min(connect, left)
        return httpx.Timeout(read, connect=connect)

    def slot(self) -> contextlib.AbstractContextManager[Any]:
        """Held while a request is in flight (the concurrency cap)."""
        return self._slots or contextlib.nullcontext()

    def close(self) -> None:
        """Close the client (a later request opens a new one)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- what the server serves --------------------------------------------------------------
    def models(self) -> list[Payload]:
        """The entries of ``/v1/models``."""
        resp = self.client.get(f"{self.base_url}/models", timeout=self.timeout(None))
        resp.raise_for_status()
        return [m for m in resp.json().get("data", []) if isinstance(m, Mapping)]

    def resolve(self) -> None:
        """Ask ``/v1/models`` for what was not given: the model's name and the engine."""
        if self._resolved:
            return
        entries = self.models()
        if self.model_name is None:
            ids = [str(m.get("id")) for m in entries]
            if len(ids) != 1:
                msg = f"{self.url} serves {len(ids)} models {ids}: pass model= (or set {MODEL_ENV})"
                raise ValueError(msg)
            self.model_name = ids[0]
        if self.engine == "auto":
            owner = next((str(m.get("owned_by", "")) for m in entries if m.get("id") == self.model_name), "")
            self.engine = "vllm" if owner == "vllm" else "sglang" if owner == "sglang" else "generic"
        self._resolved = True

    # -- one request -------------------------------------------------------------------------
    def post(self, endpoint: str, body: Payload, deadline: float | None, take: Callable[[Payload], bool]) -> None:
        """Send ``body`` and hand each JSON payload of the answer to ``take`` until it returns ``True``.

        A streamed answer gives one payload per server-sent event (up to ``[DONE]``), any other
        answer one payload. Raises :class:`~spec_graph.generators.remote_errors.RetryableAttempt`
        or ``FatalAttempt`` for an HTTP error status or an unreadable event, and ``httpx``'s
        errors for timeouts and broken connections.
        """
        timeout = self.timeout(deadline)
        with self.slot():
            if body.get("stream"):
                with connect_sse(self.client, "POST", endpoint, json=body, timeout=timeout) as source:
                    _check(source.response)
                    for payload in _events(source):
                        if take(payload):
                            return
                return
            with self.client.stream("POST", endpoint, json=body, timeout=timeout) as resp:
                _check(resp)
                take(json.loads(resp.read()))


def _check(resp: httpx.Response) -> None:
    if resp.status_code >= 400:
        resp.read()
        check_status(resp.status_code, resp.text)


def _events(source: EventSource) -> Iterator[Payload]:
    """The JSON payloads of a stream of server-sent events (a JSON answer counts as one)."""
    try:
        for event in source.iter_sse():
            if event.data == "[DONE]":
                return
            if event.data:
                yield _json(event.data)
    except SSEError:  # no event stream: a server that answered with one JSON document
        yield _json(source.response.read().decode(errors="replace"))


def _json(text: str) -> Payload:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        msg = f"the server sent an unreadable event: {text[:200]!r}"
        raise RetryableAttempt(msg) from exc
    if not isinstance(data, Mapping):
        msg = f"the server sent an unreadable event: {text[:200]!r}"
        raise RetryableAttempt(msg)
    return data
