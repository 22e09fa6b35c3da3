"""Draft-and-verify: the target writes its stretches with the small model drafting for it.

When the two models share a tokenizer, every stretch the target writes (the opening, an
intervention, a recap takeover) is written by speculative decoding: the small model drafts
``k`` tokens, the target scores them all in one forward pass, and the longest prefix the
target agrees with is kept, plus one token of the target's own. Under greedy decoding the
text is exactly the target's; under sampling the standard acceptance rule (accept a drafted
token ``x`` with probability ``min(1, p(x) / q(x))``, else sample from ``max(0, p - q)``)
keeps the target's distribution. Both models' KV caches are reused: the target's holds the
accepted tokens after verifying, the small model's already holds the accepted draft, so its
catch-up after the stretch is short. The draft length adapts: +2 after a fully accepted
draft, -1 after a rejection, and a draft ends early after a token the small model gives less
than ``min_confidence`` (0.4) probability (the heuristics of transformers' assisted generation).

Under a grammar (:attr:`GenerateRequest.grammar`) both models mask by it: the small model drafts
only tokens the grammar allows, and each row of the target's verifying logits is masked by the
grammar's state after the drafted tokens before it, so the kept text fits the grammar and keeps
the target's (masked) distribution.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

from spec_graph.generators.base import (
    Capabilities,
    DeclaresCapabilities,
    GenerateRequest,
    Segment,
    Span,
    capabilities_of,
)
from spec_graph.generators.writer import SegmentWriter

__all__ = ["DraftStats", "DraftingSession", "TokenLevelSession", "can_draft"]


@runtime_checkable
class TokenLevelSession(Protocol):
    """A session that can be driven one token at a time (local models; scripted ones in tests)."""

    @property
    def tokenizer_key(self) -> str:
        """Equal keys: token ids pass between models unchanged."""
        ...

    @property
    def lock(self) -> Any:
        """A lock held while the model runs."""
        ...

    @property
    def eos_token_ids(self) -> frozenset[int]:
        """End-of-turn ids."""
        ...

    def context_ids(self, trace: Sequence[Span]) -> list[int]:
        """The prompt and the trace in this model's tokens (a new list)."""
        ...

    def room(self, context: Sequence[int], wanted: int) -> int:
        """Tokens that may follow ``context`` (the context window's limit)."""
        ...

    def next_logits(self, ids: list[int], keep: int = 1) -> tuple[Any, int]:
        """Logits after each of the last ``keep`` tokens of ``ids`` and the tokens run to get them."""
        ...

    def select(self, logits: Any, req: GenerateRequest) -> int:
        """The next token from one row of logits, greedy or sampled."""
        ...

    def probs(self, logits: Any, req: GenerateRequest) -> Any:
        """The sampling distribution of one row of logits."""
        ...

    def rng(self, req: GenerateRequest, device: Any) -> Any:
        """The session's random generator."""
        ...

    def detokenizer(self, context: Sequence[int]) -> Any:
        """An incremental decoder (``push(id) -> str``, ``flush() -> str``)."""
        ...


def can_draft(target: object, drafter: object) -> bool:
    """Whether ``drafter`` can draft for ``target``: both token-level, same tokenizer."""
    return (
        isinstance(target, TokenLevelSession)
        and isinstance(drafter, TokenLevelSession)
        and capabilities_of(target).drafting
        and capabilities_of(drafter).drafting
        and target.tokenizer_key == drafter.tokenizer_key
    )


@dataclass
class DraftStats:
    """What drafting did over a run."""

    rounds: int = 0
    """Target forward passes that verified a draft (or wrote alone when no draft fitted)."""
    drafted: int = 0
    """Tokens the small model proposed."""
    accepted: int = 0
    """Proposed tokens the target kept."""

    @property
    def acceptance(self) -> float:
        """Share of drafted tokens that were kept."""
        return self.accepted / self.drafted if self.drafted else 0.0


class DraftingSession(DeclaresCapabilities):
    """The target's session, writing by draft-and-verify with the small model's session.

    It stands in for the target's session in a run; calls that need per-token statistics,
    a token-level stop or a replayed prefix go to the target's own ``generate``.

    Args:
        target: the target's session.
        drafter: the small model's session (same tokenizer).
        draft_tokens: the first draft length.
        max_draft_tokens: the longest draft.
    """

    def __init__(
        self,
        target: Any,
        drafter: Any,
        *,
        draft_tokens: int = 4,
        max_draft_tokens: int = 16,
        min_confidence: float = 0.4,
    ) -> None:
        """Pair the two sessions."""
        if not can_draft(target, drafter):
            msg = "draft-and-verify needs two local sessions with the same tokenizer"
            raise ValueError(msg)
        self.target, self.drafter = target, drafter
        self.k, self.max_k = draft_tokens, max_draft_tokens
        self.min_confidence = min_confidence
        self.stats = DraftStats()

    # -- the session protocol: the target's, except for generate ------------------------------
    @property
    def prompt_tokens(self) -> int:
        """The target's prompt size."""
        return int(self.target.prompt_tokens)

    @property
    def tokenizer_key(self) -> str:
        """The target's tokenizer key."""
        return str(self.target.tokenizer_key)

    @property
    def capabilities(self) -> Capabilities:
        """The target's, except drafting: a drafting session does not draft for another."""
        return replace(capabilities_of(self.target), drafting=False)

    def close(self) -> None:
        """Close the target's session (the small model's is closed by its owner)."""
        self.target.close()

    def generate(self, trace: Sequence[Span], request: GenerateRequest) -> Segment:
        """Write the target's stretch by draft-and-verify (see the module docstring)."""
        constrained = capabilities_of(self.target).grammar and capabilities_of(self.drafter).grammar
        if (
            request.token_stop is not None
            or request.logprobs
            or request.prefix_ids
            or (request.grammar is not None and not constrained)
        ):
            return self.target.generate(trace, request)  # type: ignore[no-any-return]
        import torch  # imported here: the graph itself runs without torch

        t0 = time.perf_counter()
        with self.target.lock, self.drafter.lock, torch.inference_mode():
            if (stopped := request.interrupted()) is not None:
                return Segment("", [], stopped, elapsed=time.perf_counter() - t0)
            seg = self._write(trace, request)
        seg.elapsed = time.perf_counter() - t0
        return seg

    def _write(self, trace: Sequence[Span], req: GenerateRequest) -> Segment:
        target, drafter = self.target, self.drafter
        context, draft_context = target.context_ids(trace), drafter.context_ids(trace)
        max_tokens = target.room(context, req.max_tokens)
        if max_tokens <= 0:
            return Segment("", [], "context")
        detok = target.detokenizer(context)
        writer = SegmentWriter(req, trace, target.eos_token_ids, detok.push, max_tokens)
        before = (self.stats.drafted, self.stats.accepted)
        prefill, done = -1, False
        while not done:
            out = writer.ids
            draft, q_rows = self._draft(draft_context + out, min(self.k, writer.room - 1), req)
            logits, ran = target.next_logits(context + out + draft, len(draft) + 1)
            if req.grammar is not None:  # row i: what the grammar allows after the first i drafted tokens
                grammar = target.grammar_state(req, context + out, logits.shape[-1])
                for i, token in enumerate([*draft, None]):
                    grammar.mask(logits[i : i + 1])
                    if token is None or not grammar.accept(token):
                        break
            if prefill < 0:
                prefill = ran - len(draft)  # catching up on the trace, not writing
            kept = self._verify(draft, q_rows, logits, req)
            self._adapt(len(draft), len(kept) - 1)
            for token in kept:
                if writer.push(token):
                    done = True
                    break
        writer.flush(detok.flush())
        seg = writer.segment(prefill=max(prefill, 0), elapsed=0.0)
        seg.drafted_tokens = self.stats.drafted - before[0]
        seg.accepted_tokens = self.stats.accepted - before[1]
        return seg

    def _draft(self, ids: list[int], k: int, req: GenerateRequest) -> tuple[list[int], list[Any]]:
        """The small model's next ``k`` tokens after ``ids`` (and, when sampling, their distributions)."""
        draft: list[int] = []
        q_rows: list[Any] = []
        eos = self.drafter.eos_token_ids
        for _ in range(k):
            logits, _ran = self.drafter.next_logits(ids + draft)
            if req.grammar is not None:  # the drafter's own grammar state, synced to what it drafts
                self.drafter.grammar_state(req, ids + draft, logits.shape[-1]).mask(logits)
            if req.temperature == 0:
                token = self.drafter.select(logits, req)
                confidence = float(logits[-1].softmax(-1)[token])
            else:
                q = self.drafter.probs(logits, req)
                token = int(q.multinomial(1, generator=self.drafter.rng(req, q.device)).item())
                q_rows.append(q[0])
                confidence = float(q[0, token])
            draft.append(token)
            # An unsure draft token is likely rejected, and so would be everything after it.
            if token in eos or confidence < self.min_confidence:
                break
        return draft, q_rows

    def _verify(self, draft: list[int], q_rows: list[Any], logits: Any, req: GenerateRequest) -> list[int]:
        """The drafted tokens the target keeps, then one token of its own (correction or bonus)."""
        import torch

        target = self.target
        kept: list[int] = []
        for i, token in enumerate(draft):
            row = logits[i : i + 1]
            if req.temperature == 0:
                choice = target.select(row, req)
                if choice != token:
                    return [*kept, choice]
            else:
                p = target.probs(row, req)[0]
                rng = target.rng(req, p.device)
                q = q_rows[i]
                # accept with probability min(1, p/q)
                accept = float(torch.rand((), generator=rng, device=p.device)) * float(q[token]) < float(p[token])
                if not accept:
                    residual = (p - q).clamp_min(0)
                    total = float(residual.sum())
                    dist = residual / total if total > 0 else p
                    return [*kept, int(dist.multinomial(1, generator=rng).item())]
            kept.append(token)
        last = logits[len(draft) : len(draft) + 1]
        return [*kept, target.select(last, req)]

    def _adapt(self, drafted: int, accepted: int) -> None:
        """Record a round and adjust the draft length."""
        stats = self.stats
        stats.rounds += 1
        stats.drafted += drafted
        stats.accepted += accepted
        if drafted == 0:
            return
        self.k = min(self.k + 2, self.max_k) if accepted == drafted else max(1, self.k - 1)


def maybe_drafting(target: Any, small: Any, mode: str) -> Any:
    """``target`` wrapped in a :class:`DraftingSession` when ``mode`` is ``"auto"`` and drafting applies."""
    if mode == "auto" and can_draft(target, small):
        return DraftingSession(target, small)
    return target
