"""Tests for spec_graph.classification."""

from __future__ import annotations

import pytest

from spec_graph.classification import (
    StepCategory,
    StepClassification,
    classify_step,
    contains_verification,
    inflections,
    sentiment,
)
from spec_graph.config import SpeculativeThinkingConfig

WORD = SpeculativeThinkingConfig()
SUBSTRING = SpeculativeThinkingConfig(keyword_matching="substring")

NEU = StepCategory.NEUTRAL
AFF = StepCategory.AFFIRMATION
REF = StepCategory.REFLECTION
VER = StepCategory.VERIFICATION


@pytest.mark.parametrize(
    ("text", "category", "value", "hits"),
    [
        # (affirmation, reflection, verification) hits
        ("So x = 4.", NEU, 0, (0, 0, 0)),
        ("", NEU, 0, (0, 0, 0)),
        ("Yes, that is right.", AFF, 1, (1, 0, 0)),
        ("Wait, that is wrong.", REF, -1, (0, 1, 0)),
        ("WAIT", REF, -1, (0, 1, 0)),
        ("Wait!", REF, -1, (0, 1, 0)),
        ("wait.", REF, -1, (0, 1, 0)),
        ("yes, wait", REF, -1, (1, 1, 0)),  # ties are negative
        ("yes yes wait", AFF, 1, (2, 1, 0)),  # repeats are counted
        ("wait wait yes", REF, -1, (1, 2, 0)),
        ("Wait, let me verify", VER, -1, (0, 1, 1)),
        ("Let me check.", VER, -1, (0, 0, 1)),
        ("yes, check", VER, -1, (1, 0, 1)),
        ("Yes yes, let me check", AFF, 1, (2, 0, 1)),
        ("So the final answer is 5.", AFF, 1, (1, 0, 0)),
        ("Hold on, something is off.", REF, -1, (0, 1, 0)),
        ("Let me think again.", VER, -1, (0, 0, 1)),
        ("hold\n  on", REF, -1, (0, 1, 0)),  # phrase across whitespace
        ("Alternatively, use another method.", REF, -1, (0, 2, 0)),
        ("I am confident. Yeah.", AFF, 1, (2, 0, 0)),
    ],
)
def test_classification_table(text: str, category: StepCategory, value: int, hits: tuple[int, int, int]) -> None:
    """Categories, sentiments and hit counts match the contract."""
    result = classify_step(text, WORD)
    assert result.category is category
    assert result.sentiment == value
    assert (
        result.affirmation_hits,
        result.reflection_hits,
        result.verification_hits,
    ) == hits
    assert result.negative_hits == hits[1] + hits[2]
    assert sentiment(text, WORD) == value
    assert contains_verification(text, WORD) == (hits[2] > 0)


@pytest.mark.parametrize(
    ("text", "substring_category"),
    [
        ("The eyes of the model.", AFF),  # "yes" in "eyes"
        ("We await the result.", REF),  # "wait" in "await"
        ("Go to checkout.", VER),  # "check" in "checkout"
        ("That is unconfidently said.", AFF),
        ("The other one.", NEU),  # "another" is not in "other"
    ],
)
def test_word_vs_substring_matching(text: str, substring_category: StepCategory) -> None:
    """Word mode skips partial words; substring mode counts them."""
    word = classify_step(text, WORD)
    assert word.category is NEU
    assert word.sentiment == 0
    assert classify_step(text, SUBSTRING).category is substring_category


def test_substring_mode_counts_like_str_count() -> None:
    """Substring mode counts like str.count."""
    text = "Wait, await waiting; yes eyes"
    result = classify_step(text, SUBSTRING)
    assert result.reflection_hits == text.lower().count("wait") == 3
    assert result.affirmation_hits == 2
    assert result.sentiment == -1


def test_default_config_is_used_when_none() -> None:
    """Without a config the defaults are used."""
    assert classify_step("Wait") == classify_step("Wait", WORD)
    assert sentiment("yes") == 1
    assert contains_verification("please verify")
    assert not contains_verification("verifying")


def test_custom_keywords() -> None:
    """Custom keyword lists replace the defaults."""
    cfg = SpeculativeThinkingConfig(
        affirmation_keywords=("correct",),
        reflection_keywords=("hmm", "on second thought"),
        verification_keywords=("double-check",),
    )
    assert classify_step("Correct.", cfg).category is AFF
    assert classify_step("yes", cfg).category is NEU
    assert classify_step("On second   thought, no", cfg).category is REF
    assert classify_step("Let me double-check", cfg).category is VER
    assert classify_step("Let me check", cfg).category is NEU


def test_keywords_with_regex_characters_are_literal() -> None:
    """Keywords are matched literally."""
    cfg = SpeculativeThinkingConfig(affirmation_keywords=("a+b",))
    assert classify_step("so a+b holds", cfg).affirmation_hits == 1
    assert classify_step("so aab holds", cfg).affirmation_hits == 0


def test_result_is_frozen_and_category_is_a_str() -> None:
    """Results are frozen; categories are strings."""
    result = classify_step("wait")
    assert isinstance(result, StepClassification)
    with pytest.raises(AttributeError):
        result.sentiment = 1  # type: ignore[misc]
    assert StepCategory.REFLECTION == "reflection"
    assert StepCategory("verification") is VER


INFLECTED = SpeculativeThinkingConfig(keyword_matching="inflected")


@pytest.mark.parametrize(
    ("text", "category", "hits"),
    [
        ("Let me try checking this.", VER, (0, 0, 1)),
        ("Verifying: 2 + 2 = 4.", VER, (0, 0, 1)),
        ("I verified it and checked it.", VER, (0, 0, 2)),
        ("Waiting is over.", REF, (0, 1, 0)),
        ("He waited.", REF, (0, 1, 0)),
        ("Recapping what we have.", VER, (0, 0, 1)),
        ("Thinking again about it.", VER, (0, 0, 1)),
        ("Holding on to that.", REF, (0, 1, 0)),
        ("Our final answers are 4 and 5.", AFF, (1, 0, 0)),
        ("Let me check.", VER, (0, 0, 1)),  # the word itself still counts
        ("Rechecked it.", NEU, (0, 0, 0)),  # no prefixes
        ("Go to checkout.", NEU, (0, 0, 0)),  # not a partial word either
        ("We await the result.", NEU, (0, 0, 0)),
        ("The eyes of the model.", NEU, (0, 0, 0)),
    ],
)
def test_inflected_matching_catches_inflections_of_whole_words(
    text: str, category: StepCategory, hits: tuple[int, int, int]
) -> None:
    result = classify_step(text, INFLECTED)
    assert result.category is category
    assert (result.affirmation_hits, result.reflection_hits, result.verification_hits) == hits
    assert classify_step(text, WORD).category is (category if text in ("Let me check.",) else NEU)


def test_inflections_of_regular_words() -> None:
    assert set(inflections("check")) >= {"check", "checks", "checked", "checking"}
    assert set(inflections("verify")) >= {"verifies", "verified", "verifying"}
    assert set(inflections("recap")) >= {"recaps", "recapped", "recapping"}
    assert set(inflections("recognize")) >= {"recognized", "recognizing", "recognizes"}
    assert "waitted" not in inflections("wait")  # two vowels: no doubling
    assert inflections("on") == ("on",) and inflections("x2") == ("x2",)
    assert contains_verification("I am checking", INFLECTED) and not contains_verification("I am checking", WORD)
