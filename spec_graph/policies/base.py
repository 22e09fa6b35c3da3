"""What a policy sees and returns, the policy protocol, and the defaults of every policy.

:class:`Step`, :class:`ProbeView`, :class:`TargetScores`, :class:`Action`; :class:`TriggerPolicy`
and :class:`Policy`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from spec_graph.config import SpeculativeThinkingConfig
from spec_graph.generators.base import Segment, TokenStop

__all__ = ["Action", "Policy", "ProbeView", "Step", "TargetScores", "TriggerPolicy"]

ActionKind = Literal["keep", "intervene", "takeover"]


@dataclass(frozen=True)
class Action:
    """What happens at a boundary.

    ``keep``: the small model's words stay (its probe up to the next boundary, if one was
    written). ``intervene``: the target writes ``tokens`` tokens from the boundary (the probe
    is discarded, unless :meth:`Policy.keep_target` prefers it, or only its first
    ``keep_tokens`` stay). ``takeover``: the recap.
    """

    kind: ActionKind
    tokens: int = 0
    """Length of the target's stretch (``intervene``): at most this many tokens."""
    category: str = ""
    """Why, as recorded in the run's interventions (e.g. ``reflection``, ``uncertain``)."""
    sentiment: int = 0
    """The probe's sentiment, for policies that compare it with the target's stretch."""
    keep_tokens: int = 0
    """``intervene``: the probe's first tokens that stay; the target writes after them."""
    until_boundary: bool = False
    """``intervene``: the target's stretch also ends at the first trigger string it writes."""

    @classmethod
    def keep(cls) -> Action:
        """Keep the small model's words."""
        return cls("keep")

    @classmethod
    def intervene(
        cls, tokens: int, category: str, sentiment: int = 0, *, keep_tokens: int = 0, until_boundary: bool = False
    ) -> Action:
        """The target writes ``tokens`` tokens (after the probe's first ``keep_tokens``)."""
        if tokens < 1:
            msg = f"an intervention writes at least one token, got {tokens}"
            raise ValueError(msg)
        if keep_tokens < 0:
            msg = f"keep_tokens must be >= 0, got {keep_tokens}"
            raise ValueError(msg)
        return cls("intervene", tokens, category, sentiment, keep_tokens, until_boundary)

    @classmethod
    def takeover(cls) -> Action:
        """The target takes over with a recap."""
        return cls("takeover", category="takeover")


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


@dataclass
class Step:
    """What a policy sees at a boundary."""

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
    write_probe: Callable[[int, bool, bool], ProbeView] = field(repr=False)
    score_probe: Callable[[], TargetScores] | None = field(default=None, repr=False)

    def probe(self, tokens: int | None = None, *, logprobs: bool = False, until_boundary: bool = False) -> ProbeView:
        """The small model's next ``tokens`` tokens (default ``probe_tokens``), written once per step.

        Args:
            tokens: probe length; a second call returns the first probe whatever it asks.
            logprobs: also record each token's probabilities (:class:`ProbeView`).
            until_boundary: end the probe at its first trigger string.
        """
        return self.write_probe(tokens or self.config.probe_tokens, logprobs, until_boundary)

    def scores(self) -> TargetScores:
        """The target's log-probabilities of the probe's tokens (writes the default probe if none).

        Raises:
            ValueError: the target cannot score (a served model, or another tokenizer).
        """
        if self.score_probe is None:
            msg = (
                "this policy needs the target to score the small model's tokens: a local target "
                "model with the small model's tokenizer"
            )
            raise ValueError(msg)
        return self.score_probe()


@runtime_checkable
class TriggerPolicy(Protocol):
    """What the graph asks a policy (subclass :class:`Policy` for the defaults)."""

    name: str

    def triggers(self, config: SpeculativeThinkingConfig) -> tuple[str, ...]:
        """Strings at which the small model stops and the policy is asked (may be empty)."""
        ...

    def token_stop(self, config: SpeculativeThinkingConfig) -> TokenStop | None:
        """A condition on the small model's next-token distribution that also stops it."""
        ...

    def start(self, config: SpeculativeThinkingConfig) -> Action | None:
        """Whether the target writes first (an ``intervene`` action) before the small model."""
        ...

    def decide(self, step: Step) -> Action:
        """What happens at this boundary."""
        ...

    def keep_target(
        self, probe: ProbeView | None, action: Action, target_text: str, config: SpeculativeThinkingConfig
    ) -> bool:
        """After the target wrote its stretch: keep it (True) or the small model's probe."""
        ...

    def extension(self, kept_text: str, config: SpeculativeThinkingConfig) -> int:
        """Extra tokens the target writes after the kept stretch (0 for none)."""
        ...


class Policy:
    """A policy's defaults; override :meth:`decide`.

    Stop at the config's trigger strings, no token condition, the config's opening, always keep
    the target's stretch, no extension.
    """

    name = "policy"
    checks_every_step = False
    """True: the small model writes nothing unchecked: every stretch of it is a probe the
    policy decides on (it starts the run, and follows every target stretch)."""
    needs_target_scores = False
    """True: :meth:`Step.scores` is used (the run needs a target that can score)."""

    def triggers(self, config: SpeculativeThinkingConfig) -> tuple[str, ...]:
        """The config's trigger strings."""
        return config.trigger_strings

    def token_stop(self, config: SpeculativeThinkingConfig) -> TokenStop | None:
        """None: only strings end the small model's stretches."""
        return None

    def start(self, config: SpeculativeThinkingConfig) -> Action | None:
        """The target's opening when the config asks for one."""
        return Action.intervene(config.opening_tokens, "opening") if config.opening else None

    def decide(self, step: Step) -> Action:
        """Keep the small model's words (override this)."""
        return Action.keep()

    def keep_target(
        self,
        probe: ProbeView | None,
        action: Action,
        target_text: str,
        config: SpeculativeThinkingConfig,
    ) -> bool:
        """The target's stretch always stays."""
        return True

    def extension(self, kept_text: str, config: SpeculativeThinkingConfig) -> int:
        """No extra target tokens."""
        return 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def checks_every_step(policy: object) -> bool:
    """Whether ``policy`` decides on every stretch the small model writes (see :class:`Policy`)."""
    return bool(getattr(policy, "checks_every_step", False))
