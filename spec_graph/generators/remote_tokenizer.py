"""The served model's tokenizer on this side (optional): chat template, token counts, ids, token pieces."""

from __future__ import annotations

import math
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from spec_graph.generators.tokens import tokenizer_key
from spec_graph.generators.tool_prompt import ToolSpecs, prepare_chat

__all__ = ["ServedTokenizer", "load_tokenizer", "names_local_model"]

_PIECE_RE = re.compile(r"\n+|\s?[^\s]+|\s")
_TOKENIZERS: dict[str, Any] = {}
_TOKENIZERS_LOCK = threading.Lock()


def names_local_model(name: str) -> bool:
    """Whether ``name`` is an embedded model name or an existing folder (its tokenizer is here)."""
    from spec_graph import models

    return models.is_embedded(name) or Path(name).expanduser().is_dir()


def load_tokenizer(spec: str | os.PathLike[str]) -> Any:
    """A tokenizer (loaded once per process) from an embedded model name, a folder or a hub id."""
    from spec_graph import models

    path = str(spec)
    if models.is_embedded(path):
        path = str(models.ensure_model(path))
    elif Path(path).expanduser().is_dir():
        path = str(Path(path).expanduser())
    with _TOKENIZERS_LOCK:
        if path not in _TOKENIZERS:
            from transformers import AutoTokenizer

            _TOKENIZERS[path] = AutoTokenizer.from_pretrained(path)
        return _TOKENIZERS[path]


class ServedTokenizer:
    """A served model's tokenizer, loaded on first use, or none (then counts are estimates).

    Args:
        spec: an embedded model name, a folder, a hub id, a loaded tokenizer, or ``None``.
        chat_template: a Jinja template to use instead of the tokenizer's.
        owner: the model's display name, for messages (called when one is raised).
    """

    def __init__(self, spec: Any, chat_template: str | None, owner: Callable[[], str]) -> None:
        """Remember the tokenizer; nothing loads yet."""
        self._spec = spec
        self._tokenizer: Any = None if isinstance(spec, str | os.PathLike) else spec
        self.chat_template = chat_template
        self._owner = owner
        self._lock = threading.Lock()

    @property
    def given(self) -> bool:
        """Whether there is a tokenizer (loaded or not yet)."""
        return self._spec is not None

    @property
    def tokenizer(self) -> Any:
        """The loaded tokenizer, or ``None``."""
        if self._tokenizer is None and self._spec is not None:
            self._tokenizer = load_tokenizer(self._spec)
        return self._tokenizer

    def key(self, fallback: Callable[[], str]) -> str:
        """The tokenizer's key (as the local generator computes it), else ``fallback()``."""
        tok = self.tokenizer
        return tokenizer_key(tok) if tok is not None else fallback()

    @property
    def eos_token_id(self) -> int | None:
        """The end-of-turn id, when there is a tokenizer."""
        tok = self.tokenizer
        return None if tok is None else tok.eos_token_id

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens (needs a tokenizer)."""
        tok = self.tokenizer
        if tok is None:
            msg = f"{self._owner()!r} has no local tokenizer (pass tokenizer=)"
            raise ValueError(msg)
        with self._lock:
            return list(tok(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``, special tokens kept (needs a tokenizer)."""
        with self._lock:
            return str(self.tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False))

    def pieces(self, text: str) -> list[str]:
        """``text`` split into tokens (the tokenizer's, else word-like pieces)."""
        if self.tokenizer is not None:
            with self._lock:
                enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            ends = sorted({e for _, e in enc["offset_mapping"] if 0 < e <= len(text)})
            if ends:
                if ends[-1] != len(text):
                    ends.append(len(text))
                return [text[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=True)]
        return _PIECE_RE.findall(text) or ([text] if text else [])

    def count(self, text: str) -> int:
        """Tokens of ``text``: exact with a tokenizer, else estimated (4 characters a token)."""
        if self.tokenizer is not None:
            return len(self.encode(text))
        return math.ceil(len(text) / 4)

    def render(self, messages: Sequence[Mapping[str, Any]], tools: ToolSpecs | None = None) -> str:
        """The conversation (and ``tools``, see :func:`prepare_chat`) in the model's chat template."""
        tok = self.tokenizer
        template = self.chat_template or (tok.chat_template if tok is not None else None)
        if not template:
            msg = (
                f"{self._owner()!r} needs a chat template to render the prompt: pass tokenizer= (a tokenizer "
                "with a chat template), chat_template=, or api='chat' to let the server render it"
            )
            raise ValueError(msg)
        convo, specs = prepare_chat(messages, tools, template)
        if tok is not None:
            with self._lock:
                return str(
                    tok.apply_chat_template(
                        convo, tools=specs, chat_template=template, tokenize=False, add_generation_prompt=True
                    )
                )
        from transformers.utils.chat_template_utils import render_jinja_template

        rendered = render_jinja_template([convo], tools=specs, chat_template=template, add_generation_prompt=True)[0]
        return str(rendered[0])
