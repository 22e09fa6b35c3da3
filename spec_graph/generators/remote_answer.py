"""Reading one payload of an OpenAI-compatible answer: a choice's text, its log-probabilities, the usage."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["choice_text", "stripped_stop", "token_logprobs", "usage_counts"]


def choice_text(choice: Mapping[str, Any], chat: bool) -> str:
    """The text a choice adds (a chat delta or message, or a completion's text)."""
    if chat:
        part = choice.get("delta") or choice.get("message") or {}
        return str(part.get("content") or "")
    return str(choice.get("text") or "")


def stripped_stop(choice: Mapping[str, Any]) -> str | None:
    """The stop string a final choice names (vLLM's ``stop_reason``, SGLang's ``matched_stop``)."""
    matched = choice.get("stop_reason", choice.get("matched_stop"))
    return matched if isinstance(matched, str) and matched else None


def token_logprobs(lp: Any) -> list[tuple[float, float]]:
    """``(log p, top-1 probability)`` of each token a choice's ``logprobs`` covers (either format).

    The top token is at least as likely as the chosen one (servers may omit ``top_logprobs``).
    """
    if not isinstance(lp, Mapping):
        return []
    if isinstance(lp.get("token_logprobs"), list):  # completions
        chosen = [float(x) for x in lp["token_logprobs"] if x is not None]
        tops: list[Any] = lp["top_logprobs"] if isinstance(lp.get("top_logprobs"), list) else []
        best: list[float | None] = [float(max(t.values())) if isinstance(t, Mapping) and t else None for t in tops]
    elif isinstance(lp.get("content"), list):  # chat
        items = [x for x in lp["content"] if isinstance(x, Mapping)]
        chosen = [float(x["logprob"]) for x in items]
        best = [max((float(t["logprob"]) for t in x.get("top_logprobs") or []), default=None) for x in items]
    else:
        return []
    out = []
    for i, value in enumerate(chosen):
        top = best[i] if i < len(best) else None
        out.append((value, math.exp(max(top if top is not None else value, value))))
    return out


def usage_counts(usage: Mapping[str, Any]) -> tuple[int | None, int | None, int]:
    """``(completion tokens, prompt tokens, prompt tokens run)``: the last without the cached ones."""
    completion = usage.get("completion_tokens")
    prompt = usage.get("prompt_tokens")
    if not isinstance(prompt, int):
        return (completion if isinstance(completion, int) else None), None, 0
    details = usage.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens") if isinstance(details, Mapping) else None
    return (completion if isinstance(completion, int) else None), prompt, prompt - (cached or 0)
