"""Tests for spec_graph.config."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from pydantic import ValidationError

from spec_graph.config import PRESETS, SpeculativeThinkingConfig, resolve_config
from spec_graph.config_errors import ConfigError
from spec_graph.sampling import SamplingParams

REFERENCE_DIR = Path("/work/shared/data/reference_configs")

# Copy of the reference's config/1b_32b.yml (data, not code).
REFERENCE_1B_32B_YAML = r"""
mode: "vllm" # 'hf' or "vllm"
target_model_name: "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B"
speculative_model_name: "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
target_model_gpu: 2
speculative_model_gpu: 1

TRIGGER_TOKENS:
  - "\n\n"
TARGET_VALIDATION_KEYWORDS:
  verify:
    - "verify"
    - "think again"
    - "recap"
    - "check"
  negative:
    - "wait"
    - "alternatively"
    - "hold on"
    - "another"
  positive:
    - "yeah"
    - "yes"
    - "final answer"
    - "confident"
help_think_word: null
help_recap_words: "Let me check whether there are some wrong steps:"


choose_large: true
max_target_tokens: 20
begin: false
begin_token_num: 100
original_recap_token_num: 125
recap_after_negative_num: 15
add_each_recap: 25
add_each_neg: 5
max_recap_token_num: 200
max_negative_num: 30
time_out: -1
"""

NON_ALGORITHM_KEYS = (
    "mode",
    "target_model_name",
    "speculative_model_name",
    "target_model_gpu",
    "speculative_model_gpu",
)


def test_defaults_equal_reference_table() -> None:
    """Defaults equal the reference's parameter table."""
    cfg = SpeculativeThinkingConfig()
    assert cfg.trigger_strings == ("\n\n",)
    assert cfg.affirmation_keywords == ("yeah", "yes", "final answer", "confident")
    assert cfg.reflection_keywords == ("wait", "alternatively", "hold on", "another")
    assert cfg.verification_keywords == ("verify", "think again", "recap", "check")
    assert cfg.keyword_matching == "word"
    assert (cfg.probe_tokens, cfg.verify_tokens) == (20, 125)
    assert (cfg.recap_tokens, cfg.recap_growth, cfg.recap_tokens_cap) == (125, 25, 200)
    assert (
        cfg.negative_threshold,
        cfg.negative_threshold_growth,
        cfg.negative_threshold_cap,
    ) == (15, 5, 30)
    assert cfg.recap_prompt == "Let me check whether there are some wrong steps:"
    assert cfg.think_prompt is None
    assert cfg.choose_large is True
    assert cfg.not_reasoning is False
    assert (cfg.opening, cfg.opening_tokens) == (False, 100)
    assert cfg.segment_cap == 1024
    assert (cfg.temperature, cfg.top_p, cfg.top_k, cfg.seed) == (0.6, 0.95, 50, None)
    assert cfg.max_new_tokens == 8192
    assert cfg.time_budget is None


def test_every_field_has_a_description() -> None:
    """Every field documents its meaning."""
    for name, field in SpeculativeThinkingConfig.model_fields.items():
        assert field.description, name


def test_presets() -> None:
    """Both presets exist and overrides apply to a copy."""
    assert set(PRESETS) == {"reasoning", "non_reasoning"}
    assert PRESETS["reasoning"] == SpeculativeThinkingConfig()
    nr = SpeculativeThinkingConfig.preset("non_reasoning")
    assert (nr.not_reasoning, nr.opening, nr.opening_tokens) == (True, True, 100)
    assert nr.probe_tokens == 20
    custom = SpeculativeThinkingConfig.preset("reasoning", probe_tokens=10, seed=3)
    assert (custom.probe_tokens, custom.seed) == (10, 3)
    assert PRESETS["reasoning"].probe_tokens == 20


def test_preset_overrides_are_validated() -> None:
    """Preset overrides go through validation."""
    with pytest.raises(ValidationError, match="probe_tokens"):
        SpeculativeThinkingConfig.preset("reasoning", probe_tokens=0)


def test_unknown_preset_lists_known_names() -> None:
    """An unknown preset names the known ones."""
    with pytest.raises(ValueError, match="non_reasoning") as info:
        SpeculativeThinkingConfig.preset("fast")
    assert "reasoning" in str(info.value)
    assert "'fast'" in str(info.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("probe_tokens", 0),
        ("verify_tokens", 0),
        ("recap_tokens", 0),
        ("recap_growth", -1),
        ("recap_tokens_cap", 0),
        ("negative_threshold", 0),
        ("negative_threshold_growth", -1),
        ("negative_threshold_cap", 0),
        ("opening_tokens", 0),
        ("segment_cap", 0),
        ("temperature", -0.1),
        ("temperature", 100.5),
        ("top_p", 0.0),
        ("top_p", 1.01),
        ("top_k", -1),
        ("max_new_tokens", 0),
        ("time_budget", 0),
        ("time_budget", -1),
        ("keyword_matching", "regex"),
        ("trigger_strings", ()),
        ("trigger_strings", ("\n\n", "")),
        ("affirmation_keywords", ()),
        ("reflection_keywords", ("wait", "  ")),
        ("verification_keywords", "check"),
    ],
)
def test_invalid_values_name_the_field(field: str, value: object) -> None:
    """Out-of-range values fail with the field's name."""
    with pytest.raises(ValidationError, match=field):
        SpeculativeThinkingConfig(**{field: value})


def test_boundary_values_are_accepted() -> None:
    """Values at the edges of the ranges are valid."""
    cfg = SpeculativeThinkingConfig(temperature=0, top_p=1, top_k=0, recap_growth=0, time_budget=0.5)
    assert cfg.temperature == 0
    assert cfg.time_budget == 0.5


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"recap_tokens": 300}, ("recap_tokens_cap", "recap_tokens")),
        ({"recap_tokens_cap": 100}, ("recap_tokens_cap", "recap_tokens")),
        ({"negative_threshold": 31}, ("negative_threshold_cap", "negative_threshold")),
    ],
)
def test_caps_below_start_values(overrides: dict, names: tuple[str, str]) -> None:
    """A cap below its start value names both fields."""
    with pytest.raises(ValidationError) as info:
        SpeculativeThinkingConfig(**overrides)
    for name in names:
        assert name in str(info.value)


def test_keywords_are_normalized() -> None:
    """Keywords are stripped, lower-cased and de-duplicated."""
    cfg = SpeculativeThinkingConfig(reflection_keywords=[" Wait ", "HOLD ON", "wait"])
    assert cfg.reflection_keywords == ("wait", "hold on")


def test_same_keyword_in_two_lists_names_both() -> None:
    """A keyword shared by two lists names both."""
    with pytest.raises(ValidationError) as info:
        SpeculativeThinkingConfig(verification_keywords=("check", "Wait"))
    text = str(info.value)
    assert "verification_keywords" in text
    assert "reflection_keywords" in text
    assert "wait" in text


def test_unknown_field_is_an_error() -> None:
    """Our own format forbids unknown keys."""
    with pytest.raises(ValidationError, match="mode"):
        SpeculativeThinkingConfig(mode="vllm")


def test_frozen_and_hashable() -> None:
    """Configs are immutable and hashable."""
    cfg = SpeculativeThinkingConfig()
    with pytest.raises(ValidationError, match="frozen"):
        cfg.probe_tokens = 5  # type: ignore[misc]
    assert hash(cfg) == hash(SpeculativeThinkingConfig())


def test_inline_reference_yaml(tmp_path: Path) -> None:
    """The reference's 1b_32b.yml loads to the defaults."""
    path = tmp_path / "1b_32b.yml"
    path.write_text(REFERENCE_1B_32B_YAML, encoding="utf-8")
    with pytest.warns(UserWarning) as record:
        cfg = SpeculativeThinkingConfig.from_yaml(path)
    assert len(record) == 1
    message = str(record[0].message)
    for key in NON_ALGORITHM_KEYS:
        assert key in message
    assert cfg == SpeculativeThinkingConfig()
    assert cfg.time_budget is None


@pytest.mark.skipif(not REFERENCE_DIR.is_dir(), reason="reference configs not present")
@pytest.mark.parametrize(
    ("name", "not_reasoning"),
    [("reference_1b_32b.yml", False), ("reference_7b-instruct_32b.yml", True)],
)
def test_shared_reference_files(name: str, not_reasoning: bool) -> None:
    """Both shared reference files load to the presets."""
    path = REFERENCE_DIR / name
    if not path.is_file():
        pytest.skip(f"{path} missing")
    with pytest.warns(UserWarning, match="target_model_name"):
        cfg = SpeculativeThinkingConfig.from_yaml(path)
    assert cfg.not_reasoning is not_reasoning
    assert cfg.opening is not_reasoning
    expected = PRESETS["non_reasoning" if not_reasoning else "reasoning"]
    assert cfg == expected


def test_from_reference_translates_keys() -> None:
    """Every reference key maps to its field."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg = SpeculativeThinkingConfig.from_reference(
            {
                "TRIGGER_TOKENS": ["\n\n", ".\n\n"],
                "TARGET_VALIDATION_KEYWORDS": {"verify": ["Verify"]},
                "max_target_tokens": 10,
                "original_recap_token_num": 100,
                "recap_after_negative_num": 7,
                "add_each_recap": 0,
                "add_each_neg": 1,
                "max_recap_token_num": 150,
                "max_negative_num": 9,
                "help_recap_words": "Recap:",
                "help_think_word": "Hmm",
                "choose_large": False,
                "not_reasoning": True,
                "begin": True,
                "begin_token_num": 50,
                "time_out": 30,
            }
        )
    assert cfg.trigger_strings == ("\n\n", ".\n\n")
    assert cfg.verification_keywords == ("verify",)
    assert cfg.reflection_keywords == SpeculativeThinkingConfig().reflection_keywords
    assert (cfg.probe_tokens, cfg.verify_tokens, cfg.recap_tokens) == (10, 100, 100)
    assert (cfg.negative_threshold, cfg.negative_threshold_growth) == (7, 1)
    assert (cfg.recap_growth, cfg.recap_tokens_cap, cfg.negative_threshold_cap) == (
        0,
        150,
        9,
    )
    assert (cfg.recap_prompt, cfg.think_prompt) == ("Recap:", "Hmm")
    assert (cfg.choose_large, cfg.not_reasoning) == (False, True)
    assert (cfg.opening, cfg.opening_tokens) == (True, 50)
    assert cfg.time_budget == 30.0


@pytest.mark.parametrize("time_out", [-1, 0, None])
def test_time_out_off_means_none(time_out: object) -> None:
    """A reference time_out of -1, 0 or null is no budget."""
    cfg = SpeculativeThinkingConfig.from_reference({"time_out": time_out})
    assert cfg.time_budget is None


def test_from_reference_own_names_and_precedence() -> None:
    """Own names are accepted and win."""
    cfg = SpeculativeThinkingConfig.from_reference(
        {"original_recap_token_num": 100, "verify_tokens": 60, "seed": 1}, top_k=0
    )
    assert (cfg.verify_tokens, cfg.recap_tokens, cfg.seed, cfg.top_k) == (60, 100, 1, 0)


def test_unknown_reference_keys_warn_once() -> None:
    """Unknown reference keys give one warning."""
    with pytest.warns(UserWarning) as record:
        cfg = SpeculativeThinkingConfig.from_reference(
            {
                "mode": "hf",
                "bogus": 1,
                "TARGET_VALIDATION_KEYWORDS": {"maybe": ["hmm"]},
                "max_target_tokens": 5,
            }
        )
    assert len(record) == 1
    message = str(record[0].message)
    assert "mode" in message
    assert "bogus" in message
    assert "TARGET_VALIDATION_KEYWORDS.maybe" in message
    assert cfg.probe_tokens == 5


def test_from_reference_still_validates() -> None:
    """Translated values are validated."""
    with pytest.raises(ValidationError, match="probe_tokens"):
        SpeculativeThinkingConfig.from_reference({"max_target_tokens": 0})


def test_from_yaml_rejects_non_mapping(tmp_path: Path) -> None:
    """A YAML file must hold a mapping."""
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(ValueError, match="mapping"):
        SpeculativeThinkingConfig.from_yaml(path)


def test_yaml_round_trip(tmp_path: Path) -> None:
    """to_yaml and from_yaml round-trip."""
    cfg = SpeculativeThinkingConfig(
        trigger_strings=("\n\n", ".\n\n"),
        keyword_matching="substring",
        think_prompt="Hmm,\twait",
        seed=7,
        time_budget=12.5,
        recap_tokens_cap=300,
    )
    path = tmp_path / "ours.yaml"
    text = cfg.to_yaml(path)
    assert path.read_text(encoding="utf-8") == text
    assert '"\\n\\n"' in text
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert SpeculativeThinkingConfig.from_yaml(path) == cfg
    assert SpeculativeThinkingConfig.model_validate(cfg.model_dump()) == cfg


def test_resolve_config_variants(tmp_path: Path) -> None:
    """resolve_config accepts every documented input."""
    default = SpeculativeThinkingConfig()
    assert resolve_config() == default
    assert resolve_config(None, seed=2).seed == 2
    assert resolve_config(default) is default
    assert resolve_config(default, probe_tokens=8).probe_tokens == 8
    assert resolve_config("non_reasoning") == PRESETS["non_reasoning"]
    assert resolve_config("non_reasoning", top_k=0).top_k == 0
    assert resolve_config({"probe_tokens": 9}).probe_tokens == 9
    path = tmp_path / "cfg.yml"
    default.model_copy().to_yaml(path)
    assert resolve_config(path) == default
    assert resolve_config(str(path), seed=4).seed == 4


def test_resolve_config_errors() -> None:
    """resolve_config rejects bad names, keys and types."""
    with pytest.raises(ValueError, match="non_reasoning"):
        resolve_config("nope")
    with pytest.raises(ValidationError, match="mode"):
        resolve_config({"mode": "vllm"})
    with pytest.raises(TypeError, match="int"):
        resolve_config(3)  # type: ignore[arg-type]


# -- one-line errors, sampling ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"temperature": -1}, "temperature: Input should be greater than or equal to 0, got -1"),
        ({"keyword_matching": "stems"}, "keyword_matching: Input should be 'word', 'inflected' or 'substring'"),
        ({"policy": "verify:1.5"}, "policy.threshold: Input should be less than or equal to 1, got 1.5"),
        ({"policy": "bogus"}, "policy: unknown policy 'bogus': use keyword, never, always, uncertainty:<p>"),
        ({"probe_tokn": 3}, "probe_tokn: unknown setting (did you mean 'probe_tokens'?)"),
    ],
)
def test_loader_errors_are_one_line_naming_the_field(overrides: dict, message: str) -> None:
    """resolve_config, presets and files raise a ConfigError (a ValidationError) in one line."""
    for make in (
        lambda: resolve_config(None, **overrides),
        lambda: SpeculativeThinkingConfig.preset("reasoning", **overrides),
    ):
        with pytest.raises(ConfigError) as info:
            make()
        assert isinstance(info.value, ValidationError) and isinstance(info.value, ValueError)
        text = str(info.value)
        assert "\n" not in text and text.startswith(message), text


def test_yaml_errors_name_the_file_and_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_text("temperature: -1\npolicy: 'uncertainty:2'\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        resolve_config(path)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: temperature: Input should be greater than or equal to 0")
    assert "policy: a top1 threshold is a probability strictly between 0 and 1" in text
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_config(tmp_path / "missing.yml")
    (tmp_path / "broken.yml").write_text("a: [1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid YAML") as broken:
        resolve_config(str(tmp_path / "broken.yml"))
    assert "\n" not in str(broken.value)


def test_sampling_params_are_one_object_validated_like_the_config() -> None:
    cfg = SpeculativeThinkingConfig(temperature=0, top_k=3, seed=1)
    assert cfg.sampling == SamplingParams(temperature=0, top_p=0.95, top_k=3, seed=1)
    assert cfg.sampling.greedy and not SamplingParams().greedy
    assert SamplingParams() == SpeculativeThinkingConfig().sampling  # same defaults
    assert SamplingParams.check(temperature=None, seed=None) == SamplingParams()
    for field, bad in (("temperature", -0.5), ("temperature", 101), ("top_p", 0), ("top_k", -1), ("seed", "x")):
        with pytest.raises(ConfigError, match=f"^{field}: ") as info:
            SamplingParams.check(**{field: bad})
        with pytest.raises(ValidationError, match=field):
            SpeculativeThinkingConfig(**{field: bad})
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="unknown setting"):
        SamplingParams.check(temprature=1)


def test_chat_model_call_kwargs_fail_in_one_line() -> None:
    """Per-call chat-model settings go through resolve_config: the same one-line ConfigError."""
    from spec_graph import SpeculativeThinkingChatModel
    from spec_graph.generators.scripted import ScriptedGenerator

    llm = SpeculativeThinkingChatModel(
        small_model=ScriptedGenerator.from_responses(["a"]), target_model=ScriptedGenerator.from_responses(["b"])
    )
    for kwargs, message in (
        ({"temperature": -1}, "temperature: Input should be greater than or equal to 0, got -1"),
        ({"policy": "verify:1.5"}, "policy.threshold: Input should be less than or equal to 1, got 1.5"),
    ):
        with pytest.raises(ConfigError) as info:
            llm.invoke("q", **kwargs)
        assert str(info.value) == message
