"""The settings of a served model: where it is, what a call sends, how faults are retried (checked once)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "API_KEY_ENV",
    "BASE_URL_ENV",
    "MODEL_ENV",
    "Api",
    "Engine",
    "PromptFormat",
    "RemoteOptions",
    "normalize_base_url",
    "strip_userinfo",
]

BASE_URL_ENV = ("SPEC_GRAPH_BASE_URL", "OPENAI_BASE_URL")
"""Environment variables read, in order, when no ``base_url`` is given."""
API_KEY_ENV = ("SPEC_GRAPH_API_KEY", "OPENAI_API_KEY")
"""Environment variables read, in order, when no ``api_key`` is given."""
MODEL_ENV = "SPEC_GRAPH_MODEL"
"""Environment variable naming the served model when no ``model`` is given."""

Engine = Literal["auto", "generic", "vllm", "sglang"]
Api = Literal["completions", "chat"]
PromptFormat = Literal["text", "ids"]


def from_env(names: tuple[str, ...]) -> str | None:
    """The first of ``names`` set (non-empty) in the environment."""
    return next((os.environ[k] for k in names if os.environ.get(k)), None)


def normalize_base_url(url: str) -> str:
    """``http://host:8000`` -> ``http://host:8000/v1``; a URL with a path is kept (minus a final ``/``)."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    if urlsplit(url).path in ("", "/"):
        url += "/v1"
    return url


def strip_userinfo(url: str) -> str:
    """``url`` without ``user:password@`` (for messages)."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def _one_of(what: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        names = ", ".join(repr(a) for a in allowed[:-1]) + f" or {allowed[-1]!r}"
        msg = f"{what} must be {names}, got {value!r}"
        raise ValueError(msg)


@dataclass(frozen=True)
class RemoteOptions:
    """What every call of one :class:`~spec_graph.generators.remote.RemoteGenerator` does.

    The fields are the generator's arguments of the same names (its docstring says what each
    means); they are checked here, once.
    """

    api: Api = "completions"
    prompt_format: PromptFormat = "text"
    engine: Engine = "auto"
    stream: bool = True
    logprobs: bool = False
    timeout: float = 120.0
    connect_timeout: float = 10.0
    retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 8.0
    max_concurrency: int | None = None
    context_window: int | None = None
    extra_body: Mapping[str, Any] = field(default_factory=dict)
    name: str | None = None

    def __post_init__(self) -> None:
        """Raise ``ValueError`` naming the first bad setting and what it may be."""
        _one_of("api", self.api, ("completions", "chat"))
        _one_of("prompt_format", self.prompt_format, ("text", "ids"))
        _one_of("engine", self.engine, ("auto", "generic", "vllm", "sglang"))
        if self.retries < 0 or self.timeout <= 0 or self.connect_timeout <= 0 or self.backoff < 0:
            msg = "retries and backoff must be >= 0, timeouts > 0"
            raise ValueError(msg)
        if self.max_concurrency is not None and self.max_concurrency < 1:
            msg = f"max_concurrency must be >= 1, got {self.max_concurrency}"
            raise ValueError(msg)
        object.__setattr__(self, "extra_body", dict(self.extra_body))

    def backoff_delay(self, failures: int, jitter: float) -> float:
        """Seconds to wait after the ``failures``-th failure: doubling from ``backoff``, capped, times ``jitter``."""
        return min(self.max_backoff, self.backoff * 2.0 ** (failures - 1)) * jitter
