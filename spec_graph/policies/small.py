"""Policies that decide from the small model alone.

The paper's keyword rule, a regex, the small model's uncertainty, and the two baselines
(never, always).
"""

from __future__ import annotations

import math
import re
from typing import Literal

from spec_graph.classification import StepCategory, classify_step
from spec_graph.config import SpeculativeThinkingConfig
from spec_graph.generators.base import TokenStop
from spec_graph.policies.base import Action, Choice, Look, Policy, Step
from spec_graph.policy_config import RegexPolicyConfig, UncertaintyPolicyConfig

__all__ = ["AlwaysPolicy", "KeywordPolicy", "NeverPolicy", "RegexPolicy", "UncertaintyPolicy"]


class KeywordPolicy(Policy):
    """The paper's rule (algorithm.md, section 4): keywords in the probe decide.

    A recap takeover once the negative steps reach the threshold; with ``not_reasoning`` and
    ``choose_large`` the target writes at every boundary without a probe; otherwise a probe of
    ``probe_tokens`` that is not NEUTRAL (or any probe with ``not_reasoning``) hands the stretch
    to the target. With ``choose_large`` off the better of probe and stretch stays (by
    sentiment: ``choose="sentiment"``), and a verification cue in the kept stretch makes the
    target write ``verify_tokens`` more (``extend``).
    """

    name = "keyword"

    def look(self, step: Step) -> Look | None:
        """A probe of ``probe_tokens``, unless the decision needs none.

        None is needed when a recap is due, or when every boundary goes to the target.
        """
        cfg = step.config
        if step.negatives >= step.negative_threshold or (cfg.not_reasoning and cfg.choose_large):
            return None
        return Look(cfg.probe_tokens)

    def decide(self, step: Step) -> Action:
        """Takeover, intervention, or keep the probe."""
        cfg = step.config
        # a. Too many negative steps since the last recap: the target takes over.
        if step.negatives >= step.negative_threshold:
            return Action.takeover()
        choose: Choice = "target" if cfg.choose_large else "sentiment"
        if cfg.not_reasoning and cfg.choose_large:
            # Every boundary goes to the target and its stretch is always kept: the probe could
            # not change the text, so it is not written (same output, n1 small tokens saved).
            return Action.intervene(cfg.probe_tokens, "forced", extend=cfg.verify_tokens)
        if step.probe is None:
            return Action.keep()
        # b. The probe is classified; a cue (or any probe with not_reasoning) hands the stretch to the target.
        found = classify_step(step.probe.text, cfg)
        if found.category != StepCategory.NEUTRAL or cfg.not_reasoning:
            return Action.intervene(
                cfg.probe_tokens, found.category.value, found.sentiment, choose=choose, extend=cfg.verify_tokens
            )
        return Action.keep()


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

    def look(self, step: Step) -> Look | None:
        """A probe of ``probe_tokens``."""
        return Look(step.config.probe_tokens)

    def decide(self, step: Step) -> Action:
        """Intervene when a pattern matches the probe, else keep it."""
        text = step.probe.text if step.probe is not None else ""
        for pattern in self.patterns:
            if pattern.search(text):
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

    def look(self, step: Step) -> Look | None:
        """A probe with its token probabilities (scope ``probe``, at a trigger string)."""
        if step.boundary == "token" or self.settings.scope == "token":
            return None
        return Look(step.config.probe_tokens, logprobs=True)

    def decide(self, step: Step) -> Action:
        """Intervene before an uncertain token, or after an uncertain probe."""
        stretch = Action.intervene(self.settings.stretch_tokens, "uncertain")
        if step.boundary == "token":
            return stretch
        probe = step.probe
        if self.settings.scope == "token" or probe is None:
            return Action.keep()
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
