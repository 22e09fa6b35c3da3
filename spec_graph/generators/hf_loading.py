"""Loading local transformers models once per process (embedded name, folder or hub id).

Loaded ``(model, tokenizer)`` pairs are cached by path, device, dtype and quantization; each
loaded model has one lock, held while it runs.
"""

from __future__ import annotations

import json
import os
import threading
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from spec_graph.generators import precision

__all__ = ["default_device", "default_dtype", "load_pretrained", "model_lock"]

_LOADED: dict[tuple[str, str, str, str, bool, str], tuple[Any, PreTrainedTokenizerBase]] = {}
_LOAD_LOCK = threading.Lock()
_SET_BY_ARGUMENTS = frozenset({"dtype", "torch_dtype", "device_map", "trust_remote_code", "use_safetensors"})
_MODEL_LOCKS: weakref.WeakKeyDictionary[Any, threading.RLock] = weakref.WeakKeyDictionary()


def default_device() -> str:
    """``"cuda"`` when a GPU is visible, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype(device: str) -> torch.dtype:
    """What ``dtype="auto"`` means on ``device`` (see :func:`~spec_graph.generators.precision.resolve_dtype`)."""
    return precision.resolve_dtype("auto", device)


def _check_local_path(model: str) -> None:
    """Raise ``FileNotFoundError`` for a string that names a local path that does not exist."""
    from spec_graph import models

    if models.is_embedded(model):
        return
    looks_local = model.startswith((".", "/", "~")) or os.sep in model.rstrip(os.sep).split(os.sep, 1)[-1]
    if (looks_local or Path(model).suffix in {".gguf", ".safetensors"}) and not Path(model).expanduser().is_dir():
        known = sorted(models.EMBEDDED_MODELS)
        msg = f"model path {model!r} does not exist (give a folder made by save_pretrained, or one of {known})"
        raise FileNotFoundError(msg)


def _resolve_path(model: str) -> str:
    from spec_graph import models  # local import: models pulls in downloading helpers

    if models.is_embedded(model):
        return str(models.ensure_model(model))
    _check_local_path(model)
    return str(Path(model).expanduser()) if Path(model).expanduser().is_dir() else model  # else a hub id


def load_pretrained(
    model: str,
    *,
    device: str | None = None,
    dtype: torch.dtype | str | None = None,
    quantization: str | None = None,
    trust_remote_code: bool = False,
    model_kwargs: Mapping[str, Any] | None = None,
) -> tuple[Any, PreTrainedTokenizerBase]:
    """Load (once per process) a causal LM and its tokenizer from an embedded name, path or hub id.

    Loaded pairs are shared: a second generator on the same model, device, dtype and
    quantization reuses them.

    Args:
        model: an embedded model name, a local folder or a hub id.
        device: ``"cuda"``, ``"cpu"``, ... (default: CUDA when present).
        dtype: ``auto`` (default), ``float32``, ``bfloat16``, ``float16`` or a torch dtype; see
            :mod:`spec_graph.generators.precision`.
        quantization: ``none`` (default) or ``int8``.
        trust_remote_code: passed to transformers.
        model_kwargs: more keyword arguments for ``AutoModelForCausalLM.from_pretrained`` (e.g.
            ``{"attn_implementation": "sdpa"}``); not those set by the arguments above.

    Raises:
        ValueError: an unknown dtype or quantization, or a ``model_kwargs`` key that an argument
            sets (before anything loads).
    """
    extra = dict(model_kwargs or {})
    if taken := sorted(set(extra) & _SET_BY_ARGUMENTS):
        msg = f"model_kwargs may not set {', '.join(taken)}: use the dtype, device, quantization arguments"
        raise ValueError(msg)
    device = device or default_device()
    torch_dtype = precision.resolve_dtype(dtype, device)
    quant = precision.check_quantization(quantization)
    path = _resolve_path(model)
    key = (path, device, str(torch_dtype), quant, trust_remote_code, json.dumps(extra, sort_keys=True, default=repr))
    with _LOAD_LOCK:
        if key not in _LOADED:
            tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
            # safetensors only: never unpickle weights fetched at run time.
            with precision.quiet_torchao():  # transformers imports torchao when it is installed
                lm: Any = AutoModelForCausalLM.from_pretrained(
                    path, dtype=torch_dtype, trust_remote_code=trust_remote_code, use_safetensors=True, **extra
                )
            lm.to(device).eval()
            precision.quantize(lm, quant, device)
            _LOADED[key] = (lm, tok)
        return _LOADED[key]


def model_lock(model: Any) -> threading.RLock:
    """The lock of a loaded model (one per model object)."""
    with _LOAD_LOCK:
        return _MODEL_LOCKS.setdefault(model, threading.RLock())
