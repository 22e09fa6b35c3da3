"""Step classification by keywords (algorithm.md, section 3).

Mirrors the reference's `sentiment_analysis` and `contains_keywords`. The text of a
step (usually the small model's probe after a boundary) is lower-cased and the
occurrences of every keyword are counted: A = affirmation hits, N = reflection +
verification hits. Ties with at least one hit are negative, like the reference.

Three matching modes (`SpeculativeThinkingConfig.keyword_matching`):

- ``word`` (default): whole words and phrases: "check" matches "check" but not "checking"
  nor "checkout";
- ``inflected``: whole words and their regular inflections, each word of a phrase alike:
  "check" also matches "checks", "checked", "checking"; "verify" "verifies", "verified",
  "verifying"; "recap" "recapped"; "think again" "thinking again". No prefixes ("rechecked"
  is not "check": add "recheck" to the list for it) and no irregular forms ("thought again");
  see `inflections`;
- ``substring``: the reference's `str.count`: "check" also matches "checkout" and "wait" "await".
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from enum import Enum
from typing import Literal

from spec_graph.config import SpeculativeThinkingConfig

__all__ = [
    "StepCategory",
    "StepClassification",
    "classify_step",
    "contains_verification",
    "count_hits",
    "inflections",
    "sentiment",
]


class StepCategory(str, Enum):
    """What a step starts with, as far as the keywords tell."""

    NEUTRAL = "neutral"
    AFFIRMATION = "affirmation"
    REFLECTION = "reflection"
    VERIFICATION = "verification"


@dataclass(frozen=True)
class StepClassification:
    """Result of `classify_step`.

    Attributes:
        category: The step's category.
        sentiment: +1 if affirmation wins, -1 if negatives win or tie with hits,
            0 without hits.
        affirmation_hits: Occurrences of affirmation keywords.
        reflection_hits: Occurrences of reflection keywords.
        verification_hits: Occurrences of verification keywords.

    """

    category: StepCategory
    sentiment: int
    affirmation_hits: int
    reflection_hits: int
    verification_hits: int

    @property
    def negative_hits(self) -> int:
        """Reflection plus verification hits (the reference's negative count N)."""
        return self.reflection_hits + self.verification_hits


@functools.cache
def _default_config() -> SpeculativeThinkingConfig:
    return SpeculativeThinkingConfig()


Matching = Literal["word", "inflected", "substring"]
_VOWELS = frozenset("aeiou")


def inflections(word: str) -> tuple[str, ...]:
    """A word and its regular English inflections, longest first.

    -s/-es, -ed, -ing; a final "e" dropped before -ing and -ed ("recognizing", "recognized"),
    a final consonant + "y" turned into -ies/-ied ("verifies", "verified"), and a final
    consonant doubled after one vowel ("recapped", "recapping"). Words shorter than three
    letters, or not all letters, stay as they are. Spurious forms ("yeses") only cost a few
    alternatives in a regular expression; they do not occur in text.
    """
    if len(word) < 3 or not word.isalpha():
        return (word,)
    forms = {word, word + "s", word + "es", word + "ed", word + "ing"}
    last, before = word[-1], word[-2]
    if last == "e":
        forms |= {word + "d", word[:-1] + "ing"}
    if last == "y" and before not in _VOWELS:
        forms |= {word[:-1] + "ies", word[:-1] + "ied"}
    if last not in _VOWELS | {"w", "x", "y"} and before in _VOWELS and word[-3] not in _VOWELS:
        forms |= {word + last + "ed", word + last + "ing"}
    return tuple(sorted(forms, key=lambda f: (-len(f), f)))


@functools.lru_cache(maxsize=128)
def _word_patterns(keywords: tuple[str, ...], inflected: bool = False) -> tuple[re.Pattern[str], ...]:
    """Compile one whole-word/phrase pattern per keyword (each word's inflections too when ``inflected``).

    Internal whitespace of a phrase matches any run of whitespace.
    """
    patterns = []
    for keyword in keywords:
        words = keyword.split()
        parts = ["(?:" + "|".join(map(re.escape, inflections(w))) + ")" if inflected else re.escape(w) for w in words]
        body = r"\s+".join(parts)
        patterns.append(re.compile(rf"(?<!\w){body}(?!\w)"))
    return tuple(patterns)


def count_hits(text: str, keywords: tuple[str, ...], matching: Matching | str = "word") -> int:
    """Count keyword occurrences in already lower-cased `text`, summed over `keywords`.

    Args:
        text: Lower-cased text.
        keywords: Lower-cased keywords.
        matching: "word" (whole words/phrases), "inflected" (whole words and their
            inflections) or "substring" (reference `str.count`).

    Returns:
        The total number of non-overlapping occurrences of each keyword, summed.

    """
    if matching == "substring":
        return sum(text.count(keyword) for keyword in keywords)
    patterns = _word_patterns(keywords, inflected=matching == "inflected")
    return sum(sum(1 for _ in pattern.finditer(text)) for pattern in patterns)


def classify_step(text: str, config: SpeculativeThinkingConfig | None = None) -> StepClassification:
    """Classify a step by its keywords.

    Args:
        text: The step's text (any case).
        config: Keyword lists and matching mode; the defaults if None.

    Returns:
        The category, the sentiment and the hit counts.

    """
    cfg = config if config is not None else _default_config()
    lowered = text.lower()
    mode = cfg.keyword_matching
    affirmation = count_hits(lowered, cfg.affirmation_keywords, mode)
    reflection = count_hits(lowered, cfg.reflection_keywords, mode)
    verification = count_hits(lowered, cfg.verification_keywords, mode)
    negative = reflection + verification
    if affirmation > negative:
        value, category = 1, StepCategory.AFFIRMATION
    elif negative > 0:  # negatives win, or a tie with hits
        value = -1
        category = StepCategory.VERIFICATION if verification else StepCategory.REFLECTION
    else:
        value, category = 0, StepCategory.NEUTRAL
    return StepClassification(category, value, affirmation, reflection, verification)


def sentiment(text: str, config: SpeculativeThinkingConfig | None = None) -> int:
    """Return the step's sentiment: +1, -1 or 0 (see `classify_step`)."""
    return classify_step(text, config).sentiment


def contains_verification(text: str, config: SpeculativeThinkingConfig | None = None) -> bool:
    """Return whether the text holds a verification keyword.

    This is the reference's `contains_keywords` check after a kept stretch.
    """
    cfg = config if config is not None else _default_config()
    return count_hits(text.lower(), cfg.verification_keywords, cfg.keyword_matching) > 0
