"""Any model a user hands us -> a :class:`~spec_graph.generators.base.Generator`.

Names and paths load once per process (a module-level cache shared by the chat model and the
studio); loaded objects (a ``(model, tokenizer)`` pair, pipelines, LangChain's
Hugging Face wrappers) are reused as they are, without a second load or a copy.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from spec_graph.generators.base import Generator

__all__ = ["resolve_generator", "spec_name"]

_GENERATORS: dict[tuple[Any, ...], Generator] = {}
_GENERATORS_LOCK = threading.Lock()


def _is_generator(obj: Any) -> bool:
    """A :class:`Generator`, checked on the type so no lazy property (model loading) runs."""
    cls = type(obj)
    return callable(getattr(cls, "start", None)) and callable(getattr(cls, "count_tokens", None))


def _hf_generator(model: Any, tokenizer: Any, name: str | None) -> Generator:
    from spec_graph.generators.hf import HFGenerator  # imports torch: only when needed

    return HFGenerator(model, tokenizer, name=name)


def resolve_generator(
    spec: Any, *, device: str | None = None, dtype: str | None = None, quantization: str | None = None
) -> Generator:
    """A :class:`Generator` from anything :class:`SpeculativeThinkingChatModel` accepts as a model.

    Args:
        spec: an embedded model name, a local folder or hub id (shared through a module-level
            cache, weights load on first use); a ``Generator``; a ``(model, tokenizer)`` pair; a
            ``langchain_huggingface.HuggingFacePipeline``, a ``ChatHuggingFace`` on one, or a
            transformers text-generation ``Pipeline`` (their loaded model and tokenizer are
            reused as they are: no second load, no copy).
        device: device for a model given by name (default: CUDA when present).
        dtype: ``auto`` (default), ``float32``, ``bfloat16`` or ``float16``, for a model given by
            name (see :mod:`spec_graph.generators.precision`).
        quantization: ``none`` (default) or ``int8``, for a model given by name.

    Raises:
        ValueError: an unknown dtype or quantization (checked whatever ``spec`` is).
        TypeError: an object that cannot serve as a model.
    """
    from spec_graph.generators.precision import check_dtype, check_quantization

    dtype_name, quant = check_dtype(dtype), check_quantization(quantization)
    if isinstance(spec, str | Path):
        key = ("hf", str(spec), device, dtype_name, quant)
        with _GENERATORS_LOCK:
            if key not in _GENERATORS:
                from spec_graph.generators.hf import HFGenerator

                _GENERATORS[key] = HFGenerator(str(spec), device=device, dtype=dtype_name, quantization=quant)
            return _GENERATORS[key]
    if _is_generator(spec):
        return spec  # type: ignore[no-any-return]
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
    msg = (
        f"cannot use a {type(spec).__name__} as a model: give a model name or path, a Generator, "
        "a (model, tokenizer) pair, a HuggingFacePipeline or a ChatHuggingFace"
    )
    raise TypeError(msg)


def spec_name(spec: Any) -> str:
    """A display name for a model spec, without loading anything."""
    if isinstance(spec, str | Path):
        return str(spec)
    if _is_generator(spec):
        return str(getattr(spec, "name", type(spec).__name__))
    if isinstance(spec, tuple) and len(spec) == 2:
        return str(getattr(spec[0], "name_or_path", "") or type(spec[0]).__name__)
    holder = getattr(spec, "llm", spec)
    for attr in ("model_id", "name_or_path"):
        if isinstance(getattr(holder, attr, None), str) and getattr(holder, attr):
            return str(getattr(holder, attr))
    model = getattr(getattr(holder, "pipeline", holder), "model", None)
    return str(getattr(model, "name_or_path", "") or type(spec).__name__)
