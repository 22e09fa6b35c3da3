"""Step classification by keywords (algorithm.md, section 3).

Mirrors the reference's `sentiment_analysis` and `contains_keywords`. The text of a
step (usually the small model's probe after a boundary) is lower-cased and the
occurrences of every keyword are counted: A = affirmation hits, N = reflection +
verification hits. Ties with at least one hit are negative, like the reference.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from enum import Enum

from spec_graph.config import SpeculativeThinkingConfig

__all__ = [
    "StepCategory",
    "StepClassification",
    "classify_step",
    "contains_verification",
    "count_hits",
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


@functools.lru_cache(maxsize=64)
def _word_patterns(keywords: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    """Compile one whole-word/phrase pattern per keyword.

    Internal whitespace of a phrase matches any run of whitespace.
    """
    patterns = []
    for keyword in keywords:
        body = r"\s+".join(re.escape(part) for part in keyword.split())
        patterns.append(re.compile(rf"(?<!\w){body}(?!\w)"))
    return tuple(patterns)


def count_hits(text: str, keywords: tuple[str, ...], matching: str = "word") -> int:
    """Count keyword occurrences in already lower-cased `text`, summed over `keywords`.

    Args:
        text: Lower-cased text.
        keywords: Lower-cased keywords.
        matching: "word" (whole words/phrases) or "substring" (reference `str.count`).

    Returns:
        The total number of non-overlapping occurrences of each keyword, summed.

    """
    if matching == "substring":
        return sum(text.count(keyword) for keyword in keywords)
    return sum(sum(1 for _ in pattern.finditer(text)) for pattern in _word_patterns(keywords))


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
