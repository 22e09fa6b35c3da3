"""Configuration of Speculative Thinking (algorithm.md, section 2).

`SpeculativeThinkingConfig` holds every parameter of the algorithm, validated and
frozen. It loads our own YAML/dict format as well as the reference code's YAML files
(uservan/speculative_thinking, `config/*.yml`) through `from_reference` / `from_yaml`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from spec_graph.policy_config import KeywordPolicyConfig, PolicyConfig, parse_policy

__all__ = ["PRESETS", "SpeculativeThinkingConfig", "resolve_config"]

_KEYWORD_FIELDS = (
    "affirmation_keywords",
    "reflection_keywords",
    "verification_keywords",
)

# Reference key -> our field name(s).
_REFERENCE_KEYS: dict[str, tuple[str, ...]] = {
    "TRIGGER_TOKENS": ("trigger_strings",),
    "max_target_tokens": ("probe_tokens",),
    "original_recap_token_num": ("verify_tokens", "recap_tokens"),
    "recap_after_negative_num": ("negative_threshold",),
    "add_each_recap": ("recap_growth",),
    "add_each_neg": ("negative_threshold_growth",),
    "max_recap_token_num": ("recap_tokens_cap",),
    "max_negative_num": ("negative_threshold_cap",),
    "help_recap_words": ("recap_prompt",),
    "help_think_word": ("think_prompt",),
    "begin": ("opening",),
    "begin_token_num": ("opening_tokens",),
    "time_out": ("time_budget",),
}
# Sub-keys of the reference's TARGET_VALIDATION_KEYWORDS.
_REFERENCE_KEYWORD_KEYS = {
    "positive": "affirmation_keywords",
    "negative": "reflection_keywords",
    "verify": "verification_keywords",
}


class SpeculativeThinkingConfig(BaseModel):
    """All parameters of Speculative Thinking; defaults equal the reference's.

    Instances are immutable; vary them with `preset(name, **overrides)` or
    `resolve_config(config, **overrides)`, which re-validate.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    trigger_strings: tuple[str, ...] = Field(
        ("\n\n",),
        description="Step boundaries: a generated token completing one of these "
        "strings ends a step (reference TRIGGER_TOKENS).",
    )
    affirmation_keywords: tuple[str, ...] = Field(
        ("yeah", "yes", "final answer", "confident"),
        description="Affirmation keywords, sentiment +1 (reference positive).",
    )
    reflection_keywords: tuple[str, ...] = Field(
        ("wait", "alternatively", "hold on", "another"),
        description="Reflection keywords, sentiment -1 (reference negative).",
    )
    verification_keywords: tuple[str, ...] = Field(
        ("verify", "think again", "recap", "check"),
        description="Verification keywords, sentiment -1; a kept stretch holding one "
        "makes the target write verify_tokens more (reference verify).",
    )
    keyword_matching: Literal["word", "substring"] = Field(
        "word",
        description="'word': whole words/phrases only (fix); 'substring': plain "
        "str.count like the reference (parity runs).",
    )
    probe_tokens: int = Field(
        20,
        ge=1,
        description="n1: length of a probe and of a target intervention (reference max_target_tokens).",
    )
    verify_tokens: int = Field(
        125,
        ge=1,
        description="n2: extra target tokens after a verification cue (reference original_recap_token_num).",
    )
    recap_tokens: int = Field(
        125,
        ge=1,
        description="Length of the first recap takeover (reference original_recap_token_num).",
    )
    recap_growth: int = Field(
        25,
        ge=0,
        description="Recap length added after each recap (reference add_each_recap).",
    )
    recap_tokens_cap: int = Field(
        200,
        ge=1,
        description="Maximum recap length (reference max_recap_token_num).",
    )
    negative_threshold: int = Field(
        15,
        ge=1,
        description="c: negative steps that trigger a recap takeover (reference recap_after_negative_num).",
    )
    negative_threshold_growth: int = Field(
        5,
        ge=0,
        description="Threshold added after each recap (reference add_each_neg).",
    )
    negative_threshold_cap: int = Field(
        30,
        ge=1,
        description="Maximum negativity threshold (reference max_negative_num).",
    )
    recap_prompt: str = Field(
        "Let me check whether there are some wrong steps:",
        description="Text injected into the trace before a recap (reference help_recap_words).",
    )
    think_prompt: str | None = Field(
        None,
        description="Text appended before a probe, or None (reference help_think_word).",
    )
    choose_large: bool = Field(
        default=True,
        description="Always keep the target's stretch over the probe (reference choose_large).",
    )
    not_reasoning: bool = Field(
        default=False,
        description="The small model does not reason: intervene at every boundary (reference not_reasoning).",
    )
    opening: bool = Field(
        default=False,
        description="The target writes the opening of the answer (reference begin).",
    )
    opening_tokens: int = Field(
        100,
        ge=1,
        description="Length of the target's opening (reference begin_token_num).",
    )
    segment_cap: int = Field(
        1024,
        ge=1,
        description="Most tokens of one small-model stretch (reference hard-coded).",
    )
    temperature: float = Field(
        0.6,
        ge=0,
        le=100,
        description="Sampling temperature; 0 = greedy (reference hard-coded 0.6).",
    )
    top_p: float = Field(
        0.95,
        gt=0,
        le=1,
        description="Nucleus sampling mass (reference hard-coded 0.95).",
    )
    top_k: int = Field(
        50,
        ge=0,
        description="Top-k sampling; 0 = off (reference hard-coded 50).",
    )
    seed: int | None = Field(
        None,
        description="Random seed, or None for unseeded sampling (no reference key).",
    )
    max_new_tokens: int = Field(
        8192,
        ge=1,
        description="Budget of generated tokens, prompt excluded, never exceeded "
        "(the reference's max_tokens counts the prompt).",
    )
    time_budget: float | None = Field(
        None,
        gt=0,
        description="Wall-clock budget in seconds, or None (reference time_out, where -1 means None).",
    )
    policy: PolicyConfig = Field(
        default_factory=KeywordPolicyConfig,
        description="When the target writes (spec_graph.policies): 'keyword' (the paper, default), "
        "'regex:<pattern>', 'uncertainty:<p>' / 'entropy:<nats>' (the small model's own token "
        "probabilities), 'never' or 'always'; or a dict with 'kind' and the policy's settings (no reference key).",
    )
    target_drafting: Literal["auto", "off"] = Field(
        "auto",
        description="'auto': when both models are local and share a tokenizer, the target writes each of "
        "its stretches by draft-and-verify with the small model drafting (the same text under greedy "
        "decoding, the same distribution under sampling, faster); 'off': token by token (no reference key).",
    )
    target_fallback: bool = Field(
        False,
        description="When the target fails (e.g. a served model still down after its retries), keep what "
        "it wrote and go on with the small model alone, recording the fallback; off: the run stops with "
        "SpeculativeThinkingError carrying the partial trace (no reference key).",
    )

    @field_validator("trigger_strings")
    @classmethod
    def _check_triggers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            msg = "trigger_strings must not be empty"
            raise ValueError(msg)
        if any(not s for s in value):
            msg = "trigger_strings must not contain an empty string"
            raise ValueError(msg)
        return value

    @field_validator("policy", mode="before")
    @classmethod
    def _parse_policy(cls, value: Any) -> Any:
        return parse_policy(value)

    @field_validator(*_KEYWORD_FIELDS)
    @classmethod
    def _normalize_keywords(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        words = [w.strip().lower() for w in value]
        if not words:
            msg = "keyword list must not be empty"
            raise ValueError(msg)
        if any(not w for w in words):
            msg = "keywords must be non-empty strings"
            raise ValueError(msg)
        return tuple(dict.fromkeys(words))  # de-duplicate, keep order

    @model_validator(mode="after")
    def _check_cross_fields(self) -> SpeculativeThinkingConfig:
        for cap, start in (
            ("recap_tokens_cap", "recap_tokens"),
            ("negative_threshold_cap", "negative_threshold"),
        ):
            if getattr(self, cap) < getattr(self, start):
                low, high = getattr(self, start), getattr(self, cap)
                msg = f"{cap} ({high}) must be >= {start} ({low})"
                raise ValueError(msg)
        for i, first in enumerate(_KEYWORD_FIELDS):
            for second in _KEYWORD_FIELDS[i + 1 :]:
                shared = sorted(set(getattr(self, first)) & set(getattr(self, second)))
                if shared:
                    msg = f"keywords {shared} appear in both {first} and {second}"
                    raise ValueError(msg)
        return self

    @classmethod
    def preset(cls, name: str, **overrides: object) -> SpeculativeThinkingConfig:
        """Return a named preset, optionally with fields overridden.

        Args:
            name: A key of `PRESETS` ("reasoning" or "non_reasoning").
            **overrides: Field values replacing the preset's.

        Raises:
            ValueError: If the preset is unknown.

        """
        if name not in PRESETS:
            msg = f"unknown preset {name!r}; known presets: {_preset_names()}"
            raise ValueError(msg)
        return _with_overrides(PRESETS[name], overrides)

    @classmethod
    def from_reference(cls, mapping: Mapping[str, Any], **overrides: object) -> SpeculativeThinkingConfig:
        """Build a config from a reference-style mapping (our field names work too).

        Reference keys are translated (`original_recap_token_num` sets both
        `verify_tokens` and `recap_tokens`; `time_out` <= 0 or null means no time
        budget). Our own field names take precedence over reference keys. Other keys
        (`mode`, model names, GPUs, anything unknown) are ignored with one
        `UserWarning` listing them.

        Args:
            mapping: Parsed reference YAML or a dict of our own fields.
            **overrides: Field values applied last.

        """
        values, ignored = _translate_reference(mapping)
        if ignored:
            names = ", ".join(ignored)
            msg = f"ignoring keys that are not algorithm parameters: {names}"
            warnings.warn(msg, UserWarning, stacklevel=2)
        return cls.model_validate({**values, **overrides})

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: object) -> SpeculativeThinkingConfig:
        """Load a YAML file in our format or the reference's (see `from_reference`).

        Args:
            path: Path of the YAML file.
            **overrides: Field values applied last.

        Raises:
            ValueError: If the file does not hold a mapping.

        """
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            msg = f"{path}: expected a YAML mapping, got {type(data).__name__}"
            raise ValueError(msg)
        values, ignored = _translate_reference(data)
        if ignored:
            names = ", ".join(ignored)
            msg = f"{path}: ignoring keys that are not algorithm parameters: {names}"
            warnings.warn(msg, UserWarning, stacklevel=2)
        return cls.model_validate({**values, **overrides})

    def to_yaml(self, path: str | Path | None = None) -> str:
        """Dump the config as YAML with our field names; write it to `path` if given.

        Returns:
            The YAML text; `from_yaml` of it gives back an equal config.

        """
        text = yaml.dump(
            self.model_dump(mode="json"),
            Dumper=_Dumper,
            sort_keys=False,
            allow_unicode=True,
        )
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text


def _translate_reference(
    mapping: Mapping[str, Any],
) -> tuple[dict[str, Any], list[str]]:
    """Map reference keys to our field names; return (values, ignored keys)."""
    from_ref: dict[str, Any] = {}
    own: dict[str, Any] = {}
    ignored: list[str] = []
    for key, value in mapping.items():
        if key in SpeculativeThinkingConfig.model_fields:
            own[key] = value
        elif key in _REFERENCE_KEYS:
            off = key == "time_out" and (value is None or (isinstance(value, int | float) and value <= 0))
            for field in _REFERENCE_KEYS[key]:
                from_ref[field] = None if off else value
        elif key == "TARGET_VALIDATION_KEYWORDS" and isinstance(value, Mapping):
            for sub, words in value.items():
                if sub in _REFERENCE_KEYWORD_KEYS:
                    from_ref[_REFERENCE_KEYWORD_KEYS[sub]] = words
                else:
                    ignored.append(f"{key}.{sub}")
        else:
            ignored.append(str(key))
    return {**from_ref, **own}, ignored


class _Dumper(yaml.SafeDumper):
    """Safe dumper that double-quotes strings holding control characters."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = '"' if any(not ch.isprintable() for ch in value) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def _preset_names() -> str:
    return ", ".join(sorted(PRESETS))


def _with_overrides(config: SpeculativeThinkingConfig, overrides: Mapping[str, object]) -> SpeculativeThinkingConfig:
    """Return `config` re-validated with `overrides` applied (itself when none)."""
    if not overrides:
        return config
    return SpeculativeThinkingConfig.model_validate({**config.model_dump(), **overrides})


PRESETS: dict[str, SpeculativeThinkingConfig] = {
    "reasoning": SpeculativeThinkingConfig(),
    "non_reasoning": SpeculativeThinkingConfig(not_reasoning=True, opening=True, opening_tokens=100),
}


def resolve_config(
    config: SpeculativeThinkingConfig | str | Path | Mapping[str, Any] | None = None,
    **overrides: object,
) -> SpeculativeThinkingConfig:
    """Turn any accepted config spec into a `SpeculativeThinkingConfig`.

    Args:
        config: An instance; a preset name; a YAML path (`Path`, or `str` ending
            in .yml/.yaml); a dict of our own field names (unknown keys are errors);
            or None for the defaults.
        **overrides: Field values applied last.

    Raises:
        ValueError: For an unknown preset name or invalid values.
        TypeError: For an unsupported type.

    """
    if config is None:
        return SpeculativeThinkingConfig.model_validate(overrides)
    if isinstance(config, SpeculativeThinkingConfig):
        return _with_overrides(config, overrides)
    if isinstance(config, Path) or (isinstance(config, str) and config.lower().endswith((".yml", ".yaml"))):
        return SpeculativeThinkingConfig.from_yaml(config, **overrides)
    if isinstance(config, str):
        if config not in PRESETS:
            msg = f"unknown preset {config!r}; known presets: {_preset_names()} (or pass a path ending in .yml/.yaml)"
            raise ValueError(msg)
        return SpeculativeThinkingConfig.preset(config, **overrides)
    if isinstance(config, Mapping):
        return SpeculativeThinkingConfig.model_validate({**config, **overrides})
    msg = f"cannot build a SpeculativeThinkingConfig from {type(config).__name__}"
    raise TypeError(msg)
