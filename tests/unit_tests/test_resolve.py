"""One resolver for every way of naming a model, and capabilities declared by each generator and session."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from spec_graph.generators import RemoteGenerator, ScriptedGenerator
from spec_graph.generators.base import NO_CAPABILITIES, Capabilities, capabilities_of
from spec_graph.generators.drafting import DraftingSession
from spec_graph.generators.resolve import is_generator, resolve_generator, spec_name
from spec_graph.models import EMBEDDED_MODELS


class Lazy:
    """A generator whose weights load when ``tokenizer_key`` is read (as HFGenerator's do)."""

    name = "lazy"
    loads = 0

    @property
    def tokenizer_key(self) -> str:
        Lazy.loads += 1
        return "lazy"

    def start(self, messages: Sequence[Mapping[str, Any]]) -> Any:
        raise NotImplementedError

    def count_tokens(self, text: str) -> int:
        return len(text)


def test_a_generator_passes_through_without_loading() -> None:
    lazy = Lazy()
    assert resolve_generator(lazy) is lazy and Lazy.loads == 0
    assert is_generator(lazy) and not is_generator(Lazy) and not is_generator("smollm2-135m-instruct")


def test_names_folders_and_hub_ids_make_one_local_generator_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spec_graph.generators import resolve
    from spec_graph.generators.hf import HFGenerator

    monkeypatch.setattr(resolve, "_GENERATORS", {})  # a fresh process's cache (other tests load these models)
    gen = resolve_generator("smollm2-135m-instruct")
    assert isinstance(gen, HFGenerator) and gen._model is None  # nothing loaded
    assert resolve_generator("smollm2-135m-instruct") is gen
    assert isinstance(resolve_generator(str(tmp_path)), HFGenerator)
    assert isinstance(resolve_generator("someone/some-model"), HFGenerator)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_generator(str(tmp_path / "missing"))


def test_an_unknown_name_lists_what_is_accepted() -> None:
    with pytest.raises(ValueError, match="unknown model 'bogus'") as info:
        resolve_generator("bogus")
    message = str(info.value)
    assert "\n" not in message and all(name in message for name in EMBEDDED_MODELS)
    assert "hub id" in message and "http://" in message


def test_anything_else_is_a_one_line_type_error() -> None:
    with pytest.raises(TypeError, match=r"cannot use a int as a model: give an embedded model name") as info:
        resolve_generator(42)
    assert "\n" not in str(info.value)


def test_a_server_url_makes_a_remote_generator() -> None:
    gen = resolve_generator("http://127.0.0.1:9/v1#served-model")
    assert isinstance(gen, RemoteGenerator)
    assert gen.base_url == "http://127.0.0.1:9/v1" and gen.model == "served-model"  # nothing sent
    assert resolve_generator("http://127.0.0.1:9/v1#served-model") is gen
    assert spec_name("http://user:secret@127.0.0.1:9/v1") == "http://127.0.0.1:9/v1"


# -- capabilities ------------------------------------------------------------------------------
def test_capabilities_are_declared() -> None:
    from spec_graph.generators.hf import HF_CAPABILITIES, HFGenerator

    assert HFGenerator("smollm2-135m-instruct").capabilities == HF_CAPABILITIES
    assert all(vars(HF_CAPABILITIES).values())
    scripted = ScriptedGenerator.from_responses(["x"])
    session = scripted.start([{"role": "user", "content": "q"}])
    assert session.capabilities == Capabilities(token_stop=True, logprobs=True, entropies=True, token_ids=True)
    scripted.supports_prefix, scripted.supports_drafting = True, True  # settings of the fake model
    assert session.capabilities.prefix and session.capabilities.drafting
    assert session.supports_prefix and session.supports_drafting and session.supports_token_stop  # old names


def test_remote_capabilities_depend_on_a_local_tokenizer() -> None:
    bare = RemoteGenerator("m", base_url="http://127.0.0.1:9", tokenizer=False, chat_template="{{ 'x' }}")
    assert bare.capabilities == Capabilities(logprobs=True)
    assert not bare.start([{"role": "user", "content": "q"}]).supports_prefix


def test_a_drafting_session_has_the_targets_capabilities_but_does_not_draft() -> None:
    target = ScriptedGenerator.from_document("a b", supports_drafting=True)
    small = ScriptedGenerator.from_document("a b", supports_drafting=True)
    messages = [{"role": "user", "content": "q"}]
    session = DraftingSession(target.start(messages), small.start(messages))
    assert session.capabilities == Capabilities(
        token_stop=True, logprobs=True, entropies=True, token_ids=True, drafting=False
    )


def test_a_session_that_declares_nothing_gets_nothing() -> None:
    assert capabilities_of(object()) is NO_CAPABILITIES
