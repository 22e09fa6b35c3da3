"""Trigger policies: when the target writes instead of the small model.

At each boundary of the small model's text ``classify_step`` asks the run's policy what
happens next: keep the small model's words, let the target write a stretch of a given length,
or let it take over with a recap. A policy sees a :class:`Step`: the trace, the counters, the
config, the small model's *probe* (its next words, written on demand with their token
probabilities) and, for policies that ask, the target's scores of that probe. It may also
define where the small model stops: at trigger strings (:meth:`Policy.triggers`) and, before
an uncertain token, at a :class:`~spec_graph.generators.base.TokenStop`.

Shipped, deciding from the small model (:mod:`spec_graph.policies.small`):
:class:`KeywordPolicy` (the paper, default), :class:`RegexPolicy`, :class:`UncertaintyPolicy`,
:class:`NeverPolicy` and :class:`AlwaysPolicy`; judging steps (:mod:`spec_graph.policies.target`):
:class:`VerifyPolicy` (the target scores each step), :class:`StepEntropyPolicy`,
:class:`LoopPolicy`, and :class:`AnyPolicy` to combine them. Write your own by subclassing
:class:`Policy` and overriding :meth:`Policy.decide`; register it (one :class:`PolicyEntry` in
:data:`POLICIES`, :mod:`spec_graph.policies.registry`) to name it in configs, the CLI and evaluations.
"""

from __future__ import annotations

from spec_graph.policies.base import (
    Action,
    Look,
    Policy,
    ProbeView,
    Step,
    TargetScores,
    TriggerPolicy,
    checks_every_step,
)
from spec_graph.policies.registry import POLICIES, PolicyEntry, PolicyRegistry
from spec_graph.policies.small import AlwaysPolicy, KeywordPolicy, NeverPolicy, RegexPolicy, UncertaintyPolicy
from spec_graph.policies.target import AnyPolicy, LoopPolicy, StepEntropyPolicy, VerifyPolicy

__all__ = [
    "POLICIES",
    "Action",
    "AlwaysPolicy",
    "AnyPolicy",
    "KeywordPolicy",
    "Look",
    "LoopPolicy",
    "NeverPolicy",
    "Policy",
    "PolicyEntry",
    "PolicyRegistry",
    "ProbeView",
    "RegexPolicy",
    "Step",
    "StepEntropyPolicy",
    "TargetScores",
    "TriggerPolicy",
    "UncertaintyPolicy",
    "VerifyPolicy",
    "build_policy",
    "checks_every_step",
]


def build_policy(settings: object) -> TriggerPolicy:
    """The policy for a config's ``policy`` settings (a policy object passes through); see :data:`POLICIES`."""
    return POLICIES.build(settings)
