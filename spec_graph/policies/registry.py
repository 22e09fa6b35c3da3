"""The policy registry: name -> policy class, its settings' schema and its short strings.

Every way of naming a policy goes through :data:`POLICIES`: the config's ``policy`` field
(:func:`~spec_graph.policy_config.parse_policy`), :func:`~spec_graph.policies.build_policy`, the
``--policy`` options of ``spec-graph run`` and the ``spec:<policy>`` systems of
``spec-graph eval``. Registering a policy is one :class:`PolicyEntry`::

    POLICIES.register(PolicyEntry(
        MyPolicy,                      # built with the settings' fields as keyword arguments
        MyPolicyConfig,                # a PolicySettings with kind: Literal["mine"] = "mine"
        short={"mine": ("mine:<n>", lambda arg: {"size": arg})},
        summary="the target writes every n-th step",
    ))

after which ``SpeculativeThinkingConfig(policy="mine:3")``, ``{"kind": "mine", "size": 3}`` and
``spec-graph run --policy mine:3`` work, validated by ``MyPolicyConfig``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from spec_graph.policies.base import TriggerPolicy
from spec_graph.policies.small import AlwaysPolicy, KeywordPolicy, NeverPolicy, RegexPolicy, UncertaintyPolicy
from spec_graph.policies.target import AnyPolicy, LoopPolicy, StepEntropyPolicy, VerifyPolicy
from spec_graph.policy_config import (
    AlwaysPolicyConfig,
    AnyPolicyConfig,
    KeywordPolicyConfig,
    LoopPolicyConfig,
    NeverPolicyConfig,
    PolicySettings,
    RegexPolicyConfig,
    StepEntropyPolicyConfig,
    UncertaintyPolicyConfig,
    VerifyPolicyConfig,
)

__all__ = ["POLICIES", "PolicyEntry", "PolicyRegistry", "ShortForm"]

ShortForm = tuple[str, Callable[[str], Mapping[str, Any]]]
"""A short string's usage (``"verify:<p>[:<gate>]"``) and the parser of what follows its name and
``:`` into settings fields (raise ``ValueError`` for a malformed argument)."""


@dataclass(frozen=True)
class PolicyEntry:
    """One registered policy."""

    policy: type[TriggerPolicy]
    """The class; built with the settings' fields (``kind`` aside) as keyword arguments."""
    settings: type[PolicySettings]
    """Its settings' pydantic model (the parameters' schema); its ``kind`` default is the policy's name."""
    short: Mapping[str, ShortForm] = field(default_factory=dict)
    """Short strings, by the name before the first ``:``."""
    summary: str = ""
    """When the target writes, in a few words (command-line help)."""
    build: Callable[[Any], TriggerPolicy] | None = None
    """Builds the policy from its settings when the keyword arguments are not enough."""

    @property
    def name(self) -> str:
        """The ``kind`` of the settings."""
        return str(self.settings.model_fields["kind"].default)

    def make(self, settings: PolicySettings) -> TriggerPolicy:
        """The policy for ``settings`` (an instance of :attr:`settings`)."""
        if self.build is not None:
            return self.build(settings)
        kwargs = {name: getattr(settings, name) for name in type(settings).model_fields if name != "kind"}
        return self.policy(**kwargs)


class PolicyRegistry:
    """Policies by name; parses settings and short strings and builds policies."""

    def __init__(self) -> None:
        """Start empty."""
        self._entries: dict[str, PolicyEntry] = {}
        self._short: dict[str, tuple[PolicyEntry, ShortForm]] = {}

    def register(self, entry: PolicyEntry) -> PolicyEntry:
        """Add ``entry``; a name or short name already taken is an error."""
        if not entry.name or entry.name in self._entries:
            msg = f"policy kind {entry.name!r} is empty or already registered"
            raise ValueError(msg)
        taken = sorted(set(entry.short) & set(self._short))
        if taken:
            msg = f"short policy names {taken} are already registered"
            raise ValueError(msg)
        self._entries[entry.name] = entry
        self._short.update({name: (entry, form) for name, form in entry.short.items()})
        return entry

    def unregister(self, name: str) -> None:
        """Remove the policy of kind ``name`` and its short names."""
        entry = self._entries.pop(name)
        for short in entry.short:
            del self._short[short]

    def __getitem__(self, name: str) -> PolicyEntry:
        """The entry of kind ``name``."""
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        """Whether ``name`` is a registered kind."""
        return name in self._entries

    def __iter__(self) -> Iterator[PolicyEntry]:
        """Entries in registration order."""
        return iter(self._entries.values())

    def usage(self) -> str:
        """Every short form, for help texts and error messages."""
        forms = [form[0] for _, form in self._short.values()]
        return ", ".join(forms) + ", or several joined by '+' (e.g. loop+verify:0.3)"

    def settings(self, value: Any) -> PolicySettings:
        """Settings from settings, a dict with ``kind`` or a short string.

        Raises:
            ValueError: an unknown name or kind, or a malformed short string, naming the valid ones;
                a pydantic ``ValidationError`` for a bad setting.
        """
        if isinstance(value, PolicySettings):
            return value
        if isinstance(value, str):
            return self._parse_short(value)
        if isinstance(value, Mapping):
            kind = value.get("kind")
            if kind not in self._entries:
                msg = f"unknown policy kind {kind!r}; known kinds: {', '.join(self._entries)}"
                raise ValueError(msg)
            return self._entries[str(kind)].settings.model_validate(value)
        msg = f"a policy is a short string ({self.usage()}) or a dict with 'kind', not {type(value).__name__}"
        raise ValueError(msg)

    def _parse_short(self, value: str) -> PolicySettings:
        text = value.strip()
        if "+" in text and not text.startswith("regex:"):
            parts = [p.strip() for p in text.split("+")]
            if all(parts):
                return AnyPolicyConfig(policies=tuple(self._parse_short(p) for p in parts))
        name, _, arg = text.partition(":")
        if name not in self._short:
            msg = f"unknown policy {value!r}: use {self.usage()}, or a dict with 'kind'"
            raise ValueError(msg)
        entry, (usage, parse) = self._short[name]
        try:
            fields = parse(arg)
        except ValueError as exc:
            msg = f"unknown policy {value!r}: {exc} (the form is {usage}); use {self.usage()}"
            raise ValueError(msg) from None
        return entry.settings.model_validate({"kind": entry.name, **fields})

    def with_params(self, settings: PolicySettings, params: Mapping[str, Any]) -> PolicySettings:
        """``settings`` with some fields replaced (e.g. ``--policy-arg stretch_tokens=16``), re-validated."""
        if not params:
            return settings
        return type(settings).model_validate({**settings.model_dump(), **params})

    def build(self, settings: object) -> TriggerPolicy:
        """The policy for ``settings`` (a policy object passes through).

        Raises:
            TypeError: ``settings`` is neither settings of a registered kind nor a policy.
        """
        if isinstance(settings, PolicySettings) and settings.kind in self._entries:
            return self._entries[settings.kind].make(settings)
        if isinstance(settings, TriggerPolicy):
            return settings
        msg = f"not a policy or policy settings: {settings!r}"
        raise TypeError(msg)


def _no_arg(name: str) -> Callable[[str], Mapping[str, Any]]:
    def parse(arg: str) -> Mapping[str, Any]:
        if arg:
            msg = f"'{name}' takes no argument"
            raise ValueError(msg)
        return {}

    return parse


def _number(arg: str, what: str = "a number") -> float:
    try:
        return float(arg)
    except ValueError:
        msg = f"expected {what} after ':', got {arg!r}"
        raise ValueError(msg) from None


def _threshold(**extra: Any) -> Callable[[str], Mapping[str, Any]]:
    return lambda arg: {"threshold": _number(arg), **extra}


def _verify(arg: str) -> Mapping[str, Any]:
    threshold, _, gate = arg.partition(":")
    return {"threshold": _number(threshold), "gate": _number(gate) if gate else None}


def _loop(arg: str) -> Mapping[str, Any]:
    if not arg:
        return {}
    number = _number(arg, "a whole number")
    if not number.is_integer():
        msg = f"expected a whole number after ':', got {arg!r}"
        raise ValueError(msg)
    return {"ngram": int(number)}


def _regex(arg: str) -> Mapping[str, Any]:
    if not arg:
        msg = "expected a pattern after ':'"
        raise ValueError(msg)
    return {"patterns": (arg,)}


def _build_any(settings: AnyPolicyConfig) -> TriggerPolicy:
    return AnyPolicy([POLICIES.build(s) for s in settings.policies])


POLICIES = PolicyRegistry()
"""Every policy spec_graph knows; :meth:`PolicyRegistry.register` adds yours."""

for _entry in (
    PolicyEntry(
        KeywordPolicy,
        KeywordPolicyConfig,
        {"keyword": ("keyword", _no_arg("keyword"))},
        "the paper: keywords in the small model's probe",
    ),
    PolicyEntry(
        NeverPolicy, NeverPolicyConfig, {"never": ("never", _no_arg("never"))}, "never (the small model alone)"
    ),
    PolicyEntry(
        AlwaysPolicy, AlwaysPolicyConfig, {"always": ("always", _no_arg("always"))}, "always (the target alone)"
    ),
    PolicyEntry(
        UncertaintyPolicy,
        UncertaintyPolicyConfig,
        {
            "uncertainty": ("uncertainty:<p>", _threshold()),
            "entropy": ("entropy:<nats>", _threshold(measure="entropy")),
        },
        "the small model is unsure of its next token (top-1 probability below p, or entropy above)",
    ),
    PolicyEntry(
        VerifyPolicy,
        VerifyPolicyConfig,
        {"verify": ("verify:<p>[:<gate>]", _verify)},
        "the target checks each step and rewrites it from its first token with p(x)/max p below p",
    ),
    PolicyEntry(
        StepEntropyPolicy,
        StepEntropyPolicyConfig,
        {"step-entropy": ("step-entropy:<nats>", _threshold())},
        "the small model is unsure how to start a step",
    ),
    PolicyEntry(
        LoopPolicy, LoopPolicyConfig, {"loop": ("loop[:<n>]", _loop)}, "the small model repeats itself: recap takeover"
    ),
    PolicyEntry(
        RegexPolicy, RegexPolicyConfig, {"regex": ("regex:<pattern>", _regex)}, "a regular expression matches the probe"
    ),
    PolicyEntry(AnyPolicy, AnyPolicyConfig, {}, "policies asked in order (a+b)", build=_build_any),
):
    POLICIES.register(_entry)
