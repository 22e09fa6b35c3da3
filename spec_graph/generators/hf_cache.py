"""The only module that touches transformers' KV-cache API.

transformers 5 changed the cache API under our feet (``past_key_values`` -> ``cache``,
``crop`` only takes a negative count), so every call lives here, behind a few functions.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch
from transformers import DynamicCache


def new_cache() -> DynamicCache:
    """An empty cache of full-attention layers, created lazily by the first forward.

    Without a model config every layer is a plain ``DynamicLayer``, which can always be
    cropped; sliding-window models still mask correctly because the mask is built from the
    model config, at the price of keeping the whole window history.
    """
    return DynamicCache()


def cache_length(cache: DynamicCache) -> int:
    """Tokens held in the cache."""
    return int(cache.get_seq_length())


def crop(cache: DynamicCache, length: int) -> None:
    """Keep the first ``length`` tokens of the cache (transformers 5: negative count)."""
    extra = cache_length(cache) - length
    if extra < 0:
        msg = f"cannot crop a cache of {cache_length(cache)} tokens to {length}"
        raise ValueError(msg)
    if extra:
        cache.crop(-extra)


@functools.cache
def _cache_kwarg(model_class: Any) -> str:
    """``cache`` in recent transformers 5 releases, ``past_key_values`` before."""
    params = inspect.signature(model_class.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def forward_logits(model: Any, input_ids: torch.Tensor, cache: DynamicCache | None, keep: int = 1) -> torch.Tensor:
    """Run the model on ``input_ids`` (shape ``(1, n)``) and return the last ``keep`` positions' logits.

    With a cache the new keys/values are appended to it; ``logits_to_keep`` skips the
    vocabulary projection for all other positions (a large saving when prefilling).
    Returns float32 logits of shape ``(keep, vocab)``: row ``i`` predicts the token after
    position ``n - keep + i``.
    """
    if cache is None:
        out = model(input_ids=input_ids, use_cache=False, logits_to_keep=keep)
    else:
        model_class: Any = type(model)  # a class is hashable: the lookup is cached per model class
        out = model(input_ids=input_ids, use_cache=True, logits_to_keep=keep, **{_cache_kwarg(model_class): cache})
    logits: torch.Tensor = out.logits[0, -keep:, :].float()
    return logits


def forward_last_logits(model: Any, input_ids: torch.Tensor, cache: DynamicCache | None) -> torch.Tensor:
    """:func:`forward_logits` of the last position only, shape ``(1, vocab)``."""
    return forward_logits(model, input_ids, cache, 1)
