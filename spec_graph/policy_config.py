"""Settings of the trigger policies (what :attr:`SpeculativeThinkingConfig.policy` holds).

Each policy is a small frozen pydantic model (a :class:`PolicySettings`) told apart by ``kind``;
the policy registry (:mod:`spec_graph.policies.registry`) maps each ``kind`` to its policy class
and its short strings. A short string works wherever settings do (:func:`parse_policy`):
``"keyword"``, ``"never"``, ``"always"``, ``"uncertainty:0.5"`` (top-1 probability below 0.5),
``"entropy:2.5"`` (entropy above 2.5 nats), ``"regex:<pattern>"``, ``"verify:0.3"`` (the target
checks each step; ``"verify:0.3:0.5"``: only steps with a token of top-1 probability below 0.5),
``"step-entropy:1.5"`` (the entropy of a step's first token), ``"loop"`` (repetition), and
combinations joined by ``+`` (``"loop+verify:0.3"``: the first policy that acts decides). The
behaviour lives in :mod:`spec_graph.policies`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SerializeAsAny, field_validator, model_validator

__all__ = [
    "AlwaysPolicyConfig",
    "AnyPolicyConfig",
    "KeywordPolicyConfig",
    "LoopPolicyConfig",
    "NeverPolicyConfig",
    "PolicyConfig",
    "PolicySettings",
    "RegexPolicyConfig",
    "StepEntropyPolicyConfig",
    "UncertaintyPolicyConfig",
    "VerifyPolicyConfig",
    "parse_policy",
]


class PolicySettings(BaseModel):
    """Base of every policy's settings: frozen, unknown keys rejected, told apart by ``kind``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str


def parse_policy(value: Any) -> Any:
    """A policy's settings from settings, a dict with ``kind``, or a short string (see module doc).

    The registry (:data:`spec_graph.policies.registry.POLICIES`) knows the kinds and short strings;
    it is imported here, on first use, because it holds the policy classes, which import the config.

    Raises:
        ValueError: an unknown name or kind, with the accepted forms; a pydantic
            ``ValidationError`` for a bad setting (naming it).
    """
    from spec_graph.policies.registry import POLICIES

    return POLICIES.settings(value)


PolicyConfig = Annotated[PolicySettings, BeforeValidator(parse_policy), SerializeAsAny()]
"""Any policy's settings (a registered kind, a dict with ``kind`` or a short string), validated by its model."""


class KeywordPolicyConfig(PolicySettings):
    """The paper's rule: keywords in the small model's probe at each boundary (the default)."""

    kind: Literal["keyword"] = "keyword"


class RegexPolicyConfig(PolicySettings):
    r"""The target writes when one of ``patterns`` matches the small model's probe at a boundary.

    E.g. ``[r"^\s*\d[\d\s.,]*[-+*/×x=]"]`` hands every line that starts with an equation to the
    target. Patterns use Python's :mod:`re` syntax and are searched (not matched) in the probe.
    """

    kind: Literal["regex"] = "regex"
    patterns: tuple[str, ...] = Field(description="Regular expressions searched in each probe.")
    stretch_tokens: int | None = Field(
        None, ge=1, description="Length of the target's stretch (default: the config's probe_tokens)."
    )
    ignore_case: bool = Field(default=False, description="Match without regard to case.")

    @field_validator("patterns")
    @classmethod
    def _compile(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            msg = "the regex policy needs at least one pattern"
            raise ValueError(msg)
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                msg = f"invalid regex pattern {pattern!r}: {exc}"
                raise ValueError(msg) from exc
        return value


class UncertaintyPolicyConfig(PolicySettings):
    """The target writes where the small model is unsure of its next token.

    ``scope="token"``: the small model stops before any token whose distribution is too
    uncertain (top-1 probability below ``threshold``, or entropy above it) and the target writes
    the next ``stretch_tokens``. ``scope="probe"``: at each boundary the small model writes a
    probe; when the probe's mean top-1 probability is below ``threshold`` (or its mean entropy
    above it) the target writes the stretch instead.
    """

    kind: Literal["uncertainty"] = "uncertainty"
    threshold: float = Field(description="top1: a probability in (0, 1); entropy: nats, > 0.")
    measure: Literal["top1", "entropy"] = Field("top1", description="What the threshold bounds.")
    scope: Literal["token", "probe"] = Field("token", description="Per token, or averaged over a probe.")
    stretch_tokens: int = Field(8, ge=1, description="Tokens the target writes each time.")
    min_small_tokens: int = Field(
        0, ge=0, description="Tokens the small model writes after the target before it may stop again."
    )

    @model_validator(mode="after")
    def _check_threshold(self) -> UncertaintyPolicyConfig:
        if self.measure == "top1" and not 0 < self.threshold < 1:
            msg = f"a top1 threshold is a probability strictly between 0 and 1, got {self.threshold}"
            raise ValueError(msg)
        if self.measure == "entropy" and not self.threshold > 0:
            msg = f"an entropy threshold is in nats and must be > 0, got {self.threshold}"
            raise ValueError(msg)
        return self


class VerifyPolicyConfig(PolicySettings):
    """The target checks every step the small model writes, at the cost of one catch-up.

    The small model writes a step (to its next trigger string, at most ``step_tokens``); the
    target scores it in one forward pass, the catch-up it needs anyway before writing. The step
    is accepted up to its first token ``x`` with ``p(x) / max p < threshold`` under the target;
    from there the target writes (to the end of the step, at most ``step_tokens``, or
    ``stretch_tokens`` when set) and the small model goes on. ``threshold`` 0 accepts
    everything (the small model alone); 1 accepts only the target's own choices (greedy: the
    target alone). With ``gate``, only steps in which the small model was unsure of a token
    (top-1 probability below ``gate``) are checked; the others are kept unread, and the target
    catches up on them with the next check (one longer, cheaper prefill). Needs a local target
    with the small model's tokenizer.
    """

    kind: Literal["verify"] = "verify"
    threshold: float = Field(ge=0, le=1, description="Lowest p(x) / max p the target accepts, in [0, 1].")
    step_tokens: int = Field(64, ge=1, description="Longest stretch the small model writes before a check.")
    stretch_tokens: int | None = Field(
        None, ge=1, description="Tokens the target writes after a rejection (default: to the step's end)."
    )
    gate: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Check only steps with a token the small model gave a top-1 probability below this "
        "(default: check every step).",
    )


class StepEntropyPolicyConfig(PolicySettings):
    """The target writes a step when the small model is unsure how to start it.

    At each trigger string the small model's distribution of the step's first token is
    measured; when its entropy is above ``threshold`` nats the target writes the step (to its
    next trigger string, at most ``step_tokens``), else the small model goes on.
    """

    kind: Literal["step_entropy"] = "step_entropy"
    threshold: float = Field(gt=0, description="Entropy in nats above which the target writes the step.")
    step_tokens: int = Field(64, ge=1, description="Longest step the target writes.")


class LoopPolicyConfig(PolicySettings):
    """The target takes over with a recap when the small model repeats itself.

    At each trigger string: a loop is the last step (the text since the previous trigger
    string, at least ``min_chars`` long) equal to an earlier step, or the last ``ngram`` words
    already written earlier in the answer.
    """

    kind: Literal["loop"] = "loop"
    ngram: int = Field(24, ge=2, description="Words of the trailing n-gram that must not repeat.")
    min_chars: int = Field(16, ge=1, description="Shortest step whose repetition counts.")


class AnyPolicyConfig(PolicySettings):
    """Policies combined: each is asked in order, and the first that does not keep decides.

    They share one probe per step (the first policy that asks writes it), so put the policy
    whose probe the others can use first (``verify`` before ``step_entropy``).
    """

    kind: Literal["any"] = "any"
    policies: tuple[PolicyConfig, ...] = Field(description="The policies, asked in order (at least two).")

    @field_validator("policies")
    @classmethod
    def _at_least_two(cls, value: tuple[Any, ...]) -> tuple[Any, ...]:
        if len(value) < 2:
            msg = "a combination needs at least two policies"
            raise ValueError(msg)
        return value


class NeverPolicyConfig(PolicySettings):
    """The target never writes: the small model alone (a baseline)."""

    kind: Literal["never"] = "never"


class AlwaysPolicyConfig(PolicySettings):
    """The target writes everything: the target alone (a baseline)."""

    kind: Literal["always"] = "always"
