"""The one way from anything the package accepts as a model to a :class:`~spec_graph.generators.base.Generator`.

Names, paths and server URLs make a generator once per process (a module-level cache shared by
the thinker, the chat model, Studio and the evaluation); loaded objects (a ``(model, tokenizer)``
pair, pipelines, LangChain's Hugging Face wrappers) are reused as they are, without a second
load or a copy; a :class:`Generator` passes through untouched (not even a lazy one is loaded).
"""

from __future__ import annotations

import inspect
import json
import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from spec_graph.generators.base import Generator

__all__ = ["ACCEPTED", "is_generator", "resolve_generator", "spec_name"]

ACCEPTED = (
    "an embedded model name, a local folder, a hub id (owner/name), a server URL (http://host:port/v1, "
    "#model to name the served model), a Generator, a (model, tokenizer) pair, a HuggingFacePipeline, "
    "a ChatHuggingFace or a transformers pipeline"
)
"""What :func:`resolve_generator` accepts, for messages."""

_GENERATORS: dict[tuple[Any, ...], Generator] = {}
_GENERATORS_LOCK = threading.Lock()
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_PROTOCOL = ("name", "tokenizer_key", "start", "count_tokens")


def is_generator(obj: object) -> bool:
    """Whether ``obj`` has the :class:`Generator` protocol's members, looked up statically.

    Reading a property such as ``tokenizer_key`` would load the weights of a lazy generator;
    :func:`inspect.getattr_static` finds it without running it.
    """
    return not isinstance(obj, type) and all(inspect.getattr_static(obj, a, None) is not None for a in _PROTOCOL)


def _is_url(name: str) -> bool:
    return name.startswith(("http://", "https://"))


def _looks_local(name: str) -> bool:
    """A string written as a path (which, if it does not exist, is an error, not a hub id)."""
    path = name.replace(os.sep, "/")
    return path.startswith((".", "/", "~")) or path.count("/") > 1 or Path(name).suffix in {".gguf", ".safetensors"}


def _by_name(name: str, device: str | None, dtype: str, quant: str, extra: dict[str, Any]) -> Generator:
    """A generator for a string (made once per process and setting)."""
    from spec_graph import models

    frozen = json.dumps(extra, sort_keys=True, default=repr)
    if _is_url(name):
        key: tuple[Any, ...] = ("remote", name, frozen)
    elif models.is_embedded(name) or Path(name).expanduser().is_dir() or _looks_local(name) or _HUB_ID.fullmatch(name):
        key = ("hf", name, device, dtype, quant, frozen)
    else:
        embedded = ", ".join(sorted(models.EMBEDDED_MODELS))
        msg = (
            f"unknown model {name!r}: give an embedded model name ({embedded}), a local folder, "
            "a hub id (owner/name) or a server URL (http://host:port/v1)"
        )
        raise ValueError(msg)
    with _GENERATORS_LOCK:
        if key not in _GENERATORS:
            make = _remote(name, extra) if key[0] == "remote" else _hf_by_name(name, device, dtype, quant, extra)
            _GENERATORS[key] = make
        return _GENERATORS[key]


def _remote(url: str, extra_body: dict[str, Any]) -> Generator:
    from spec_graph.generators.remote import RemoteGenerator

    base_url, _, model = url.partition("#")
    return RemoteGenerator(model or None, base_url=base_url, extra_body=extra_body)


def _hf_by_name(name: str, device: str | None, dtype: str, quant: str, extra: dict[str, Any]) -> Generator:
    from spec_graph.generators.hf import HFGenerator  # imports torch: only when needed

    return HFGenerator(name, device=device, dtype=dtype, quantization=quant, model_kwargs=extra)


def _hf_generator(model: Any, tokenizer: Any, name: str | None) -> Generator:
    from spec_graph.generators.hf import HFGenerator  # imports torch: only when needed

    return HFGenerator(model, tokenizer, name=name)


def resolve_generator(
    spec: Any,
    *,
    device: str | None = None,
    dtype: str | None = None,
    quantization: str | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> Generator:
    """A :class:`Generator` from anything the package accepts as a model.

    Args:
        spec: an embedded model name, a local folder or a hub id (``owner/name``; weights load on
            first use); a server URL (``http://host:8000/v1``, a :class:`RemoteGenerator`; add
            ``#name`` to pick the served model, else ``$SPEC_GRAPH_MODEL`` or the one it serves);
            a ``Generator`` (returned as it is); a ``(model, tokenizer)`` pair; a
            ``langchain_huggingface.HuggingFacePipeline``, a ``ChatHuggingFace`` on one, or a
            transformers text-generation ``Pipeline`` (their loaded model and tokenizer are
            reused as they are: no second load, no copy).
        device: device for a model given by name (default: CUDA when present).
        dtype: ``auto`` (default), ``float32``, ``bfloat16`` or ``float16``, for a model given by
            name (see :mod:`spec_graph.generators.precision`).
        quantization: ``none`` (default) or ``int8``, for a model given by name.
        model_kwargs: for a model given by name, folder or hub id, more keyword arguments for
            ``from_pretrained`` (e.g. ``{"attn_implementation": "sdpa"}``); for a server URL,
            JSON fields sent in every request (``RemoteGenerator(extra_body=...)``).

    Raises:
        ValueError: an unknown dtype or quantization (checked whatever ``spec`` is), or a name
            that is none of the above (the message lists the embedded models).
        FileNotFoundError: a path that does not exist.
        TypeError: an object that cannot serve as a model (the message says what can).
    """
    from spec_graph.generators.precision import check_dtype, check_quantization

    dtype_name, quant = check_dtype(dtype), check_quantization(quantization)
    if isinstance(spec, str | Path):
        return _by_name(str(spec), device, dtype_name, quant, dict(model_kwargs or {}))
    if model_kwargs:
        msg = f"model_kwargs apply to models given by name or URL, not to a {type(spec).__name__}"
        raise ValueError(msg)
    if is_generator(spec):
        return cast(Generator, spec)
    if isinstance(spec, tuple) and len(spec) == 2:
        model, tokenizer = spec
        return _hf_generator(model, tokenizer, getattr(model, "name_or_path", None) or None)
    llm = getattr(spec, "llm", None)  # ChatHuggingFace(llm=HuggingFacePipeline(...))
    if llm is not None:
        pipe = getattr(llm, "pipeline", None)
        if pipe is None:
            msg = (
                f"{type(spec).__name__} wraps a {type(llm).__name__}, not a local HuggingFacePipeline; "
                "only local pipelines can be reused (endpoints cannot do speculative thinking)"
            )
            raise TypeError(msg)
        tokenizer = getattr(spec, "tokenizer", None) or pipe.tokenizer
        return _hf_generator(pipe.model, tokenizer, getattr(llm, "model_id", None))
    pipe = getattr(spec, "pipeline", None)  # HuggingFacePipeline
    if pipe is not None and hasattr(pipe, "model"):
        return _hf_generator(pipe.model, pipe.tokenizer, getattr(spec, "model_id", None))
    if type(spec).__module__.startswith("transformers.pipelines") and hasattr(spec, "model"):
        return _hf_generator(spec.model, spec.tokenizer, getattr(spec.model, "name_or_path", None))
    if hasattr(spec, "generate") and hasattr(spec, "config"):
        msg = "a loaded transformers model needs its tokenizer: pass (model, tokenizer)"
        raise TypeError(msg)
    msg = f"cannot use a {type(spec).__name__} as a model: give {ACCEPTED}"
    raise TypeError(msg)


def spec_name(spec: Any) -> str:
    """A display name for a model spec, without loading anything (a URL without its credentials)."""
    if isinstance(spec, str | Path):
        if _is_url(str(spec)):
            from spec_graph.generators.remote_options import strip_userinfo

            return strip_userinfo(str(spec))
        return str(spec)
    if is_generator(spec):
        return str(getattr(spec, "name", type(spec).__name__))
    if isinstance(spec, tuple) and len(spec) == 2:
        return str(getattr(spec[0], "name_or_path", "") or type(spec[0]).__name__)
    holder = getattr(spec, "llm", spec)
    for attr in ("model_id", "name_or_path"):
        if isinstance(getattr(holder, attr, None), str) and getattr(holder, attr):
            return str(getattr(holder, attr))
    model = getattr(getattr(holder, "pipeline", holder), "model", None)
    return str(getattr(model, "name_or_path", "") or type(spec).__name__)
