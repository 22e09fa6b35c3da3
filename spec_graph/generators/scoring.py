"""The target's scores of tokens another model wrote: one forward pass, which is also its catch-up."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from spec_graph.generators.base import Span
from spec_graph.generators.drafting import DraftingSession, TokenLevelSession, can_draft

__all__ = ["TokenScores", "score_tokens", "scoring_session"]


@dataclass(frozen=True)
class TokenScores:
    """``log p(x)`` and ``log p(x) - log max p`` of each scored token, and what the pass cost."""

    logprobs: list[float]
    log_ratios: list[float]
    prefill_tokens: int
    """Tokens the model ran: the scored ones plus whatever of the trace it had not seen."""
    elapsed: float


def scoring_session(target: Any, small: Any) -> TokenLevelSession | None:
    """The target's token-level session when it can score the small model's tokens, else ``None``.

    It can when both are local models with the same tokenizer (a :class:`DraftingSession` is
    looked through to the target it wraps).
    """
    inner = target.target if isinstance(target, DraftingSession) else target
    return inner if can_draft(inner, small) else None


def score_tokens(session: TokenLevelSession, trace: Sequence[Span], token_ids: Sequence[int]) -> TokenScores:
    """Score ``token_ids`` as the continuation of ``trace`` under ``session``'s model (unwarped).

    The session's cache ends up holding the trace and the scored tokens: the part of them a
    run keeps needs no second prefill, and the rest is cropped on the next call.
    """
    import torch  # imported here: the graph itself runs without torch

    t0 = time.perf_counter()
    ids = list(token_ids)
    with session.lock, torch.inference_mode():
        context = session.context_ids(trace)
        logits, ran = session.next_logits(context + ids, len(ids) + 1)
        logp = torch.log_softmax(logits[: len(ids)].float(), dim=-1)
        chosen = logp.gather(1, torch.tensor(ids, device=logp.device)[:, None])[:, 0]
        ratios = chosen - logp.max(dim=-1).values
    return TokenScores(chosen.tolist(), ratios.tolist(), ran, time.perf_counter() - t0)
