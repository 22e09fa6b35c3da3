"""Configuration of Speculative Thinking (algorithm.md, section 2).

`SpeculativeThinkingConfig` holds every parameter of the algorithm, validated and
frozen; `PRESETS` and `resolve_config` give one from a name, a file, a dict or overrides.
Files (our YAML format and the reference code's, uservan/speculative_thinking
`config/*.yml`) are read and written by `spec_graph.config_files`; the sampling fields share
their types with `spec_graph.sampling.SamplingParams` (`config.sampling`), the policy settings
come from the policy registry (`spec_graph.policies.registry`). Loaders raise
`spec_graph.config_errors.ConfigError`: one line naming the field and the valid values.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from spec_graph.config_errors import ConfigError
from spec_graph.config_files import dump_yaml, read_yaml, translate_reference
from spec_graph.policy_config import KeywordPolicyConfig, PolicyConfig
from spec_graph.sampling import SamplingParams, Seed, Temperature, TopK, TopP

__all__ = ["PRESETS", "SpeculativeThinkingConfig", "resolve_config"]

_KEYWORD_FIELDS = (
    "affirmation_keywords",
    "reflection_keywords",
    "verification_keywords",
)


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
    keyword_matching: Literal["word", "inflected", "substring"] = Field(
        "word",
        description="'word': whole words/phrases only (fix); 'inflected': whole words and their "
        "inflections ('check' also matches 'checks', 'checked', 'checking'); 'substring': plain "
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
    temperature: Temperature = Field(0.6, description="Sampling temperature; 0 = greedy (reference hard-coded 0.6).")
    top_p: TopP = Field(0.95, description="Nucleus sampling mass (reference hard-coded 0.95).")
    top_k: TopK = Field(50, description="Top-k sampling; 0 = off (reference hard-coded 50).")
    seed: Seed = Field(None, description="Random seed, or None for unseeded sampling (no reference key).")
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
        description="When the target writes (spec_graph.policies.registry): 'keyword' (the paper, default), "
        "'uncertainty:<p>' / 'entropy:<nats>' (the small model's own token probabilities), 'verify:<p>', "
        "'step-entropy:<nats>', 'loop', 'regex:<pattern>', 'never', 'always', several joined by '+', or a dict "
        "with 'kind' and the policy's settings (no reference key).",
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

    @property
    def sampling(self) -> SamplingParams:
        """The sampling fields as one object."""
        return SamplingParams(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k, seed=self.seed)

    @classmethod
    def validated(cls, values: Mapping[str, Any], *, where: str = "") -> SpeculativeThinkingConfig:
        """`model_validate`, raising a one-line `ConfigError` (``where``: e.g. a file name, put first)."""
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ConfigError.from_validation(exc, fields=cls.model_fields, where=where) from None

    @classmethod
    def preset(cls, name: str, **overrides: object) -> SpeculativeThinkingConfig:
        """Return a named preset, optionally with fields overridden.

        Args:
            name: A key of `PRESETS` ("reasoning" or "non_reasoning").
            **overrides: Field values replacing the preset's.

        Raises:
            ValueError: If the preset is unknown.
            ConfigError: For a bad override (one line naming it).

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
        values, ignored = translate_reference(mapping, cls.model_fields)
        if ignored:
            names = ", ".join(ignored)
            msg = f"ignoring keys that are not algorithm parameters: {names}"
            warnings.warn(msg, UserWarning, stacklevel=2)
        return cls.validated({**values, **overrides})

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: object) -> SpeculativeThinkingConfig:
        """Load a YAML file in our format or the reference's (see `from_reference`).

        Args:
            path: Path of the YAML file.
            **overrides: Field values applied last.

        Raises:
            FileNotFoundError: If there is no such file.
            ValueError: If the file is not YAML or does not hold a mapping.
            ConfigError: For a bad value (one line naming the file and the field).

        """
        values, ignored = translate_reference(read_yaml(path), cls.model_fields)
        if ignored:
            names = ", ".join(ignored)
            msg = f"{path}: ignoring keys that are not algorithm parameters: {names}"
            warnings.warn(msg, UserWarning, stacklevel=2)
        return cls.validated({**values, **overrides}, where=str(path))

    def to_yaml(self, path: str | Path | None = None) -> str:
        """Dump the config as YAML with our field names; write it to `path` if given.

        Returns:
            The YAML text; `from_yaml` of it gives back an equal config.

        """
        text = dump_yaml(self.model_dump(mode="json"))
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text


def _preset_names() -> str:
    return ", ".join(sorted(PRESETS))


def _with_overrides(config: SpeculativeThinkingConfig, overrides: Mapping[str, object]) -> SpeculativeThinkingConfig:
    """Return `config` re-validated with `overrides` applied (itself when none)."""
    if not overrides:
        return config
    return SpeculativeThinkingConfig.validated({**config.model_dump(), **overrides})


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
        ValueError: For an unknown preset name (naming the known ones).
        ConfigError: For an invalid value (a ValueError too): one line naming the field and the valid values.
        FileNotFoundError: For a YAML path that does not exist.
        TypeError: For an unsupported type.

    """
    if config is None:
        return SpeculativeThinkingConfig.validated(overrides)
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
        return SpeculativeThinkingConfig.validated({**config, **overrides})
    msg = f"cannot build a SpeculativeThinkingConfig from {type(config).__name__}"
    raise TypeError(msg)
