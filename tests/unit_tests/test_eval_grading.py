"""Grading: answer pairs that must and must not match, and answer extraction."""

from __future__ import annotations

import pytest

from spec_graph.eval.grading import extract_answer, extract_boxed, is_correct, last_number, parse_number

MUST_MATCH = [
    # boxed, with math-verify
    ("The answer is \\boxed{39}.", "39"),
    ("\\boxed{39.0}", "39"),
    ("\\boxed{2.50}", "2.5"),
    ("\\boxed{x = 39}", "39"),
    ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    # fractions and \frac
    ("\\boxed{\\frac{1}{2}}", "0.5"),
    ("\\boxed{1/2}", "\\frac{1}{2}"),
    ("\\boxed{\\dfrac{3}{4}}", "3/4"),
    ("so half of it, 1/2", "0.5"),
    ("that is \\frac{6}{4} of a pie", "1.5"),
    # units and currency
    ("\\boxed{\\$18}", "18"),
    ("\\boxed{18 \\text{ dollars}}", "18"),
    ("\\boxed{39 pieces}", "39"),
    ("\\boxed{50\\%}", "50"),
    ("She makes $18 every day.", "18"),
    ("It is 42 cm long.", "42"),
    # thousands commas
    ("\\boxed{1,000}", "1000"),
    ("She earns $1,200,000 in total.", "1200000"),
    ("\\boxed{12,000}", "12,000"),
    # negative numbers
    ("The temperature drops to -5 degrees", "-5"),
    ("\\boxed{-7}", "-7"),
    ("\\boxed{\u22127}", "-7"),
    ("10-5 = 5", "5"),
    # boxed vs last number: the box wins
    ("\\boxed{12}, then 39 more words with 7", "12"),
    ("\\boxed 5 is it", "5"),
    # plain-number fallback (GSM8K style)
    ("Answer: 18.", "18"),
    ("The answer is 39.0", "39"),
    ("#### 72", "72"),
]

MUST_NOT_MATCH = [
    ("\\boxed{3.9}", "39"),
    ("\\boxed{-5}", "5"),
    ("The temperature is 5 degrees", "-5"),
    ("\\boxed{\\frac{3}{4}}", "\\frac{4}{3}"),
    ("\\boxed{(3, \\pi)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("She earns $1,000 in total.", "1"),
    ("\\boxed{1,000}", "1"),
    ("\\boxed{3, 4}", "3"),
    # boxed vs last number: a wrong box is wrong even if the last number is right
    ("First 39, then \\boxed{12} and finally 39", "39"),
    # the last number counts, not an earlier one
    ("It costs 18 dollars. Then 2 more.", "18"),
    ("no numbers here", "5"),
    ("\\boxed{}", "0"),
    ("", "0"),
    ("1/2", "2"),
]


@pytest.mark.parametrize(("prediction", "gold"), MUST_MATCH)
def test_must_match(prediction: str, gold: str) -> None:
    assert is_correct(prediction, gold)


@pytest.mark.parametrize(("prediction", "gold"), MUST_NOT_MATCH)
def test_must_not_match(prediction: str, gold: str) -> None:
    assert not is_correct(prediction, gold)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a \\boxed{1} b \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{\\text{(A) } {x}}", "\\text{(A) } {x}"),
        ("\\fbox{7}", "7"),
        ("\\boxed{unclosed", None),
        ("nothing", None),
    ],
)
def test_extract_boxed(text: str, expected: str | None) -> None:
    assert extract_boxed(text) == expected


def test_extract_answer_prefers_box_then_last_number() -> None:
    assert extract_answer("3 apples and \\boxed{4} then 5") == "4"
    assert extract_answer("3 apples, $1,250.") == "1250"
    assert extract_answer("no digits") is None


def test_last_number_and_parse_number() -> None:
    assert last_number("-3 and then -4.5") == "-4.5"
    assert last_number("from 10-5") == "5"
    assert parse_number("1,000") == 1000
    assert parse_number("-3/4") == parse_number("-0.75")
    assert parse_number("1/0") is None
    assert parse_number("abc") is None


def test_grading_works_off_the_main_thread() -> None:
    # math-verify's default timeouts use SIGALRM, which only the main thread may set.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(is_correct, "\\boxed{\\frac{2}{4}}", "0.5").result()
