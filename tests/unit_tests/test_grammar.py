"""Constrained decoding (spec_graph.generators.grammar) on tiny random transformers models.

The models are random (a 1-layer Llama over a character vocabulary built offline), so whatever
they write is valid only because of the grammar. The schema's language is finite (enums and
booleans), so a constrained run always completes and ends with the end-of-turn token.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from pydantic import BaseModel

from spec_graph import ScriptedGenerator, SpeculativeThinker
from spec_graph.generators import GenerateRequest
from spec_graph.generators.grammar import Grammar, GrammarError, check_grammar
from spec_graph.generators.hf import PLAIN_CHAT_TEMPLATE, HFGenerator
from spec_graph.graph import SpecContext

MESSAGES = [{"role": "user", "content": "Who is it?"}]
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "role": {"enum": ["admin", "user", "guest"]},
        "ok": {"type": "boolean"},
        "address": {
            "type": "object",
            "properties": {"city": {"enum": ["Paris", "Rome"]}, "zone": {"enum": [1, 2, 3]}},
            "required": ["city", "zone"],
        },
    },
    "required": ["role", "ok", "address"],
}


def tiny_tokenizer(*, reverse: bool = False, merges: tuple[str, ...] = ('{"', '":', '",', "true")) -> Any:
    """A BPE tokenizer over printable ASCII plus a few merged tokens; ``reverse`` reorders the ids."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    chars = [chr(c) for c in range(32, 127)] + ["\n"]
    vocab = {"<unk>": 0, "<eos>": 1}
    for c in chars[::-1] if reverse else chars:
        vocab[c] = len(vocab)
    pairs = []
    for tok in merges:
        left = tok[0]
        for ch in tok[1:]:
            pairs.append((left, ch))
            left += ch
            vocab.setdefault(left, len(vocab))
    inner = Tokenizer(models.BPE(vocab=vocab, merges=pairs, unk_token="<unk>"))
    inner.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=inner, eos_token="<eos>", unk_token="<unk>")


def tiny(seed: int, tokenizer: Any = None, name: str = "tiny") -> HFGenerator:
    """A random 1-layer Llama over ``tokenizer`` as a local generator."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tokenizer or tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=1024, eos_token_id=1, bos_token_id=0, pad_token_id=0,
    )  # fmt: skip
    torch.manual_seed(seed)
    return HFGenerator(LlamaForCausalLM(config).eval(), tok, chat_template=PLAIN_CHAT_TEMPLATE, name=name)


def check(text: str) -> dict[str, Any]:
    """``text`` parsed, after checking it against :data:`SCHEMA` by hand."""
    value = json.loads(text)
    assert set(value) == {"role", "ok", "address"}
    assert value["role"] in ("admin", "user", "guest") and isinstance(value["ok"], bool)
    assert value["address"]["city"] in ("Paris", "Rome") and value["address"]["zone"] in (1, 2, 3)
    return dict(value)


@pytest.fixture(scope="module")
def grammar() -> Grammar:
    return Grammar.json_schema(SCHEMA)


# -- building a grammar ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("schema", "match"),
    [
        ({"type": "frobnicate"}, "Unsupported type"),
        ({"$ref": "#/$defs/missing"}, "Cannot find field"),
        ({"type": "integer", "minimum": 5, "maximum": 1}, "minimum greater than maximum"),
        ("{not json", "not valid JSON"),
        (42, "must be a dict"),
    ],
)
def test_a_schema_that_cannot_compile_fails_at_once_with_the_reason(schema: Any, match: str) -> None:
    with pytest.raises(GrammarError, match=match) as info:
        Grammar.json_schema(schema)
    assert ".cc:" not in str(info.value)  # xgrammar's source location is cut off
    assert isinstance(info.value, ValueError)


def test_a_pydantic_class_and_a_json_string_give_a_grammar() -> None:
    class Point(BaseModel):
        x: int
        y: int

    assert Grammar.json_schema(Point).schema == Point.model_json_schema()
    assert Grammar.json_schema(json.dumps(SCHEMA)).schema == SCHEMA
    with pytest.raises(GrammarError, match="cannot parse"):
        Grammar.ebnf("root ::= ")


# -- one session --------------------------------------------------------------------------------
def test_a_random_model_writes_valid_json_under_the_grammar(grammar: Grammar) -> None:
    session = tiny(0).start(MESSAGES)
    free = session.generate([], GenerateRequest(max_tokens=60, triggers=()))
    with pytest.raises(json.JSONDecodeError):
        json.loads(free.text)
    seg = session.generate([], GenerateRequest(max_tokens=200, triggers=(), grammar=grammar))
    assert seg.finish_reason == "eos"
    check(seg.text)


def test_sampled_tokens_and_statistics_fit_the_grammar(grammar: Grammar) -> None:
    session = tiny(1).start(MESSAGES)
    for seed in range(3):
        req = GenerateRequest(max_tokens=200, triggers=(), grammar=grammar, temperature=1.0, seed=seed, logprobs=True)
        seg = session.generate([], req)
        check(seg.text)
        assert seg.logprobs is not None and all(lp > float("-inf") for lp in seg.logprobs)


def test_the_state_rolls_back_to_the_trace_and_follows_text_another_model_wrote(grammar: Grammar) -> None:
    gen = tiny(2)
    session = gen.start(MESSAGES)
    head = '{"role": "guest", "ok": '
    span = {"author": "target", "reason": "x", "text": head, "token_ids": [], "tokenizer": None, "boundary": False}
    # a probe that is then discarded: the next call starts from the same trace again
    probe = session.generate([span], GenerateRequest(max_tokens=3, triggers=(), grammar=grammar))
    assert probe.finish_reason == "length"
    seg = session.generate([span], GenerateRequest(max_tokens=200, triggers=(), grammar=grammar))
    assert check(head + seg.text)["role"] == "guest"
    state = session._grammar[1] if session._grammar else None
    assert state is not None
    state.sync([])  # all the way back
    assert state.ids == []


def test_a_trace_that_breaks_the_grammar_is_named() -> None:
    gen = tiny(3)
    state = Grammar.json_schema(SCHEMA).state(gen.tokenizer, gen.tokenizer_key, len(gen.tokenizer), [1])
    with pytest.raises(GrammarError, match="does not fit the grammar at its token 0"):
        state.sync(gen.encode("hello"))


# -- whole runs -------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", ["uncertainty:0.9", "always", "keyword"])
@pytest.mark.parametrize("drafting", ["auto", "off"])
def test_a_speculative_run_stays_valid_whoever_writes(grammar: Grammar, policy: str, drafting: str) -> None:
    thinker = SpeculativeThinker(tiny(4, name="small"), tiny(5, name="target"))
    config = {"policy": policy, "target_drafting": drafting, "max_new_tokens": 300, "segment_cap": 8}
    result = thinker.run(MESSAGES, grammar=grammar, **config)
    check(result.answer)
    assert result.finish_reason == "eos"
    if policy != "keyword":
        assert result.output_tokens.get("target", 0) > 0
    if policy == "always":  # the target writes everything: by draft-and-verify unless it is off
        assert (result.draft_tokens.get("drafted", 0) > 0) == (drafting == "auto")


def test_a_pair_with_different_tokenizers_keeps_one_state_per_model(grammar: Grammar) -> None:
    other = tiny_tokenizer(reverse=True, merges=('"address', '": "', "false"))
    small, target = tiny(6, name="small"), tiny(7, other, name="target")
    assert small.tokenizer_key != target.tokenizer_key
    result = SpeculativeThinker(small, target).run(MESSAGES, grammar=grammar, policy="uncertainty:0.9")
    check(result.answer)
    assert result.output_tokens.get("target", 0) > 0 and result.output_tokens.get("small", 0) > 0


def test_a_served_or_scripted_model_is_refused_before_any_generation(grammar: Grammar) -> None:
    scripted = ScriptedGenerator.from_document('{"role": "admin"}', name="served")
    with pytest.raises(GrammarError, match=r"the target model \(ScriptedSession\) cannot write under a grammar"):
        SpecContext.open(tiny(8), scripted, MESSAGES, SpeculativeThinker(tiny(8), scripted).config, grammar=grammar)
    check_grammar({"small": tiny(8).start(MESSAGES)})  # a local session passes


def test_a_grammar_run_injects_no_prompts(grammar: Grammar) -> None:
    small, target = tiny(9), tiny(10)
    thinker = SpeculativeThinker(small, target, {"think_prompt": "Hmm.", "recap_prompt": "Wait."})
    with SpecContext.open(small, target, MESSAGES, thinker.config, grammar=grammar) as ctx:
        assert ctx.config.think_prompt is None and ctx.config.recap_prompt == ""


def test_a_forced_tool_call_fits_its_tags_and_the_arguments_schema() -> None:
    def call(name: str) -> dict[str, Any]:
        args = {"type": "object", "properties": {"city": {"enum": ["Paris", "Rome"]}}, "required": ["city"]}
        props = {"name": {"const": name}, "arguments": args}
        return {"type": "object", "properties": props, "required": ["name", "arguments"]}

    tagged = [Grammar.tagged_json(call(n), begin="<tool_call>\n", end="\n</tool_call>") for n in ("weather", "time")]
    session = tiny(13).start(MESSAGES)
    for grammar in (tagged[0], Grammar.any_of(*tagged)):
        seg = session.generate([], GenerateRequest(max_tokens=200, triggers=(), grammar=grammar))
        assert seg.finish_reason == "eos"
        assert seg.text.startswith("<tool_call>\n") and seg.text.endswith("\n</tool_call>")
        value = json.loads(seg.text.removeprefix("<tool_call>\n").removesuffix("\n</tool_call>"))
        assert value["name"] in ("weather", "time") and value["arguments"]["city"] in ("Paris", "Rome")
    with pytest.raises(GrammarError, match="at least one"):
        Grammar.any_of()
