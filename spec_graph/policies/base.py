"""What a policy sees and returns, the policy protocol, and the defaults of every policy.

:class:`Step`, :class:`Look`, :class:`ProbeView`, :class:`TargetScores`, :class:`Action`;
:class:`TriggerPolicy` and :class:`Policy`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from spec_graph.config import SpeculativeThinkingConfig
from spec_graph.generators.base import Segment, TokenStop

__all__ = ["Action", "Look", "Policy", "ProbeView", "Step", "TargetScores", "TriggerPolicy"]

ActionKind = Literal["keep", "intervene", "takeover"]
Choice = Literal["target", "sentiment"]


@dataclass(frozen=True)
class Action:
    """What happens at a boundary.

    ``keep``: the small model's words stay (its probe up to the next boundary, if one was
    written). ``intervene``: the target writes ``tokens`` tokens from the boundary (the probe
    is discarded, unless ``choose`` prefers it, or only its first ``keep_tokens`` stay).
    ``takeover``: the recap.
    """

    kind: ActionKind
    tokens: int = 0
    """Length of the target's stretch (``intervene``): at most this many tokens."""
    category: str = ""
    """Why, as recorded in the run's interventions (e.g. ``reflection``, ``uncertain``)."""
    sentiment: int = 0
    """The probe's sentiment (compared with the stretch's when ``choose="sentiment"``)."""
    keep_tokens: int = 0
    """``intervene``: the probe's first tokens that stay; the target writes after them."""
    until_boundary: bool = False
    """``intervene``: the target's stretch also ends at the first trigger string it writes."""
    choose: Choice = "target"
    """``intervene``: which text stays, the target's stretch (``target``) or, by the paper's
    rule without ``choose_large`` (``sentiment``), the stretch only where its sentiment has the
    sign the probe's lacked (algorithm.md, section 4, step 5), else the probe."""
    extend: int = 0
    """``intervene``: tokens the target writes after the kept stretch when it holds a
    verification keyword (the paper's n2); 0 for none."""

    @classmethod
    def keep(cls) -> Action:
        """Keep the small model's words."""
        return cls("keep")

    @classmethod
    def intervene(
        cls,
        tokens: int,
        category: str,
        sentiment: int = 0,
        *,
        keep_tokens: int = 0,
        until_boundary: bool = False,
        choose: Choice = "target",
        extend: int = 0,
    ) -> Action:
        """The target writes ``tokens`` tokens (after the probe's first ``keep_tokens``)."""
        if tokens < 1:
            msg = f"an intervention writes at least one token, got {tokens}"
            raise ValueError(msg)
        if keep_tokens < 0 or extend < 0:
            msg = f"keep_tokens and extend must be >= 0, got {keep_tokens} and {extend}"
            raise ValueError(msg)
        return cls("intervene", tokens, category, sentiment, keep_tokens, until_boundary, choose, extend)

    @classmethod
    def takeover(cls) -> Action:
        """The target takes over with a recap."""
        return cls("takeover", category="takeover")


@dataclass(frozen=True)
class Look:
    """What a policy reads before it decides: a probe of the small model's next words."""

    tokens: int
    """At most this many tokens."""
    logprobs: bool = False
    """Record each token's probabilities (:class:`ProbeView`)."""
    until_boundary: bool = False
    """End the probe at its first trigger string."""


@dataclass(frozen=True)
class ProbeView:
    """The small model's probe: its next words from the boundary, with token statistics."""

    text: str
    token_ids: list[int]
    logprobs: list[float] | None = None
    """Log-probability of each token (when asked for and the generator gives them)."""
    top1_probs: list[float] | None = None
    """Probability of the most likely token at each position."""
    entropies: list[float] | None = None
    """Entropy (nats) at each position; ``None`` for served models."""
    boundary_tokens: int | None = None
    """Tokens up to and including the first trigger string in the probe (``None``: none)."""

    @classmethod
    def of(cls, seg: Segment) -> ProbeView:
        """The view of a written segment."""
        first = seg.first_boundary[0] if seg.first_boundary else None
        return cls(seg.text, list(seg.token_ids), seg.logprobs, seg.top1_probs, seg.entropies, first)


@dataclass(frozen=True)
class TargetScores:
    """The target's judgement of the probe, from one forward pass over it (its catch-up).

    For each probe token ``x``: ``logprobs`` holds ``log p(x)`` under the target's unwarped
    distribution, ``log_ratios`` holds ``log p(x) - log max p`` (0 where ``x`` is the target's
    own choice, below 0 elsewhere).
    """

    logprobs: list[float]
    log_ratios: list[float]

    def accepted(self, threshold: float) -> int:
        """Tokens before the first one whose ``p(x) / max p`` is below ``threshold``."""
        floor = math.log(threshold) if threshold > 0 else -math.inf
        for i, r in enumerate(self.log_ratios):
            if r < floor:
                return i
        return len(self.log_ratios)


@dataclass(frozen=True)
class Step:
    """What a policy sees at a boundary: the run so far and, once it asked for them, the probe and its scores."""

    trace: str
    """The answer so far (all spans' text)."""
    boundary: Literal["trigger", "token"]
    """``trigger``: the small model wrote a trigger string; ``token``: it stopped before a
    token the policy's :class:`TokenStop` flagged."""
    negatives: int
    """Negative (reflection/verification) steps kept since the last recap."""
    negative_threshold: int
    """Negative steps that call for a recap now (grows after each recap)."""
    output_tokens: Mapping[str, int]
    """Kept tokens by author so far."""
    remaining: int
    """Tokens the budget still allows."""
    config: SpeculativeThinkingConfig
    probe: ProbeView | None = None
    """The small model's probe, when :meth:`Policy.look` asked for one."""
    scores: TargetScores | None = None
    """The target's scores of the probe, when :meth:`Policy.wants_scores` asked for them (and
    the target can score: a local model with the small model's tokenizer, not failed)."""


@runtime_checkable
class TriggerPolicy(Protocol):
    """What the graph asks a policy (subclass :class:`Policy` for the defaults).

    At a boundary the graph asks :meth:`look` (a probe of the small model's next words, or
    none), writes that probe, asks :meth:`wants_scores` (the target's scores of it), and then
    :meth:`decide` on the completed :class:`Step`. A policy keeps no state between calls: what
    it needs to remember is in the step (the counters) or in the trace.
    """

    name: str
    checks_every_step: bool
    """True: the small model writes nothing unchecked: every stretch of it is a probe the
    policy decides on (it starts the run, and follows every target stretch)."""
    needs_target_scores: bool
    """True: :meth:`wants_scores` may ask for the target's scores (the run needs a target
    that can score)."""

    def triggers(self, config: SpeculativeThinkingConfig) -> tuple[str, ...]:
        """Strings at which the small model stops and the policy is asked (may be empty)."""
        ...

    def token_stop(self, config: SpeculativeThinkingConfig) -> TokenStop | None:
        """A condition on the small model's next-token distribution that also stops it."""
        ...

    def start(self, config: SpeculativeThinkingConfig) -> Action | None:
        """Whether the target writes first (an ``intervene`` action) before the small model."""
        ...

    def look(self, step: Step) -> Look | None:
        """The probe to write before deciding at this boundary (``None``: decide without one)."""
        ...

    def wants_scores(self, step: Step) -> bool:
        """After the probe is written: whether to have the target score it."""
        ...

    def decide(self, step: Step) -> Action:
        """What happens at this boundary."""
        ...


class Policy:
    """A policy's defaults; override :meth:`look` and :meth:`decide`.

    Stop at the config's trigger strings, no token condition, the config's opening, no probe,
    no scores, keep.
    """

    name = "policy"
    checks_every_step = False
    needs_target_scores = False

    def triggers(self, config: SpeculativeThinkingConfig) -> tuple[str, ...]:
        """The config's trigger strings."""
        return config.trigger_strings

    def token_stop(self, config: SpeculativeThinkingConfig) -> TokenStop | None:
        """None: only strings end the small model's stretches."""
        return None

    def start(self, config: SpeculativeThinkingConfig) -> Action | None:
        """The target's opening when the config asks for one."""
        return Action.intervene(config.opening_tokens, "opening") if config.opening else None

    def look(self, step: Step) -> Look | None:
        """No probe."""
        return None

    def wants_scores(self, step: Step) -> bool:
        """No scores."""
        return False

    def decide(self, step: Step) -> Action:
        """Keep the small model's words (override this)."""
        return Action.keep()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def checks_every_step(policy: TriggerPolicy) -> bool:
    """Whether ``policy`` decides on every stretch the small model writes (see :class:`TriggerPolicy`)."""
    return policy.checks_every_step
