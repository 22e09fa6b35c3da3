"""The policy registry: one entry per policy, used by the config, build_policy, the CLI and eval."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import pytest
from pydantic import Field, ValidationError

from spec_graph.cli import main
from spec_graph.config import SpeculativeThinkingConfig
from spec_graph.eval.systems import check_system
from spec_graph.policies import POLICIES, NeverPolicy, PolicyEntry, build_policy
from spec_graph.policy_config import AnyPolicyConfig, PolicySettings, parse_policy

SHORT = {
    "keyword": "keyword",
    "never": "never",
    "always": "always",
    "uncertainty:0.5": "uncertainty",
    "entropy:2": "uncertainty",
    "verify:0.3": "verify",
    "verify:0.3:0.5": "verify",
    "step-entropy:1.0": "step_entropy",
    "loop": "loop",
    "loop:12": "loop",
    "regex:^\\d+ [+]": "regex",
    "loop+verify:0.3": "any",
}


@pytest.mark.parametrize(("short", "kind"), SHORT.items())
def test_every_short_string_of_today_parses_builds_and_round_trips(short: str, kind: str) -> None:
    settings = parse_policy(short)
    assert settings.kind == kind
    policy = build_policy(settings)
    assert type(policy) is POLICIES[kind].policy
    config = SpeculativeThinkingConfig(policy=short)
    assert config.policy == settings
    assert SpeculativeThinkingConfig.model_validate(config.model_dump()) == config  # the dict form
    assert SpeculativeThinkingConfig.model_validate_json(config.model_dump_json()) == config


def test_every_entry_has_a_schema_a_summary_and_its_name_as_kind() -> None:
    names = [entry.name for entry in POLICIES]
    assert names == ["keyword", "never", "always", "uncertainty", "verify", "step_entropy", "loop", "regex", "any"]
    for entry in POLICIES:
        assert entry.summary and issubclass(entry.settings, PolicySettings)
        assert entry.settings.model_json_schema()["properties"]["kind"]["const"] == entry.name
    usage = POLICIES.usage()
    for form in ("uncertainty:<p>", "entropy:<nats>", "verify:<p>[:<gate>]", "step-entropy:<nats>", "loop[:<n>]"):
        assert form in usage


class _EveryStepConfig(PolicySettings):
    kind: Literal["every_step"] = "every_step"
    size: int = Field(2, ge=1, description="Steps between two interventions.")


class _EveryStep(NeverPolicy):
    def __init__(self, *, size: int = 2) -> None:
        self.size = size


@pytest.fixture
def registered() -> Iterator[PolicyEntry]:
    entry = POLICIES.register(
        PolicyEntry(_EveryStep, _EveryStepConfig, {"every": ("every:<n>", lambda a: {"size": a})}, "every n steps")
    )
    yield entry
    POLICIES.unregister("every_step")


def test_registering_a_policy_is_one_entry(registered: PolicyEntry, capsys: pytest.CaptureFixture[str]) -> None:
    config = SpeculativeThinkingConfig(policy="every:3")
    assert config.policy == _EveryStepConfig(size=3)
    assert SpeculativeThinkingConfig(policy={"kind": "every_step", "size": 4}).policy.size == 4  # type: ignore[attr-defined]
    policy = build_policy(config.policy)
    assert isinstance(policy, _EveryStep) and policy.size == 3
    assert isinstance(parse_policy("every:2+loop"), AnyPolicyConfig)
    assert "every:<n>" in POLICIES.usage()
    with pytest.raises(ValidationError, match="size"):
        SpeculativeThinkingConfig(policy="every:0")
    check_system("spec:every:2")
    with pytest.raises(SystemExit) as exc:
        main(["run", "--policy", "every:0", "q"])
    assert exc.value.code == 2
    assert "size: Input should be greater than or equal to 1" in capsys.readouterr().err


def test_a_taken_name_cannot_be_registered_twice(registered: PolicyEntry) -> None:
    with pytest.raises(ValueError, match="already registered"):
        POLICIES.register(registered)
    with pytest.raises(ValueError, match="already registered"):
        POLICIES.register(PolicyEntry(NeverPolicy, AnyPolicyConfig, {"loop": ("loop", lambda _: {})}))


def test_with_params_replaces_settings_and_validates() -> None:
    settings = POLICIES.with_params(parse_policy("uncertainty:0.5"), {"stretch_tokens": "16", "scope": "probe"})
    assert (settings.stretch_tokens, settings.scope) == (16, "probe")  # type: ignore[attr-defined]
    with pytest.raises(ValidationError, match="stretch_tokens"):
        POLICIES.with_params(settings, {"stretch_tokens": 0})
    with pytest.raises(ValidationError, match="bogus"):
        POLICIES.with_params(settings, {"bogus": 1})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("uncertainty:high", "unknown policy 'uncertainty:high': expected a number after ':', got 'high'"),
        ("never:1", "'never' takes no argument"),
        ("loop:1.5", "expected a whole number"),
        ("regex:", "expected a pattern"),
        ({"kind": "bogus"}, "unknown policy kind 'bogus'; known kinds: keyword, never"),
        (3, "a policy is a short string"),
    ],
)
def test_bad_names_say_what_is_accepted(value: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_policy(value)
    assert message in str(info.value)
