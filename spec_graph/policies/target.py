"""Policies that judge steps rather than keywords.

The target's verification of each step, the entropy of a step's first token, repetition
(loops), and combinations of policies.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from spec_graph.config import SpeculativeThinkingConfig
from spec_graph.generators.base import TokenStop
from spec_graph.policies.base import Action, Look, Policy, Step, TriggerPolicy
from spec_graph.policy_config import LoopPolicyConfig, StepEntropyPolicyConfig, VerifyPolicyConfig

__all__ = ["AnyPolicy", "LoopPolicy", "StepEntropyPolicy", "VerifyPolicy"]


class VerifyPolicy(Policy):
    """The target checks each step of the small model (see :class:`~spec_graph.policy_config.VerifyPolicyConfig`).

    Every stretch of the small model is a probe that ends at its first trigger string (at most
    ``step_tokens``). The target scores it in one forward pass, which is also its catch-up on
    that text; the probe stays up to its first token with ``p(x) / max p < threshold``, and the
    target writes from there. A rejected remainder is undone in both models' caches by cropping.
    """

    name = "verify"
    checks_every_step = True
    needs_target_scores = True

    def __init__(
        self, threshold: float, *, step_tokens: int = 64, stretch_tokens: int | None = None, gate: float | None = None
    ) -> None:
        """Validate the settings."""
        self.settings = VerifyPolicyConfig(
            threshold=threshold, step_tokens=step_tokens, stretch_tokens=stretch_tokens, gate=gate
        )

    def look(self, step: Step) -> Look | None:
        """The small model's step: up to its first trigger string, at most ``step_tokens``."""
        return Look(min(self.settings.step_tokens, max(step.remaining, 1)), logprobs=True, until_boundary=True)

    def wants_scores(self, step: Step) -> bool:
        """Scores for a written step, unless the gate says the small model was sure of every token."""
        probe, gate = step.probe, self.settings.gate
        if probe is None or not probe.token_ids:
            return False
        return gate is None or probe.top1_probs is None or min(probe.top1_probs, default=1.0) < gate

    def decide(self, step: Step) -> Action:
        """Keep the step if the target accepts all of it, else its accepted prefix and a target stretch."""
        s, probe = self.settings, step.probe
        if probe is None or step.scores is None or not self.wants_scores(step):
            return Action.keep()  # nothing written, not checked (gate), or the target cannot score (it failed)
        accepted = step.scores.accepted(s.threshold)
        if accepted >= len(probe.token_ids):
            return Action.keep()
        tokens = s.stretch_tokens or s.step_tokens
        return Action.intervene(tokens, "rejected", keep_tokens=accepted, until_boundary=s.stretch_tokens is None)

    def __repr__(self) -> str:
        s = self.settings
        return (
            f"VerifyPolicy({s.threshold}, step_tokens={s.step_tokens}, stretch_tokens={s.stretch_tokens}, "
            f"gate={s.gate})"
        )


class StepEntropyPolicy(Policy):
    """The target writes a step whose first token the small model is unsure of (entropy above ``threshold``)."""

    name = "step_entropy"

    def __init__(self, threshold: float, *, step_tokens: int = 64) -> None:
        """Validate the settings."""
        self.settings = StepEntropyPolicyConfig(threshold=threshold, step_tokens=step_tokens)

    def look(self, step: Step) -> Look | None:
        """The step's first token with its entropy."""
        return Look(1, logprobs=True)

    def decide(self, step: Step) -> Action:
        """Measure the entropy of the step's first token; the target writes the step above the threshold."""
        probe = step.probe
        if probe is None:
            return Action.keep()
        entropy = _first(probe.entropies)
        if entropy is None:
            if probe.entropies is None:
                msg = "the step_entropy policy needs the small model's entropies, which its generator does not give"
                raise ValueError(msg)
            return Action.keep()
        if entropy > self.settings.threshold:
            return Action.intervene(self.settings.step_tokens, "step_entropy", until_boundary=True)
        return Action.keep()

    def __repr__(self) -> str:
        return f"StepEntropyPolicy({self.settings.threshold}, step_tokens={self.settings.step_tokens})"


def _first(values: list[float] | None) -> float | None:
    if not values or values[0] != values[0]:  # none, or NaN (a replayed token)
        return None
    return values[0]


_WORD = re.compile(r"\S+")


class LoopPolicy(Policy):
    """A recap takeover when the small model repeats a step, or its last ``ngram`` words."""

    name = "loop"

    def __init__(self, *, ngram: int = 24, min_chars: int = 16) -> None:
        """Validate the settings."""
        self.settings = LoopPolicyConfig(ngram=ngram, min_chars=min_chars)

    def looping(self, trace: str, triggers: Sequence[str]) -> bool:
        """Whether ``trace`` ends with a repeated step or a repeated n-gram of words."""
        pattern = "|".join(re.escape(t) for t in triggers)
        steps = [" ".join(p.split()) for p in re.split(pattern, trace)] if pattern else [trace]
        steps = [p for p in steps if p]
        if steps and len(steps[-1]) >= self.settings.min_chars and steps[-1] in steps[:-1]:
            return True
        words = _WORD.findall(trace.lower())
        n = self.settings.ngram
        if len(words) < 2 * n:
            return False
        tail = words[-n:]
        return any(words[i : i + n] == tail for i in range(len(words) - 2 * n + 1))

    def decide(self, step: Step) -> Action:
        """Takeover on a loop, else keep."""
        return Action.takeover() if self.looping(step.trace, step.config.trigger_strings) else Action.keep()

    def __repr__(self) -> str:
        return f"LoopPolicy(ngram={self.settings.ngram}, min_chars={self.settings.min_chars})"


class AnyPolicy(Policy):
    """Policies asked in order at each boundary; the first one that does not keep decides.

    The small model stops at every policy's trigger strings, at the first token condition any
    of them sets, and the run opens as the first policy with an opening says. The policies share
    the step's one probe: the first that asks for one (before any decides without one) sets it
    (see :class:`~spec_graph.policy_config.AnyPolicyConfig`). The deciding policy's action says
    which text stays and what follows, so nothing is remembered between calls.
    """

    name = "any"

    def __init__(self, policies: Sequence[TriggerPolicy]) -> None:
        """Combine ``policies`` (at least two)."""
        if len(policies) < 2:
            msg = "a combination needs at least two policies"
            raise ValueError(msg)
        self.policies = tuple(policies)
        self.checks_every_step = any(p.checks_every_step for p in self.policies)
        self.needs_target_scores = any(p.needs_target_scores for p in self.policies)

    def triggers(self, config: SpeculativeThinkingConfig) -> tuple[str, ...]:
        """Every policy's trigger strings."""
        return tuple(dict.fromkeys(t for p in self.policies for t in p.triggers(config)))

    def token_stop(self, config: SpeculativeThinkingConfig) -> TokenStop | None:
        """The first token condition a policy sets."""
        return next((s for p in self.policies if (s := p.token_stop(config)) is not None), None)

    def start(self, config: SpeculativeThinkingConfig) -> Action | None:
        """The first opening a policy asks for."""
        return next((a for p in self.policies if (a := p.start(config)) is not None), None)

    def look(self, step: Step) -> Look | None:
        """The probe of the first policy that asks for one before a policy decides without one."""
        for policy in self.policies:
            want = policy.look(step)
            if want is not None:
                return want
            if policy.decide(step).kind != "keep":
                return None
        return None

    def wants_scores(self, step: Step) -> bool:
        """Whether a policy asks for scores before one decides without them."""
        for policy in self.policies:
            if policy.wants_scores(step):
                return True
            if policy.decide(step).kind != "keep":
                return False
        return False

    def decide(self, step: Step) -> Action:
        """The first action that is not ``keep``."""
        for policy in self.policies:
            action = policy.decide(step)
            if action.kind != "keep":
                return action
        return Action.keep()

    def __repr__(self) -> str:
        return f"AnyPolicy({list(self.policies)!r})"
