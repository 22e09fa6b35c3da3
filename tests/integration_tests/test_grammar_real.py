"""Structured output under a JSON schema's grammar with the real Qwen2.5-Coder 0.5B (slow: CPU inference).

The 0.5B is both the small model and the target (two generators over the same weights), with
a policy under which both write, and draft-and-verify on: the answer must be valid JSON for a
schema with nested objects, an enum and a list.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import pytest
from pydantic import BaseModel

from spec_graph import SpeculativeThinkingChatModel
from spec_graph.generators import hf_loading
from spec_graph.generators.hf import HFGenerator

pytestmark = pytest.mark.slow

SMALL = "qwen2.5-coder-0.5b-instruct"


class Address(BaseModel):
    city: str
    country: Literal["France", "Italy", "Spain", "Germany"]


class Person(BaseModel):
    name: str
    age: int
    role: Literal["engineer", "teacher", "doctor", "artist"]
    address: Address
    languages: list[str]


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[HFGenerator, HFGenerator]]:
    small, target = HFGenerator(SMALL, device="cpu"), HFGenerator(SMALL, device="cpu", name="0.5B as target")
    yield small, target
    for key in [k for k, (model, _tok) in hf_loading._LOADED.items() if model is small.model]:
        del hf_loading._LOADED[key]


def test_structured_output_is_valid_json_for_a_nested_schema_with_an_enum(
    pair: tuple[HFGenerator, HFGenerator],
) -> None:
    small, target = pair
    llm = SpeculativeThinkingChatModel(
        small_model=small, target_model=target, policy="uncertainty:0.5", temperature=0, max_tokens=160
    )
    question = "Marie Curie-like character: a 41-year-old doctor living in Paris who speaks French and Polish."
    out = llm.with_structured_output(Person, method="json_schema", include_raw=True).invoke(question)
    assert out["parsing_error"] is None, out["raw"].content
    person = out["parsed"]
    assert isinstance(person, Person)
    assert person.role in ("engineer", "teacher", "doctor", "artist")
    assert person.address.country in ("France", "Italy", "Spain", "Germany")
    assert out["raw"].content.startswith("{")
