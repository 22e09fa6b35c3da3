r"""Grading: is a model's answer the gold one?

The answer is the last ``\boxed{...}`` of the output. It is compared to the gold answer with
`math-verify <https://github.com/huggingface/Math-Verify>`_ (LaTeX, fractions, ``\frac``,
units in ``\text{}``, equations such as ``x = 5``); when that fails and the gold is a plain
number, the boxed content is compared as a number (``\boxed{39 pieces}``, ``\boxed{1,000}``).
An output without ``\boxed{}`` is graded on its last number (the GSM8K habit): thousands
commas, ``$`` and units, negative numbers, ``a/b`` and ``\frac{a}{b}`` are understood.
"""

from __future__ import annotations

import re
import threading
from fractions import Fraction
from functools import lru_cache
from typing import Any

__all__ = ["extract_answer", "extract_boxed", "is_correct", "last_number", "parse_number"]

_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*(\{)?")
_FRAC_RE = re.compile(r"\\[dt]?frac\s*\{\s*(-?[\d.,]+)\s*\}\s*\{\s*(-?[\d.,]+)\s*\}")
# A number: optional sign (not a minus between two operands: "10-5" gives 10 and 5), thousands
# groups or plain digits, decimals, and an optional "/denominator".
_NUMBER_RE = re.compile(
    r"(?:(?<![\w)\]}])-)?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?|(?<![\w.])-?\.\d+"
)


def extract_boxed(text: str) -> str | None:
    r"""Content of the last ``\boxed{...}`` (or ``\fbox{...}``, ``\boxed 5``) in ``text``, or None."""
    found: str | None = None
    for m in _BOXED_RE.finditer(text):
        if m.group(1) is None:  # \boxed 5: up to the next space or $
            word = re.match(r"[^\s$]+", text[m.end() :])
            if word:
                found = word.group(0)
            continue
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            found = text[m.end() : i - 1].strip()
    return found


def _normalize(text: str) -> str:
    text = text.replace("\u2212", "-").replace("\\!", "").replace("\\,", "").replace("{,}", ",")
    text = _FRAC_RE.sub(r"\1/\2", text)
    return text.replace("\\left", "").replace("\\right", "")


def _numbers(text: str) -> list[str]:
    return [m.group(0) for m in _NUMBER_RE.finditer(_normalize(text))]


def parse_number(text: str) -> Fraction | None:
    """An exact value of a number string (``"1,000"``, ``"-3/4"``, ``"0.5"``), or None."""
    s = re.sub(r"\s+", "", text.replace(",", ""))
    try:
        return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None


def last_number(text: str) -> str | None:
    """The last number in ``text``, commas and spaces removed (``"$1,200."`` -> ``"1200"``), or None."""
    nums = _numbers(text)
    return re.sub(r"[\s,]", "", nums[-1]) if nums else None


def extract_answer(text: str) -> str | None:
    r"""What is graded: the last ``\boxed{}`` content, else the last number, else None."""
    boxed = extract_boxed(text)
    return boxed if boxed is not None else last_number(text)


def _gold_number(gold: str) -> Fraction | None:
    r"""The gold answer as a number when it is one (possibly with ``$``, ``\frac``, a unit)."""
    nums = _numbers(gold)
    if len(nums) != 1:
        return None
    rest = _normalize(gold).replace(nums[0], "", 1)
    if re.search(r"[A-Za-z]{2,}", re.sub(r"\\text\{[^}]*\}|\\[a-zA-Z]+", "", rest)):
        return None  # words left outside LaTeX commands: not a plain number (e.g. "5 x^2")
    return parse_number(nums[0])


def _mv_timeout() -> int | None:
    # math-verify's timeouts use SIGALRM, which only works in the main thread.
    return 5 if threading.current_thread() is threading.main_thread() else None


@lru_cache(maxsize=4096)
def _parse_boxed(content: str) -> Any:
    from math_verify import parse

    return parse("\\boxed{" + content + "}", parsing_timeout=_mv_timeout())


def _math_verify(pred: str, gold: str) -> bool:
    from math_verify import verify

    try:
        gold_parsed, pred_parsed = _parse_boxed(gold), _parse_boxed(pred)
        if not gold_parsed or not pred_parsed:
            return False
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=_mv_timeout()))
    except Exception:  # math-verify raises on odd LaTeX or timeouts: not a match
        return False


def is_correct(prediction_text: str, gold: str) -> bool:
    r"""Whether a model output ``prediction_text`` answers ``gold``.

    With a ``\boxed{}`` answer, only the last boxed content counts (math-verify, then as a number
    when the gold is a number and the box holds exactly one number). Without one, the last number
    of the output is compared to a numeric gold. A pure function.
    """
    gold = gold.strip()
    boxed = extract_boxed(prediction_text)
    gold_value = _gold_number(gold)
    if boxed is not None:
        if boxed and _math_verify(boxed, gold):
            return True
        nums = _numbers(boxed)
        return gold_value is not None and len(nums) == 1 and parse_number(nums[0]) == gold_value
    last = last_number(prediction_text)
    if gold_value is None or last is None:
        return False
    return parse_number(last) == gold_value
