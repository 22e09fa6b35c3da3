"""Trigger policies: when the target writes instead of the small model.

At each boundary of the small model's text ``classify_step`` asks the run's policy what
happens next: keep the small model's words, let the target write a stretch of a given length,
or let it take over with a recap. A policy sees a :class:`Step`: the trace, the counters, the
config, and the small model's *probe* (its next words, written on demand with their token
probabilities). It may also define where the small model stops: at trigger strings
(:meth:`Policy.triggers`) and, before an uncertain token, at a :class:`TokenStop`.

Shipped: :class:`KeywordPolicy` (the paper, default), :class:`RegexPolicy`,
:class:`UncertaintyPolicy`, :class:`NeverPolicy` and :class:`AlwaysPolicy`. Write your own by
subclassing :class:`Policy` and overriding :meth:`Policy.decide`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from spec_graph.classification import StepCategory, classify_step
from spec_graph.config import SpeculativeThinkingConfig
from spec_graph.generators.base import Segment, TokenStop
from spec_graph.policy_config import (
    AlwaysPolicyConfig,
    KeywordPolicyConfig,
    NeverPolicyConfig,
    RegexPolicyConfig,
    UncertaintyPolicyConfig,
)

__all__ = [
    "Action",
    "AlwaysPolicy",
    "KeywordPolicy",
    "NeverPolicy",
    "Policy",
    "ProbeView",
    "RegexPolicy",
    "Step",
    "TriggerPolicy",
    "UncertaintyPolicy",
    "build_policy",
]

ActionKind = Literal["keep", "intervene", "takeover"]


@dataclass(frozen=True)
class Action:
    """What happens at a boundary.

    ``keep``: the small model's words stay (its probe up to the next boundary, if one was
    written). ``intervene``: the target writes ``tokens`` tokens from the boundary (the probe
    is discarded, unless :meth:`Policy.keep_target` prefers it). ``takeover``: the recap.
    """

    kind: ActionKind
    tokens: int = 0
    """Length of the target's stretch (``intervene``)."""
    category: str = ""
    """Why, as recorded in the run's interventions (e.g. ``reflection``, ``uncertain``)."""
    sentiment: int = 0
    """The probe's sentiment, for policies that compare it with the target's stretch."""

    @classmethod
    def keep(cls) -> Action:
        """Keep the small model's words."""
        return cls("keep")

    @classmethod
    def intervene(cls, tokens: int, category: str, sentiment: int = 0) -> Action:
        """The target writes ``tokens`` tokens."""
        if tokens < 1:
            msg = f"an intervention writes at least one token, got {tokens}"
            raise ValueError(msg)
        return cls("intervene", tokens, category, sentiment)

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

    @classmethod
    def of(cls, seg: Segment) -> ProbeView:
        """The view of a written segment."""
        return cls(seg.text, list(seg.token_ids), seg.logprobs, seg.top1_probs, seg.entropies)


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
    write_probe: Callable[[int, bool], ProbeView] = field(repr=False)

    def probe(self, tokens: int | None = None, *, logprobs: bool = False) -> ProbeView:
        """The small model's next ``tokens`` tokens (default ``probe_tokens``), written once per step.

        Args:
            tokens: probe length; a second call returns the first probe whatever it asks.
            logprobs: also record each token's probabilities (:class:`ProbeView`).
        """
        return self.write_probe(tokens or self.config.probe_tokens, logprobs)


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


class KeywordPolicy(Policy):
    """The paper's rule (algorithm.md, section 4): keywords in the probe decide.

    A recap takeover once the negative steps reach the threshold; with ``not_reasoning`` and
    ``choose_large`` the target writes at every boundary without a probe; otherwise a probe of
    ``probe_tokens`` that is not NEUTRAL (or any probe with ``not_reasoning``) hands the stretch
    to the target. With ``choose_large`` off the better of probe and stretch stays (by
    sentiment), and a verification cue in the kept stretch makes the target write
    ``verify_tokens`` more.
    """

    name = "keyword"

    def decide(self, step: Step) -> Action:
        """Takeover, intervention, or keep the probe."""
        cfg = step.config
        if step.negatives >= step.negative_threshold:
            return Action.takeover()
        if cfg.not_reasoning and cfg.choose_large:
            # Every boundary goes to the target and its stretch is always kept: the probe could
            # not change the text, so it is not written (same output, n1 small tokens saved).
            return Action.intervene(cfg.probe_tokens, "forced")
        probe = step.probe(cfg.probe_tokens)
        found = classify_step(probe.text, cfg)
        if found.category != StepCategory.NEUTRAL or cfg.not_reasoning:
            return Action.intervene(cfg.probe_tokens, found.category.value, found.sentiment)
        return Action.keep()

    def keep_target(
        self, probe: ProbeView | None, action: Action, target_text: str, config: SpeculativeThinkingConfig
    ) -> bool:
        """``choose_large``, or the stretch's sentiment has the sign the probe's lacked."""
        if config.choose_large or probe is None:
            return True
        p, t = action.sentiment, classify_step(target_text, config).sentiment
        return (p < 0 <= t) or (p > 0 > t)

    def extension(self, kept_text: str, config: SpeculativeThinkingConfig) -> int:
        """``verify_tokens`` after a verification cue, else 0."""
        return config.verify_tokens if classify_step(kept_text, config).verification_hits else 0


class RegexPolicy(Policy):
    """The target writes when a pattern is found in the small model's probe."""

    name = "regex"

    def __init__(
        self, patterns: tuple[str, ...] | list[str], *, stretch_tokens: int | None = None, ignore_case: bool = False
    ) -> None:
        """Compile ``patterns`` (searched in each probe)."""
        settings = RegexPolicyConfig(patterns=tuple(patterns), stretch_tokens=stretch_tokens, ignore_case=ignore_case)
        flags = re.MULTILINE | (re.IGNORECASE if ignore_case else 0)
        self.patterns = [re.compile(p, flags) for p in settings.patterns]
        self.stretch_tokens = stretch_tokens

    def decide(self, step: Step) -> Action:
        """Intervene when a pattern matches the probe, else keep it."""
        probe = step.probe(step.config.probe_tokens)
        for pattern in self.patterns:
            if pattern.search(probe.text):
                return Action.intervene(self.stretch_tokens or step.config.probe_tokens, "pattern")
        return Action.keep()

    def __repr__(self) -> str:
        return f"RegexPolicy({[p.pattern for p in self.patterns]!r})"


class UncertaintyPolicy(Policy):
    """The target writes where the small model is unsure (its own token probabilities).

    ``scope="token"``: no trigger strings; the small model stops before a token whose top-1
    probability is below ``threshold`` (``measure="top1"``) or whose entropy is above it
    (``measure="entropy"``), and the target writes the next ``stretch_tokens``. ``scope="probe"``:
    at each trigger string the small model writes a probe; the target writes the stretch when
    the probe's mean top-1 probability is below the threshold (mean entropy above it).
    """

    name = "uncertainty"

    def __init__(
        self,
        threshold: float,
        *,
        measure: Literal["top1", "entropy"] = "top1",
        scope: Literal["token", "probe"] = "token",
        stretch_tokens: int = 8,
        min_small_tokens: int = 0,
    ) -> None:
        """Validate the settings (see :class:`~spec_graph.policy_config.UncertaintyPolicyConfig`)."""
        s = UncertaintyPolicyConfig(
            threshold=threshold,
            measure=measure,
            scope=scope,
            stretch_tokens=stretch_tokens,
            min_small_tokens=min_small_tokens,
        )
        self.settings = s
        self.condition = TokenStop(s.measure, s.threshold, s.min_small_tokens)

    def triggers(self, config: SpeculativeThinkingConfig) -> tuple[str, ...]:
        """None per token; the config's trigger strings per probe."""
        return () if self.settings.scope == "token" else config.trigger_strings

    def token_stop(self, config: SpeculativeThinkingConfig) -> TokenStop | None:
        """The per-token condition (scope ``token``)."""
        return self.condition if self.settings.scope == "token" else None

    def decide(self, step: Step) -> Action:
        """Intervene before an uncertain token, or after an uncertain probe."""
        stretch = Action.intervene(self.settings.stretch_tokens, "uncertain")
        if step.boundary == "token":
            return stretch
        if self.settings.scope == "token":
            return Action.keep()
        probe = step.probe(step.config.probe_tokens, logprobs=True)
        values = probe.top1_probs if self.settings.measure == "top1" else probe.entropies
        if values is None:
            msg = (
                f"the uncertainty policy ({self.settings.measure}) needs the small model's token "
                "probabilities, which its generator does not give"
            )
            raise ValueError(msg)
        known = [v for v in values if not math.isnan(v)]
        if not known:
            return Action.keep()
        mean = sum(known) / len(known)
        return stretch if self.condition.met(mean, mean) else Action.keep()

    def __repr__(self) -> str:
        s = self.settings
        return (
            f"UncertaintyPolicy({s.threshold}, measure={s.measure!r}, scope={s.scope!r}, "
            f"stretch_tokens={s.stretch_tokens})"
        )


class NeverPolicy(Policy):
    """The target never writes: exactly the small model alone."""

    name = "never"

    def triggers(self, config: SpeculativeThinkingConfig) -> tuple[str, ...]:
        """None: the small model writes without stopping."""
        return ()

    def start(self, config: SpeculativeThinkingConfig) -> Action | None:
        """No opening."""
        return None


class AlwaysPolicy(Policy):
    """The target writes everything: exactly the target alone."""

    name = "always"

    def triggers(self, config: SpeculativeThinkingConfig) -> tuple[str, ...]:
        """None (the small model only writes after a target failure)."""
        return ()

    def start(self, config: SpeculativeThinkingConfig) -> Action | None:
        """The target writes the whole budget from the start."""
        return Action.intervene(config.max_new_tokens, "always")

    def decide(self, step: Step) -> Action:
        """The target writes the rest."""
        return Action.intervene(max(step.remaining, 1), "always")


def build_policy(settings: object) -> TriggerPolicy:
    """The policy for a config's ``policy`` settings (a policy object passes through)."""
    if isinstance(settings, KeywordPolicyConfig):
        return KeywordPolicy()
    if isinstance(settings, RegexPolicyConfig):
        return RegexPolicy(settings.patterns, stretch_tokens=settings.stretch_tokens, ignore_case=settings.ignore_case)
    if isinstance(settings, UncertaintyPolicyConfig):
        return UncertaintyPolicy(
            settings.threshold,
            measure=settings.measure,
            scope=settings.scope,
            stretch_tokens=settings.stretch_tokens,
            min_small_tokens=settings.min_small_tokens,
        )
    if isinstance(settings, NeverPolicyConfig):
        return NeverPolicy()
    if isinstance(settings, AlwaysPolicyConfig):
        return AlwaysPolicy()
    if isinstance(settings, TriggerPolicy):
        return settings
    msg = f"not a policy or policy settings: {settings!r}"
    raise TypeError(msg)
