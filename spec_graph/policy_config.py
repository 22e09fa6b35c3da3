"""Settings of the trigger policies (what :attr:`SpeculativeThinkingConfig.policy` holds).

Each policy is a small frozen pydantic model told apart by ``kind``; a short string works too
(:func:`parse_policy`): ``"keyword"``, ``"never"``, ``"always"``, ``"uncertainty:0.5"``
(top-1 probability below 0.5), ``"entropy:2.5"`` (entropy above 2.5 nats) or
``"regex:<pattern>"``. The behaviour lives in :mod:`spec_graph.policies`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

__all__ = [
    "AlwaysPolicyConfig",
    "KeywordPolicyConfig",
    "NeverPolicyConfig",
    "PolicyConfig",
    "RegexPolicyConfig",
    "UncertaintyPolicyConfig",
    "parse_policy",
]


class _Policy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KeywordPolicyConfig(_Policy):
    """The paper's rule: keywords in the small model's probe at each boundary (the default)."""

    kind: Literal["keyword"] = "keyword"


class RegexPolicyConfig(_Policy):
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


class UncertaintyPolicyConfig(_Policy):
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


class NeverPolicyConfig(_Policy):
    """The target never writes: the small model alone (a baseline)."""

    kind: Literal["never"] = "never"


class AlwaysPolicyConfig(_Policy):
    """The target writes everything: the target alone (a baseline)."""

    kind: Literal["always"] = "always"


PolicyConfig = Annotated[
    KeywordPolicyConfig | RegexPolicyConfig | UncertaintyPolicyConfig | NeverPolicyConfig | AlwaysPolicyConfig,
    Field(discriminator="kind"),
]
"""Any policy's settings, told apart by ``kind``."""

_ADAPTER: TypeAdapter[Any] = TypeAdapter(PolicyConfig)
_SHORT = "'keyword', 'never', 'always', 'uncertainty:<p>', 'entropy:<nats>' or 'regex:<pattern>'"


def parse_policy(value: Any) -> Any:
    """A policy's settings from a model, a dict with ``kind``, or a short string (see module doc).

    Raises:
        ValueError: an unknown name or a bad threshold, with the accepted forms.
    """
    if isinstance(value, _Policy):
        return value
    if isinstance(value, str):
        name, _, arg = value.strip().partition(":")
        if name in ("keyword", "never", "always") and not arg:
            return _ADAPTER.validate_python({"kind": name})
        if name == "regex" and arg:
            return RegexPolicyConfig(patterns=(arg,))
        if name in ("uncertainty", "entropy") and arg:
            try:
                threshold = float(arg)
            except ValueError:
                threshold = None
            if threshold is not None:
                measure = "top1" if name == "uncertainty" else "entropy"
                return UncertaintyPolicyConfig(threshold=threshold, measure=measure)
        msg = f"unknown policy {value!r}: use {_SHORT}, or a dict with 'kind'"
        raise ValueError(msg)
    return _ADAPTER.validate_python(value)
