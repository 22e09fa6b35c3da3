"""Per-token helpers of the local generator: incremental detokenization, sampling warpers, token statistics."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

__all__ = ["Detokenizer", "TokenStats", "Warpers"]


class Warpers:
    """A session's sampling: temperature, top-k and top-p warpers (built once per setting), its random generator."""

    def __init__(self) -> None:
        """No settings seen yet, no random generator."""
        self._procs: dict[tuple[float, float, int], LogitsProcessorList] = {}
        self._rng: torch.Generator | None = None

    def rng(self, seed: int | None, device: torch.device) -> torch.Generator:
        """The random generator, seeded with ``seed`` (or at random) on first use."""
        if self._rng is None:
            self._rng = torch.Generator(device=device)
            if seed is not None:
                self._rng.manual_seed(seed)
            else:
                self._rng.seed()
        return self._rng

    def probs(self, logits: torch.Tensor, temperature: float, top_p: float, top_k: int) -> torch.Tensor:
        """The sampling distribution of ``logits`` (shape ``(1, vocab)``)."""
        key = (temperature, top_p, top_k)
        if key not in self._procs:
            procs = LogitsProcessorList([TemperatureLogitsWarper(temperature)])
            if top_k > 0:
                procs.append(TopKLogitsWarper(top_k))
            if top_p < 1.0:
                procs.append(TopPLogitsWarper(top_p))
            self._procs[key] = procs
        return torch.softmax(self._procs[key](None, logits), dim=-1)  # type: ignore[arg-type]


class Detokenizer:
    """Incremental decoding that never splits a multi-byte character (as vLLM does it)."""

    def __init__(self, decode: Callable[[Sequence[int]], str], context: Sequence[int]) -> None:
        """Start after the last tokens of ``context`` (they settle how the first new token decodes)."""
        self._decode = decode
        self.ids = list(context[-4:])
        self._prefix, self._read = 0, len(self.ids)

    def push(self, token_id: int) -> str:
        """Add a token; the text it completes (``""`` while a character is incomplete)."""
        self.ids.append(token_id)
        before = self._decode(self.ids[self._prefix : self._read])
        after = self._decode(self.ids[self._prefix :])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self._prefix, self._read = self._read, len(self.ids)
            return after[len(before) :]
        return ""

    def flush(self) -> str:
        """The text still held back at the end."""
        before = self._decode(self.ids[self._prefix : self._read])
        after = self._decode(self.ids[self._prefix :])
        self._prefix = self._read = len(self.ids)
        return after[len(before) :]


class TokenStats:
    """Per-token statistics of the unwarped distribution (one log-softmax per token)."""

    def __init__(self) -> None:
        """Start with no tokens."""
        self.logprobs: list[float] = []
        self.top1: list[float] = []
        self.entropy: list[float] = []
        self._logp: torch.Tensor | None = None
        self._pending = (float("nan"), float("nan"))

    def measure(self, logits: torch.Tensor) -> tuple[float, float]:
        """Top-1 probability and entropy (nats) of the next-token distribution."""
        logp = torch.log_softmax(logits[-1].float(), dim=-1)
        self._logp = logp
        self._pending = (float(logp.max().exp()), float(-(logp.exp() * logp).nansum()))
        return self._pending

    def take(self, token: int) -> None:
        """Record the chosen token: its log-probability and its position's statistics."""
        assert self._logp is not None
        self.logprobs.append(float(self._logp[token]))
        self.top1.append(self._pending[0])
        self.entropy.append(self._pending[1])

    def unknown(self) -> None:
        """A replayed token: its distribution was not computed in this call."""
        self.logprobs.append(float("nan"))
        self.top1.append(float("nan"))
        self.entropy.append(float("nan"))
